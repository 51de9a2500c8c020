"""Meta-training configuration: the ``TrainConfig`` dataclass and its YAML mirror."""

from dataclasses import asdict, dataclass
from pathlib import Path

from maml_robot.checkpoint import load_checkpoint
from maml_robot.meta.es_maml import ES_OPERATORS, ESMAMLConfig
from maml_robot.meta.inner import InnerConfig
from maml_robot.meta.learners import config_from_dict, LEARNERS
from maml_robot.meta.operators import SPACES
from maml_robot.meta.promp import ProMPConfig
from maml_robot.meta.trpo import TRPOConfig
from maml_robot.paths import data_path
from maml_robot.policy import ACTIVATIONS
from maml_robot.scenario import SHIPPED
from maml_robot.settings import from_dict, section, setting, validate
import yaml

ALGORITHMS = tuple(LEARNERS)
DEVICES = ('auto', 'cpu', 'cuda')
INFERENCE = ('central', 'workers')


def _is_device(value: str) -> bool:
    return value in DEVICES or value.startswith('cuda:')


@dataclass
class TrainConfig:
    """
    Everything one ``maml-robot train`` run depends on (config/train/<scenario>.yaml).

    Each field is the one declaration of a setting (:func:`maml_robot.settings.setting`): its
    YAML key, default, what it accepts (a bad value's error names the key and what to write),
    its ``maml-robot train`` flag (``--key-with-dashes`` unless ``flag=``; the docstring is its
    help) and, with ``to=``, its place in the :class:`InnerConfig` or the outer algorithm's
    config (:meth:`inner_config`, :meth:`outer_config`). The layout stays flat: the shipped
    YAMLs, the run folders' config.yaml and the checkpoints' ``training.train_config`` have it.

    Checked in ``__post_init__``, not in a ``validate()`` each caller must remember: a YAML
    file, flags, a resumed run and tests all go through the constructor, so no unchecked
    TrainConfig exists. Assigning a field later is not checked: use ``dataclasses.replace``.
    """

    scenario: str = setting('reacher', flag=False, check=bool, want='a scenario name or path')
    """Shipped scenario name (reacher, cheetah, quadruped) or path to a scenario YAML."""
    algorithm: str = setting('promp', choices=ALGORITHMS)
    """Outer algorithm: 'promp' (clipped LVC objective), 'trpo' (MAML-TRPO), 'fomaml', or
    'es_maml' (ES on the return after a derivative-free adaptation; settings es_* and adapt_*)."""
    iterations: int = setting(200, bounds='>= 0')
    """Meta-iterations in total; a resumed run continues up to this (each iteration: sample
    tasks, pre-update rollouts, adapt, post-update rollouts, meta-step)."""
    tasks_per_iteration: int = setting(20, bounds='>= 1', flag='tasks')
    """Tasks B sampled from the train split per iteration (the meta-batch)."""
    rollouts_per_task: int = setting(10, bounds='>= 2', note='(the baseline needs 2)',
                                     flag='rollouts')
    """Rollouts N per task, both before and after adaptation."""
    horizon: int | None = setting(None, bounds='>= 1')
    """Steps per rollout; null uses the scenario's ``episode_steps``."""
    inner_lr: float = setting(0.1, bounds='>= 0', to=(InnerConfig, 'lr'))
    """Inner-loop step size alpha (the initial value when learn_inner_lr)."""
    learn_inner_lr: bool = setting(False, to=(InnerConfig, 'learn_lr'))
    """Meta-learn the inner step sizes (Meta-SGD); their shape is inner_lr_per."""
    inner_lr_per: str = setting('entry', choices=('entry', 'tensor'),
                                to=(InnerConfig, 'lr_per'))
    """With learn_inner_lr: 'entry' (one step size per parameter entry, Meta-SGD) or 'tensor'
    (one per parameter tensor: MAML++'s per-layer step sizes)."""
    inner_steps: int = setting(1, bounds='>= 1', to=(InnerConfig, 'steps'))
    """Inner policy-gradient steps per task (each on fresh rollouts)."""
    outer_lr: float = setting(1e-3, bounds='> 0', to=(ProMPConfig, 'outer_lr'))
    """Outer (meta) step size: Adam's learning rate for promp and fomaml."""
    outer_steps: int = setting(5, bounds='>= 1', to=(ProMPConfig, 'num_outer_steps'))
    """Optimizer steps on each meta-batch (ProMP's PPO-style epochs; fomaml too)."""
    clip_eps: float = setting(0.3, bounds='(0, 1)', to=(ProMPConfig, 'clip_eps'))
    """ProMP's clip range of the likelihood ratio."""
    kl_coeff: float = setting(5e-4, bounds='>= 0', to=(ProMPConfig, 'kl_coeff'))
    """ProMP's weight of the KL penalty between the old and new pre-update policies."""
    max_kl: float = setting(0.01, bounds='> 0', to=(TRPOConfig, 'max_kl'))
    """TRPO's trust-region size (mean KL of the post-update policies)."""
    max_post_clip_frac: float = setting(0.0, bounds='[0, 1]', note='(0: off)',
                                        to=(ProMPConfig, 'max_post_clip_frac'))
    """ProMP's outer-step guard (0: off): an outer step that worsens the loss or pushes more
    than this share of post-update samples out of the clip range is halved back or undone
    (recommended with learn_inner_lr; see docs/ALGORITHMS.md)."""
    es_pairs: int = setting(8, bounds='>= 1', to=(ESMAMLConfig, 'pairs'))
    """es_maml: antithetic pairs of perturbed meta-parameters per iteration (2x this members);
    pair i runs on task i mod tasks_per_iteration (so tasks_per_iteration <= es_pairs)."""
    es_sigma: float = setting(0.02, bounds='> 0', to=(ESMAMLConfig, 'sigma'))
    """es_maml: standard deviation of the perturbation of each meta-parameter entry."""
    es_lr: float = setting(0.01, bounds='> 0', to=(ESMAMLConfig, 'outer_lr'))
    """es_maml: Adam step size on the ES meta-gradient estimate."""
    adaptation: str = setting('hill_climb', choices=ES_OPERATORS, to=(ESMAMLConfig, 'operator'))
    """es_maml: the derivative-free adaptation operator the meta-parameters are trained for
    (maml_robot/meta/operators.py); the checkpoint records it for eval and the node."""
    adaptation_budget: int = setting(16, bounds='>= 1', to=(ESMAMLConfig, 'budget'))
    """es_maml: live episodes per task the operator adapts with (whole rounds)."""
    adapt_sigma: float = setting(0.05, bounds='> 0', to=(ESMAMLConfig, 'op_sigma'))
    """es_maml: the operator's perturbation size per parameter entry."""
    adapt_batch: int = setting(7, bounds='>= 1', to=(ESMAMLConfig, 'op_batch'))
    """es_maml: hill_climb perturbations per round (plus the incumbent), or es pairs per step."""
    adapt_episodes: int = setting(2, bounds='>= 1', to=(ESMAMLConfig, 'op_episodes'))
    """es_maml: live episodes per candidate of a round."""
    adapt_z: float = setting(0.0, bounds='>= 0', to=(ESMAMLConfig, 'op_z'))
    """es_maml, hill_climb: acceptance margin in standard errors of the paired differences."""
    adapt_lr: float = setting(0.02, bounds='> 0', to=(ESMAMLConfig, 'op_lr'))
    """es_maml, es operator: step size of its ES step."""
    adapt_max_delta: float | None = setting(None, bounds='> 0', to=(ESMAMLConfig, 'op_max_delta'))
    """es_maml: largest change of one entry per operator update (null: unbounded)."""
    adapt_space: str = setting('all', choices=tuple(SPACES), to=(ESMAMLConfig, 'op_space'))
    """es_maml: parameters the operator perturbs: all (but log_std), last (layer) or bias."""
    init_checkpoint: str | None = setting(None, check=bool, want='null or a checkpoint file')
    """Start the meta-parameters and the observation normalization from this checkpoint (a
    .safetensors file of the same scenario and network; needs normalize_obs: false)."""
    hidden_sizes: tuple[int, ...] = setting((64, 64), bounds='>= 1')
    """Widths of the policy's hidden layers."""
    activation: str = setting('tanh', choices=tuple(ACTIVATIONS))
    """Hidden activation of the policy: tanh, relu or elu."""
    init_log_std: float = setting(0.0, bounds='[-5, 2]')
    """Initial log standard deviation of the Gaussian policy."""
    gamma: float = setting(0.99, bounds='[0, 1]', to=(InnerConfig, 'gamma'))
    """Discount factor."""
    gae_lambda: float = setting(1.0, bounds='[0, 1]', to=(InnerConfig, 'gae_lambda'))
    """GAE lambda of the advantages (1.0: Monte-Carlo returns minus the linear baseline)."""
    normalize_obs: bool = setting(True)
    """Keep running observation statistics from pre-update rollouts (frozen when saved)."""
    workers: int = setting(2, bounds='>= 1')
    """Worker processes that step the environments."""
    max_envs: int = setting(64, bounds='>= 1')
    """Environments alive at once (~30 MB each in PyBullet); tasks run in waves beyond it."""
    device: str = setting('auto', choices=DEVICES, check=_is_device,
                          want=f'one of {DEVICES} (or cuda:N)')
    """Where the policy runs: auto (CUDA when available), cpu or cuda."""
    inference: str = setting('central', choices=INFERENCE)
    """Who computes the rollout actions: central (the main process, one batched call per step
    on ``device``) or workers (each worker runs whole episodes with a numpy copy of the policy;
    faster on CPU-only machines). See maml_robot.sampler.Sampler."""
    seed: int = setting(0, bounds='>= 0', check=lambda v: v < 2 ** 63)
    """Root seed: every iteration's randomness derives from (seed, iteration)."""
    checkpoint_every: int = setting(10, bounds='>= 1')
    """Save latest.safetensors and the resume state every this many iterations."""
    step_timeout: float = setting(60.0, bounds='> 0')
    """Seconds a worker may take for one call before it is declared hung and replaced."""
    max_retries: int = setting(2, bounds='>= 0')
    """Re-samples of a batch after worker crashes before training stops with an error."""

    def __post_init__(self):
        validate(self)
        if self.algorithm == 'es_maml':
            self._check_es_maml()
        if self.init_checkpoint is not None:
            if self.normalize_obs:
                raise ValueError('normalize_obs: set it to false with init_checkpoint (the '
                                 "checkpoint's observation normalization is kept)")
            self.init_checkpoint = str(Path(self.init_checkpoint).expanduser().resolve())
        path = Path(self.scenario).expanduser()
        if self.scenario not in SHIPPED and path.is_file():
            # a user's scenario file: stored absolute, so --resume works from any directory
            self.scenario = str(path.resolve())

    def _check_es_maml(self):
        """Reject es_maml settings that cannot work together, naming the keys to change."""
        if self.learn_inner_lr:
            raise ValueError('learn_inner_lr: es_maml does not use the policy-gradient step; '
                             'set it to false')
        if self.tasks_per_iteration > self.es_pairs:
            raise ValueError(f'tasks_per_iteration {self.tasks_per_iteration} > es_pairs '
                             f'{self.es_pairs}: es_maml runs pair i on task i; lower '
                             'tasks_per_iteration or raise es_pairs')
        cost = ((self.adapt_batch + 1) if self.adaptation == 'hill_climb'
                else 2 * self.adapt_batch) * self.adapt_episodes
        if self.adaptation_budget < cost:
            raise ValueError(f'adaptation_budget {self.adaptation_budget} < {cost}, the live '
                             f'episodes of one {self.adaptation} round (adapt_batch, '
                             'adapt_episodes); raise the budget or lower those')

    def start_checkpoint(self, expect=None):
        """
        Return the checkpoint ``init_checkpoint`` names (None when unset), checked to fit.

        :param expect: the scenario (or ``load_checkpoint``'s expect dict) it must match.
        """
        if self.init_checkpoint is None:
            return None
        ckpt = load_checkpoint(self.init_checkpoint, expect=expect)
        net = ckpt.policy_config
        if (tuple(net.hidden_sizes), net.activation) != (self.hidden_sizes, self.activation):
            raise ValueError(f'init_checkpoint {self.init_checkpoint}: its network is '
                             f'{list(net.hidden_sizes)} {net.activation}; set hidden_sizes and '
                             'activation to match it')
        return ckpt

    def inner_config(self) -> InnerConfig:
        """Return the inner-loop settings (the fields declared ``to=(InnerConfig, ...)``)."""
        return InnerConfig(**section(self, InnerConfig))

    def outer_config(self):
        """Return the outer algorithm's config (ProMP-, TRPO- or ESMAMLConfig) from its fields."""
        config_class = LEARNERS[self.algorithm][1]
        return config_from_dict(self.algorithm, section(self, config_class))

    def to_dict(self) -> dict:
        """Return a YAML/JSON-able dict (``from_dict`` inverts it)."""
        d = asdict(self)
        d['hidden_sizes'] = list(self.hidden_sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = 'config') -> 'TrainConfig':
        """Build from a dict; unknown keys and bad values raise ValueError naming the key."""
        return from_dict(cls, d, source)


def default_config_path(scenario: str) -> Path | None:
    """Return config/train/<scenario>.yaml for a shipped scenario name, or None."""
    if '/' in scenario or scenario.endswith(('.yaml', '.yml')):
        return None
    try:
        path = data_path('config', 'train', f'{scenario}.yaml')
    except FileNotFoundError:
        return None
    return path if path.is_file() else None


def read_yaml_config(path) -> dict:
    """Read a TrainConfig YAML into a dict (validated later by ``TrainConfig.from_dict``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'training config {path} does not exist')
    with open(path, encoding='utf-8') as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as err:
            raise ValueError(f'{path}: not valid YAML: {err}') from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f'{path}: expected a mapping of TrainConfig keys at the top level')
    return data


def load_train_config(scenario: str | None = None, config_path=None,
                      overrides: dict | None = None) -> TrainConfig:
    """
    Build the config: defaults < config/train/<scenario>.yaml (or ``config_path``) < overrides.

    ``overrides`` are the command-line values (keys whose value is None are ignored).
    """
    overrides = {k: v for k, v in dict(overrides or {}).items() if v is not None}
    values, source = {}, 'defaults'
    if config_path is not None:
        values, source = read_yaml_config(config_path), str(config_path)
    elif scenario is not None and default_config_path(scenario) is not None:
        path = default_config_path(scenario)
        values, source = read_yaml_config(path), str(path)
    if scenario is not None:
        overrides['scenario'] = scenario
    TrainConfig.from_dict(values, source)  # report the file's own errors with its name
    values.update(overrides)
    return TrainConfig.from_dict(values, f'{source} with command-line overrides')

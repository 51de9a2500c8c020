"""Meta-training configuration: the ``TrainConfig`` dataclass and its YAML mirror."""

from dataclasses import asdict, dataclass, fields
import math
from pathlib import Path

from maml_robot.paths import data_path
from maml_robot.scenario import SHIPPED
import yaml

ALGORITHMS = ('promp', 'trpo', 'fomaml')
DEVICES = ('auto', 'cpu', 'cuda')
ACTIVATIONS = ('tanh', 'relu', 'elu')
INFERENCE = ('central', 'workers')


@dataclass
class TrainConfig:
    """Everything one ``maml-robot train`` run depends on (config/train/<scenario>.yaml)."""

    scenario: str = 'reacher'
    """Shipped scenario name (reacher, cheetah, quadruped) or path to a scenario YAML."""
    algorithm: str = 'promp'
    """Outer algorithm: 'promp' (clipped LVC objective), 'trpo' (MAML-TRPO) or 'fomaml'."""
    iterations: int = 200
    """Meta-iterations (each: sample tasks, pre-update rollouts, adapt, post-update, meta-step)."""
    tasks_per_iteration: int = 20
    """Tasks B sampled from the train split per iteration (the meta-batch)."""
    rollouts_per_task: int = 10
    """Rollouts N per task, both before and after adaptation."""
    horizon: int | None = None
    """Steps per rollout; null uses the scenario's ``episode_steps``."""
    inner_lr: float = 0.1
    """Inner-loop step size alpha (the initial value when learn_inner_lr)."""
    learn_inner_lr: bool = False
    """Meta-learn the inner step sizes (Meta-SGD); their shape is inner_lr_per."""
    inner_lr_per: str = 'entry'
    """With learn_inner_lr: 'entry' (one step size per parameter entry, Meta-SGD) or 'tensor'
    (one per parameter tensor: MAML++'s per-layer step sizes)."""
    inner_steps: int = 1
    """Inner policy-gradient steps per task (each on fresh rollouts)."""
    outer_lr: float = 1e-3
    """Outer (meta) step size: Adam's learning rate for promp and fomaml."""
    outer_steps: int = 5
    """Optimizer steps on each meta-batch (ProMP's PPO-style epochs; fomaml too)."""
    clip_eps: float = 0.3
    """ProMP's clip range of the likelihood ratio."""
    kl_coeff: float = 5e-4
    """ProMP's weight of the KL penalty between the old and new pre-update policies."""
    max_kl: float = 0.01
    """TRPO's trust-region size (mean KL of the post-update policies)."""
    max_post_clip_frac: float = 0.0
    """ProMP's outer-step guard (0: off): an outer step that worsens the loss or pushes more
    than this share of post-update samples out of the clip range is halved back or undone
    (recommended with learn_inner_lr; see docs/ALGORITHMS.md)."""
    hidden_sizes: tuple = (64, 64)
    """Widths of the policy's hidden layers."""
    activation: str = 'tanh'
    """Hidden activation of the policy: tanh, relu or elu."""
    init_log_std: float = 0.0
    """Initial log standard deviation of the Gaussian policy."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 1.0
    """GAE lambda of the advantages (1.0: Monte-Carlo returns minus the linear baseline)."""
    normalize_obs: bool = True
    """Keep running observation statistics from pre-update rollouts (frozen when saved)."""
    workers: int = 2
    """Worker processes that step the environments."""
    max_envs: int = 64
    """Environments alive at once (~30 MB each in PyBullet); tasks run in waves beyond it."""
    device: str = 'auto'
    """Where the policy runs: auto (CUDA when available), cpu or cuda."""
    inference: str = 'central'
    """Who computes the rollout actions: central (the main process, one batched call per step
    on ``device``) or workers (each worker runs whole episodes with a numpy copy of the policy;
    faster on CPU-only machines). See maml_robot.sampler.Sampler."""
    seed: int = 0
    """Root seed: every iteration's randomness derives from (seed, iteration)."""
    checkpoint_every: int = 10
    """Save latest.safetensors and the resume state every this many iterations."""
    step_timeout: float = 60.0
    """Seconds a worker may take for one call before it is declared hung and replaced."""
    max_retries: int = 2
    """Re-samples of a batch after worker crashes before training stops with an error."""

    def __post_init__(self):
        for f in fields(self):
            setattr(self, f.name, _check(f.name, getattr(self, f.name)))
        path = Path(self.scenario).expanduser()
        if self.scenario not in SHIPPED and path.is_file():
            # a user's scenario file: stored absolute, so --resume works from any directory
            self.scenario = str(path.resolve())

    def to_dict(self) -> dict:
        """Return a YAML/JSON-able dict (``from_dict`` inverts it)."""
        d = asdict(self)
        d['hidden_sizes'] = list(self.hidden_sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = 'config') -> 'TrainConfig':
        """Build from a dict; unknown keys and bad values raise ValueError naming the key."""
        if not isinstance(d, dict):
            raise ValueError(f'{source}: expected a mapping of TrainConfig keys, got '
                             f'{type(d).__name__}')
        known = [f.name for f in fields(cls)]
        for key in d:
            if key not in known:
                raise ValueError(f'{source}: unknown key {key!r}; valid keys are '
                                 f'{", ".join(known)}')
        try:
            return cls(**d)
        except ValueError as err:
            raise ValueError(f'{source}: {err}') from None


# name -> (kind, check, what to write); kinds: int, float, bool, str, ints, opt_int
_RULES = {
    'scenario': ('str', lambda v: len(v) > 0, 'a scenario name or path'),
    'algorithm': ('str', lambda v: v in ALGORITHMS, f'one of {ALGORITHMS}'),
    'iterations': ('int', lambda v: v >= 0, 'an integer >= 0'),
    'tasks_per_iteration': ('int', lambda v: v >= 1, 'an integer >= 1'),
    'rollouts_per_task': ('int', lambda v: v >= 2, 'an integer >= 2 (the baseline needs 2)'),
    'horizon': ('opt_int', lambda v: v is None or v >= 1, 'null or an integer >= 1'),
    'inner_lr': ('float', lambda v: v >= 0, 'a number >= 0'),
    'learn_inner_lr': ('bool', None, 'true or false'),
    'inner_lr_per': ('str', lambda v: v in ('entry', 'tensor'), "'entry' or 'tensor'"),
    'inner_steps': ('int', lambda v: v >= 1, 'an integer >= 1'),
    'outer_lr': ('float', lambda v: v > 0, 'a number > 0'),
    'outer_steps': ('int', lambda v: v >= 1, 'an integer >= 1'),
    'clip_eps': ('float', lambda v: 0 < v < 1, 'a number in (0, 1)'),
    'kl_coeff': ('float', lambda v: v >= 0, 'a number >= 0'),
    'max_kl': ('float', lambda v: v > 0, 'a number > 0'),
    'max_post_clip_frac': ('float', lambda v: 0 <= v <= 1, 'a number in [0, 1] (0: off)'),
    'hidden_sizes': ('ints', lambda v: len(v) >= 1 and min(v) >= 1,
                     'a non-empty list of positive integers, e.g. [64, 64]'),
    'activation': ('str', lambda v: v in ACTIVATIONS, f'one of {ACTIVATIONS}'),
    'init_log_std': ('float', lambda v: -5 <= v <= 2, 'a number in [-5, 2]'),
    'gamma': ('float', lambda v: 0 <= v <= 1, 'a number in [0, 1]'),
    'gae_lambda': ('float', lambda v: 0 <= v <= 1, 'a number in [0, 1]'),
    'normalize_obs': ('bool', None, 'true or false'),
    'workers': ('int', lambda v: v >= 1, 'an integer >= 1'),
    'max_envs': ('int', lambda v: v >= 1, 'an integer >= 1'),
    'device': ('str', lambda v: v in DEVICES or v.startswith('cuda:'),
               f'one of {DEVICES} (or cuda:N)'),
    'inference': ('str', lambda v: v in INFERENCE, f'one of {INFERENCE}'),
    'seed': ('int', lambda v: 0 <= v < 2 ** 63, 'an integer >= 0'),
    'checkpoint_every': ('int', lambda v: v >= 1, 'an integer >= 1'),
    'step_timeout': ('float', lambda v: v > 0, 'a number of seconds > 0'),
    'max_retries': ('int', lambda v: v >= 0, 'an integer >= 0'),
}


def _check(name: str, value):
    kind, ok, want = _RULES[name]
    bad = ValueError(f'{name}: expected {want}, got {value!r}')
    if kind in ('int', 'opt_int'):
        if value is None and kind == 'opt_int':
            pass
        elif isinstance(value, bool) or not isinstance(value, int):
            raise bad
    elif kind == 'float':
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        value = float(value)
        if not math.isfinite(value):
            raise bad
    elif kind == 'bool':
        if not isinstance(value, bool):
            raise bad
    elif kind == 'str':
        if not isinstance(value, str):
            raise bad
    elif kind == 'ints':
        if not isinstance(value, (list, tuple)) or any(
                isinstance(v, bool) or not isinstance(v, int) for v in value):
            raise bad
        value = tuple(value)
    if ok is not None and not ok(value):
        raise bad
    return value


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

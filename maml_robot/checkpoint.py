"""
Checkpoints: ONE .safetensors file with the tensors and the deployment contract as JSON.

:class:`Checkpoint` is everything deployment needs from training; this module checks that one
is complete and self-consistent (``validate_checkpoint``) and that it fits the robot or
scenario at hand (``check_expectation``), and saves and loads it. The file's layout (tensor
names, header JSON, digest) is :mod:`maml_robot.checkpoint_format`'s. No pickle anywhere.
"""

from dataclasses import dataclass, field
import math
from pathlib import Path

from maml_robot.atomic import write_bytes
# CheckpointError, the format constants, current_versions and _metadata (tests and benchmarks
# build raw files with it) are part of this module's interface too
from maml_robot.checkpoint_format import (  # noqa: F401
    _metadata, CheckpointError, current_versions, DIGEST_KEY, encode, FORMAT_VERSION,
    METADATA_KEY, read_fields)
from maml_robot.meta.inner import InnerConfig
from maml_robot.policy import GaussianPolicy, PolicyConfig
import torch

LOG_STD_RANGE = (-20.0, 10.0)
"""Plausible ``log_std`` of a policy: a standard deviation of 2e-9 .. 2e4 (actions are in
[-1, 1]); beyond it the file is damaged or edited, and adapting would divide by ~0."""


@dataclass(frozen=True)
class Checkpoint:
    """Everything deployment needs from training; ``save_checkpoint`` writes it as one file."""

    policy_config: PolicyConfig
    """Network shape."""
    params: dict
    """Meta-parameters ``{name: Tensor}`` (names and shapes from ``policy_config``)."""
    obs_mean: torch.Tensor
    """(obs_dim,) observation normalization mean."""
    obs_std: torch.Tensor
    """(obs_dim,) observation normalization std (> 0)."""
    joint_names: tuple
    """Controlled joints in scenario order; actions follow this order."""
    observation_layout: tuple
    """A name per observation entry (length obs_dim)."""
    action_scale: tuple
    """Effort limit per joint: ``effort = action * action_scale``."""
    control_period: float
    """Seconds between actions."""
    inner: dict = field(default_factory=lambda: InnerConfig().to_dict())
    """Inner-loop settings (``InnerConfig.to_dict()``)."""
    inner_lr: dict = None
    """Meta-SGD per-parameter step sizes ``{name: Tensor}``; None uses ``inner['lr']``."""
    scenario: dict = field(default_factory=dict)
    """Scenario snapshot (``Scenario.to_dict()``); ``scenario['name']`` is checked on load."""
    algorithm: dict = field(default_factory=dict)
    """Outer algorithm name and config."""
    adaptation: dict = field(default_factory=dict)
    """The adaptation operator the meta-parameters were trained for: ``{'operator': 'pg'}``,
    or for es_maml ``{'operator': 'hill_climb' | 'es', 'settings': {field: value},
    'budget': live episodes}``; empty in older files (``adaptation_operator()``: 'pg')."""
    training: dict = field(default_factory=dict)
    """Training info: iterations, env steps, seed, wall time, ..."""
    versions: dict = field(default_factory=dict)
    """Package / torch / python versions (filled in by ``save_checkpoint`` when empty)."""
    format_version: int = FORMAT_VERSION
    """Checkpoint format version."""

    def make_policy(self):
        """Return a :class:`GaussianPolicy` with this checkpoint's normalization."""
        return GaussianPolicy(self.policy_config, self.obs_mean, self.obs_std)

    def inner_config(self):
        """Return the inner-loop settings as an :class:`InnerConfig`."""
        return InnerConfig.from_dict(self.inner)

    def inner_step_size(self):
        """Return the lr argument of ``inner_step``: a float or the Meta-SGD tensor dict."""
        if self.inner_lr is not None:
            return dict(self.inner_lr)
        return float(self.inner['lr'])

    def adaptation_operator(self):
        """Return the operator name the checkpoint was trained for ('pg' when not recorded)."""
        return self.adaptation.get('operator', 'pg')

    @property
    def scenario_name(self):
        """Return the scenario name recorded in the snapshot (None when absent)."""
        return self.scenario.get('name')


def _check_tensors(kind, tensors, shapes):
    missing = sorted(set(shapes) - set(tensors))
    extra = sorted(set(tensors) - set(shapes))
    if missing or extra:
        raise CheckpointError(f'checkpoint {kind} tensors do not match the policy config: missing '
                              f'{missing}, extra {extra}; the file was written for another '
                              f'network shape')
    for name, shape in shapes.items():
        t = tensors[name]
        if not torch.is_tensor(t):
            raise CheckpointError(f'checkpoint {kind} {name!r} is not a tensor')
        if t.dtype != torch.float32:
            raise CheckpointError(f'checkpoint {kind} {name!r} has dtype {t.dtype} but '
                                  f'maml_robot checkpoints hold torch.float32 tensors; convert '
                                  f'them (tensor.float()) and save again')
        if tuple(t.shape) != tuple(shape):
            raise CheckpointError(f'checkpoint {kind} {name!r} has shape {tuple(t.shape)} but the '
                                  f'policy config needs {tuple(shape)}')
        if not torch.isfinite(t).all():
            raise CheckpointError(f'checkpoint {kind} {name!r} contains NaN or inf; use an '
                                  f'earlier checkpoint (training diverged)')


def validate_checkpoint(ckpt):
    """Raise :class:`CheckpointError` unless ``ckpt`` is complete and self-consistent."""
    cfg = ckpt.policy_config
    if not isinstance(cfg, PolicyConfig):
        raise CheckpointError('policy_config must be a PolicyConfig')
    if ckpt.format_version != FORMAT_VERSION:
        raise CheckpointError(f'checkpoint format version {ckpt.format_version} is not supported '
                              f'(this maml_robot reads version {FORMAT_VERSION}); re-export it '
                              f'with a matching maml_robot version')
    shapes = cfg.param_shapes()
    _check_tensors('params', ckpt.params, shapes)
    log_std = ckpt.params['log_std']
    lo, hi = LOG_STD_RANGE
    if not ((log_std >= lo) & (log_std <= hi)).all():
        raise CheckpointError(f"checkpoint params 'log_std' is {log_std.tolist()}, outside "
                              f'[{lo:g}, {hi:g}] (a policy standard deviation of exp(log_std)); '
                              f'the file is damaged or was edited: use another checkpoint')
    if ckpt.inner_lr is not None:   # Meta-SGD: shaped like the params; per tensor: scalars
        per_tensor = isinstance(ckpt.inner, dict) and ckpt.inner.get('lr_per') == 'tensor'
        _check_tensors('inner_lr', ckpt.inner_lr,
                       {k: () for k in shapes} if per_tensor else shapes)
    _check_tensors('normalization', {'obs_mean': ckpt.obs_mean, 'obs_std': ckpt.obs_std},
                   {'obs_mean': (cfg.obs_dim,), 'obs_std': (cfg.obs_dim,)})
    if not (ckpt.obs_std > 0).all():
        raise CheckpointError('checkpoint obs_std has entries <= 0; it must be positive')
    joints = tuple(ckpt.joint_names)
    if len(joints) != cfg.act_dim or len(set(joints)) != len(joints):
        raise CheckpointError(f'checkpoint joint_names {list(joints)} must be {cfg.act_dim} '
                              f'distinct names (one per action)')
    scale = tuple(ckpt.action_scale)
    if len(scale) != cfg.act_dim or not all(math.isfinite(s) and s > 0 for s in scale):
        raise CheckpointError(f'checkpoint action_scale {list(scale)} must be {cfg.act_dim} '
                              f'finite positive effort limits')
    if len(tuple(ckpt.observation_layout)) != cfg.obs_dim:
        raise CheckpointError(f'checkpoint observation_layout has {len(ckpt.observation_layout)} '
                              f'names but obs_dim is {cfg.obs_dim}')
    if not (math.isfinite(ckpt.control_period) and ckpt.control_period > 0):
        raise CheckpointError(f'checkpoint control_period {ckpt.control_period} must be > 0 s')
    try:
        InnerConfig.from_dict(ckpt.inner)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f'checkpoint inner settings are invalid: {err}') from err


def save_checkpoint(path, ckpt):
    """
    Validate ``ckpt`` and write it to ``path`` atomically (:mod:`maml_robot.atomic`).

    A crash during the write never leaves a half-written file at ``path``.
    """
    validate_checkpoint(ckpt)
    blob = encode(ckpt)
    path = write_bytes(path, blob)
    return path


def load_checkpoint(path, expect=None):
    """
    Read and validate a checkpoint; raise :class:`CheckpointError` saying what to change.

    :param path: the .safetensors file.
    :param expect: optional mapping of what the caller needs, any of ``scenario`` (name),
        ``joint_names``, ``obs_dim``, ``act_dim``, ``observation_layout``, ``control_period``,
        ``action_scale``; or a scenario object (see :func:`expectation_from_scenario`).
    """
    path = Path(path)
    ckpt = Checkpoint(**read_fields(path))
    try:
        validate_checkpoint(ckpt)
    except CheckpointError as err:
        raise CheckpointError(f'{path}: {err}') from err
    if expect is not None:
        check_expectation(ckpt, expect, path)
    return ckpt


def expectation_from_scenario(scenario):
    """Return the ``expect`` mapping for a scenario object (name, joints, dims, period)."""
    exp = {}
    for key, attr in (('scenario', 'name'), ('joint_names', 'joint_names'),
                      ('obs_dim', 'obs_dim'), ('act_dim', 'act_dim'),
                      ('control_period', 'control_period')):
        if hasattr(scenario, attr):
            exp[key] = getattr(scenario, attr)
    if hasattr(scenario, 'action_scale'):
        exp['action_scale'] = [float(x) for x in scenario.action_scale]
    return exp


def check_expectation(ckpt, expect, path='checkpoint'):
    """Raise :class:`CheckpointError` where ``ckpt`` differs from ``expect`` (see load)."""
    if not isinstance(expect, dict):
        expect = expectation_from_scenario(expect)
    unknown = set(expect) - {'scenario', 'joint_names', 'obs_dim', 'act_dim',
                             'observation_layout', 'control_period', 'action_scale'}
    if unknown:
        raise ValueError(f'unknown expect keys {sorted(unknown)}')
    have = {'scenario': ckpt.scenario_name, 'joint_names': list(ckpt.joint_names),
            'obs_dim': ckpt.policy_config.obs_dim, 'act_dim': ckpt.policy_config.act_dim,
            'observation_layout': list(ckpt.observation_layout),
            'control_period': ckpt.control_period, 'action_scale': list(ckpt.action_scale)}
    for key, want in expect.items():
        got = have[key]
        if key in ('joint_names', 'observation_layout', 'action_scale'):
            want = list(want)
        if key in ('control_period', 'action_scale'):
            same = len(got) == len(want) and all(
                math.isclose(a, b, rel_tol=1e-6) for a, b in zip(got, want)) \
                if isinstance(got, list) else math.isclose(got, want, rel_tol=1e-6)
        else:
            same = got == want
        if not same:
            raise CheckpointError(f'{path}: {key} mismatch: the checkpoint has {got!r}, the '
                                  f'robot/scenario expects {want!r}; use a checkpoint trained '
                                  f'for this robot (or fix the scenario)')

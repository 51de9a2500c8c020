"""Load a checkpoint (and persisted adapted parameters) into an OnlineAdapter."""

import dataclasses
import hashlib
import math
from pathlib import Path

from maml_robot.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from maml_robot.observation import (build_observation, compute_reward, is_terminated,
                                    observation_layout)
from maml_robot.observation_terms import BASE_TERMS, GOAL_TERMS as GOAL_OBSERVATIONS
from maml_robot.online.adapter import OnlineAdapter
from maml_robot.online.config import ADAPTATIONS, AdapterSpec, OnlineConfig
from maml_robot.online.robot_limits import robot_limited_spec
from maml_robot.policy import GaussianPolicy, PolicyConfig
from maml_robot.scenario import checkpoint_reference, load_scenario, Scenario
import numpy as np
import torch


GOAL_TERMS = GOAL_OBSERVATIONS + ('goal_distance',)   # observation and reward terms
MODELS_DIR = Path(__file__).resolve().parent.parent / 'models'
SHIPPED_MODELS = tuple(sorted(p.stem for p in MODELS_DIR.glob('*.safetensors')))
"""Names of the meta-policies shipped in maml_robot/models/ (one NAME.safetensors each)."""


def resolve_checkpoint(name_or_path: str):
    """Return the file of a shipped model name (maml_robot/models/NAME.safetensors) or a path."""
    text = str(name_or_path).strip()
    if not text:
        raise ValueError('no checkpoint given: set the checkpoint parameter to a .safetensors '
                         'file written by `maml-robot train`')
    if text in SHIPPED_MODELS:
        return MODELS_DIR / f'{text}.safetensors'
    path = Path(text).expanduser()
    if not path.exists() and path.suffix == '' and len(path.parts) == 1:
        raise ValueError(f'{text!r} is neither a shipped model nor a file; shipped models: '
                         f'{list(SHIPPED_MODELS)}, or pass the path of a .safetensors file '
                         f'written by `maml-robot train`')
    return path


def check_checkpoint_exists(name) -> None:
    """Raise ValueError unless ``name`` (None: not given) is a shipped model or a file."""
    if name is not None and not resolve_checkpoint(name).is_file():
        raise ValueError(f'checkpoint {name!r}: no such file; give a .safetensors path or a '
                         'shipped model name (maml_robot/models)')


def params_fingerprint(params) -> str:
    """Return a short hash of a params dict (identifies the meta-policy a file adapted)."""
    digest = hashlib.sha256()
    for name in sorted(params):
        digest.update(name.encode())
        digest.update(params[name].detach().to('cpu', torch.float32).contiguous().numpy()
                      .tobytes())
    return digest.hexdigest()[:16]


def scenario_of(ckpt):
    """
    Return the Scenario a checkpoint was trained on (snapshot, else the shipped name).

    A checkpoint of a shipped scenario whose control the package has changed since is refused
    (``checkpoint_reference``): the robot the shipped scenario describes takes other commands.
    """
    if 'source' in ckpt.scenario:
        checkpoint_reference(ckpt.scenario_name, ckpt.scenario)
        return Scenario.from_dict(ckpt.scenario)
    return load_scenario(ckpt.scenario_name or 'reacher')


LIMIT_RTOL = 1e-3   # relative tolerance of a checkpoint's limits against its scenario's


def check_limits(ckpt, scenario):
    """
    Raise ValueError unless the checkpoint's joints and limits are the scenario's.

    The scenario is rebuilt from the robot description (URDF), so it, not the checkpoint's
    metadata, is the authority on effort limits and the control period.
    """
    if tuple(ckpt.joint_names) != tuple(scenario.joint_names):
        raise ValueError(f'checkpoint joints {list(ckpt.joint_names)} differ from scenario '
                         f'{scenario.name!r} joints {list(scenario.joint_names)}')
    want = [float(x) for x in scenario.action_scale]
    got = [float(x) for x in ckpt.action_scale]
    if len(got) != len(want) or not all(
            math.isclose(a, b, rel_tol=LIMIT_RTOL) for a, b in zip(got, want)):
        raise ValueError(f'checkpoint action_scale {got} differs from the action scale {want} '
                         f'of scenario {scenario.name!r} ({scenario.urdf_path}); the checkpoint '
                         'was altered or trained for another robot: use one written for this '
                         'robot')
    if not math.isclose(ckpt.control_period, scenario.control_period, rel_tol=LIMIT_RTOL):
        raise ValueError(f'checkpoint control_period {ckpt.control_period!r} s differs from the '
                         f'{scenario.control_period!r} s of scenario {scenario.name!r}; the '
                         'checkpoint was altered or trained for another robot: use one written '
                         'for this robot')


def checkpoint_adaptation(ckpt):
    """
    Return (operator name, its settings or None) the checkpoint was meta-trained for.

    Read from its ``adaptation`` record (``{'operator': ..., 'settings': {...}}``, written by
    every learner; es_maml stores the derivative-free operator and its trained settings there);
    a checkpoint without it was trained for the policy-gradient step: ('pg', None).
    """
    name = ckpt.adaptation_operator()
    args = ckpt.adaptation.get('settings')
    if name not in ADAPTATIONS:
        raise ValueError(f'checkpoint metadata adaptation.operator is {name!r}; this version '
                         f'knows {ADAPTATIONS}: set the adaptation parameter to one of them or '
                         'use a checkpoint written by a matching maml_robot')
    if args is not None and not isinstance(args, dict):
        raise ValueError(f'checkpoint metadata adaptation.settings must be a mapping of '
                         f'settings, got {args!r}')
    return name, args


def spec_from_checkpoint(ckpt, scenario) -> AdapterSpec:
    """Return the deployment contract of a checkpoint: the scenario's limits, its observation."""
    check_limits(ckpt, scenario)
    adaptation, adaptation_args = checkpoint_adaptation(ckpt)
    terms = set(scenario.observation) | set(scenario.reward)
    needs = tuple(n for n, used in (('goal', terms & set(GOAL_TERMS)),
                                    ('odom', terms & set(BASE_TERMS)
                                     or 'forward_velocity' in terms)) if used)
    return AdapterSpec(
        joint_names=tuple(scenario.joint_names),
        action_scale=np.asarray(scenario.action_scale, dtype=np.float64),
        position_limits=np.asarray(scenario.position_limits, dtype=np.float64),
        episode_steps=int(scenario.episode_steps),
        observe=lambda state: build_observation(scenario, state),
        reward=lambda state, action, nxt: compute_reward(scenario, state, action, nxt),
        inner_lr=ckpt.inner_step_size(),
        inner_kwargs=ckpt.inner_config().advantage_kwargs(),
        control_period=float(scenario.control_period), needs=needs,
        actuation=scenario.actuation,
        terminated=(lambda state: is_terminated(scenario, state)) if scenario.termination
        else None, adaptation=adaptation, adaptation_args=adaptation_args)


def _saver(path, ckpt, fingerprint):
    """Return persist_fn: write adapted params as a checkpoint (atomic, via the checkpoint)."""
    def persist_fn(params, info):
        clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                 for k, v in info.items()}
        training = dict(ckpt.training, adapted_from=fingerprint, **clean)
        save_checkpoint(path, dataclasses.replace(
            ckpt, params={k: v.detach() for k, v in params.items()}, training=training))
    return persist_fn


def load_adapter(checkpoint, config: OnlineConfig, *, persist_path='', seed=0, log=print,
                 robot=None, robot_source='', limit_tolerance=0.01):
    """
    Load a checkpoint (and resume persisted adapted parameters) into an OnlineAdapter.

    Commands are clamped to the robot's limits: ``robot`` (its UrdfModel, read from
    ``robot_source``) checked against the checkpoint's scenario within ``limit_tolerance``
    (relative), or the scenario's own URDF limits when ``robot`` is None.
    Raises ValueError (CheckpointError) with what to change on a bad or mismatched file.
    """
    ckpt = load_checkpoint(resolve_checkpoint(checkpoint))
    scenario = scenario_of(ckpt)
    spec = robot_limited_spec(spec_from_checkpoint(ckpt, scenario), scenario, robot,
                              robot_source, limit_tolerance)
    fingerprint = params_fingerprint(ckpt.params)
    initial = persist_fn = reference = None
    if persist_path:
        persist_path = Path(persist_path).expanduser()
        if persist_path.exists():
            saved = load_checkpoint(persist_path)
            origin = saved.training.get('adapted_from')
            if origin != fingerprint:
                raise ValueError(f'{persist_path} holds parameters adapted from another '
                                 f'meta-policy ({origin}, this one is {fingerprint}); delete it '
                                 'or set another persist_path')
            initial = saved.params
            reference = _saved_reference(saved.training, log)
            log(f'resuming {saved.training.get("adaptations", "?")} adaptations from '
                f'{persist_path}')
        persist_fn = _saver(persist_path, ckpt, fingerprint)
    return OnlineAdapter(ckpt.make_policy(), ckpt.params, spec, config, seed=seed,
                         initial_params=initial, persist_fn=persist_fn, log=log,
                         reference=reference)


def _saved_reference(training, log):
    """Return the persisted (mean, variance) of the meta-policy's returns, or None."""
    mean, var = training.get('meta_return'), training.get('meta_return_var')
    if isinstance(mean, (int, float)) and isinstance(var, (int, float)) \
            and math.isfinite(mean) and math.isfinite(var):
        return float(mean), float(var)
    log('the persisted file holds no meta-policy return: the divergence guard (revert to the '
        'meta-policy) is off in this run; delete the persist file to measure it again')
    return None


def fresh_checkpoint(scenario, seed: int = 0, hidden_sizes=(64, 64)):
    """Return a Checkpoint of a freshly initialized (untrained) policy for ``scenario``."""
    config = PolicyConfig(obs_dim=scenario.obs_dim, act_dim=scenario.act_dim,
                          hidden_sizes=tuple(hidden_sizes))
    policy = GaussianPolicy(config)
    return Checkpoint(policy_config=config, params=policy.init_params(seed),
                      obs_mean=policy.obs_mean, obs_std=policy.obs_std,
                      joint_names=tuple(scenario.joint_names),
                      observation_layout=tuple(observation_layout(scenario)),
                      action_scale=tuple(float(x) for x in scenario.action_scale),
                      control_period=float(scenario.control_period),
                      scenario=scenario.to_dict(), training={'fresh_init_seed': seed})

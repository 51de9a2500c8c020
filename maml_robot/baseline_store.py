"""
Where baselines come from and where their models live: env source, task subsets, model cache.

:class:`EnvSource` names a scenario's environments (factory, episode length, a fingerprint of the
scenario's content) and its fixed task splits; :class:`BaselineCache` stores trained baseline
models keyed by scenario fingerprint, kind, network, budget and seed (layout in
docs/EVALUATION.md), so that evaluation never retrains them.
"""

from dataclasses import dataclass, field
import hashlib
import json
from pathlib import Path
import time
from typing import Any, Callable

from maml_robot.atomic import atomic_path, write_text
from maml_robot.sampler import Sampler, ScenarioEnvFactory
from maml_robot.scenario import load_scenario
import torch

DEFAULT_MAX_ENVS = 64
"""Environments the Sampler keeps alive at once (it rolls tasks out in waves of that size)."""


TASK_FILTERS = {
    'dead-joint': lambda task: bool(getattr(task, 'dead_joints', ())),
    'no-dead-joint': lambda task: not getattr(task, 'dead_joints', ()),
}
"""Named task subsets that ``--task-filter`` selects (indices in the split are kept)."""


@dataclass(frozen=True)
class EnvSource:
    """Where the baselines' environments come from."""

    name: str
    """Scenario name (used in cache keys and results)."""
    make_env: Callable[[], Any]
    """Picklable zero-argument factory of one env with the task API."""
    horizon: int
    """Episode length in control steps."""
    fingerprint: str
    """Short hash of everything that defines the tasks and dynamics (a changed scenario YAML
    gets a new cache folder, never a stale model)."""

    @classmethod
    def from_scenario(cls, name_or_path):
        """Build the source of a shipped scenario name, a scenario YAML path or a snapshot."""
        scenario = load_scenario(name_or_path)
        # What defines the robot and its tasks; file locations are left out on purpose, so a
        # cache copied to another machine still hits.
        identity = {k: v for k, v in scenario.to_dict().items()
                    if not k.endswith(('path', 'sha256'))}
        snapshot = json.dumps(identity, sort_keys=True, default=str)
        reference = name_or_path if isinstance(name_or_path, dict) else str(name_or_path)
        return cls(scenario.name, ScenarioEnvFactory(reference),
                   int(scenario.episode_steps), hashlib.sha256(snapshot.encode()).hexdigest()[:10])

    def split_tasks(self, split, n=None, task_filter=None):
        """
        Return ``(tasks, task_ids)``: the fixed tasks of ``split`` and their indices in it.

        :param n: keep the first ``n`` tasks (after filtering); None keeps all.
        :param task_filter: a name in ``TASK_FILTERS`` (e.g. ``dead-joint``) or None.
        """
        if task_filter is not None and task_filter not in TASK_FILTERS:
            raise ValueError(f'unknown task filter {task_filter!r}; use one of '
                             f'{sorted(TASK_FILTERS)}')
        env = self.make_env()
        try:  # all of a fixed split when filtering, else the first n (the split is fixed)
            tasks = list(env.unwrapped.sample_tasks(None if task_filter else n, split=split,
                                                    seed=0))
        finally:
            env.close()
        keep = TASK_FILTERS[task_filter] if task_filter else (lambda task: True)
        pairs = [(task, i) for i, task in enumerate(tasks) if keep(task)][:n]
        if not pairs:
            raise ValueError(f'no task of split {split!r} passes filter {task_filter!r}')
        return [t for t, _ in pairs], [i for _, i in pairs]

    def sampler(self, workers, seed=0, device='cpu', max_envs=DEFAULT_MAX_ENVS):
        """Return a Sampler over this source's envs."""
        return Sampler(env_factory=self.make_env, horizon=self.horizon, num_workers=workers,
                       seed=seed, device=device, max_envs=max_envs)


def task_key(task):
    """Return a short hash of a task's value (part of an oracle's cache key)."""
    value = task.to_dict() if hasattr(task, 'to_dict') else dict(task)
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:8]


def arch_tag(policy_config):
    """Return e.g. ``64x64-tanh``: the network shape in cache paths."""
    return 'x'.join(str(h) for h in policy_config.hidden_sizes) + '-' + policy_config.activation


@dataclass
class BaselineCache:
    """
    Trained baseline models on disk, so that evaluation never retrains them.

    Layout: ``root/<scenario>-<fingerprint>/<kind>/<arch>/budget-<env steps>/seed-<seed>/``
    holding ``model.zip`` (SB3's own format, PPO-DR), ``params.safetensors`` (ours, the
    multi-task policy) or ``task-<index>-<hash>.zip`` (one oracle per task), each with an
    ``.json`` sidecar (training wall time, env steps, versions).
    """

    root: Path
    source: EnvSource
    policy_config: Any
    retrain: bool = False
    trained: list = field(default_factory=list)
    """Paths trained (not loaded) by this cache object, for reports and tests."""

    def folder(self, kind, budget, seed):
        """Return the folder of one (kind, budget, seed)."""
        return (Path(self.root) / f'{self.source.name}-{self.source.fingerprint}' / kind /
                arch_tag(self.policy_config) / f'budget-{int(budget)}' / f'seed-{int(seed)}')

    def sb3_model(self, path, train_fn):
        """Load the SB3 PPO at ``path`` or train it with ``train_fn() -> model`` and save it."""
        # lazy: stable_baselines3 (0.25 s) only when an SB3 model is trained or loaded
        from stable_baselines3 import PPO

        path = Path(path)
        if path.exists() and (not self.retrain or path in self.trained):
            return PPO.load(path, device='cpu')
        start = time.perf_counter()
        model = train_fn()
        with atomic_path(path) as tmp:
            model.save(tmp)
        self._sidecar(path, time.perf_counter() - start, int(model.num_timesteps))
        self.trained.append(path)
        return model

    def _sidecar(self, path, wall_s, env_steps):
        # lazy: stable_baselines3 (0.25 s) only when an SB3 model is trained or loaded
        import stable_baselines3
        info = {'wall_s': wall_s, 'env_steps': env_steps, 'scenario': self.source.name,
                'fingerprint': self.source.fingerprint, 'torch': torch.__version__,
                'stable_baselines3': stable_baselines3.__version__,
                'created': time.strftime('%Y-%m-%dT%H:%M:%S')}
        write_text(Path(str(path) + '.json'), json.dumps(info, indent=1) + '\n')

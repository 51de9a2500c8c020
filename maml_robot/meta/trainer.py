"""
The meta-training loop: tasks -> pre-update rollouts -> adapt -> post-update rollouts -> meta-step.

One :class:`Trainer` owns a run folder (config.yaml, run.yaml, progress.csv, tensorboard/,
latest/best checkpoints, resume.safetensors; :mod:`maml_robot.meta.run_folder`).

ES-MAML (``algorithm: es_maml``) samples its own episodes in its learner's ``run_iteration``.
Every iteration's randomness (tasks, rollout seeds, action noise) derives from
``SeedSequence([seed, iteration])``, so a resumed run repeats the uninterrupted one exactly.
"""

from dataclasses import asdict
import math
from pathlib import Path
import time

from maml_robot.checkpoint import Checkpoint, save_checkpoint
from maml_robot.meta.learners import make_learner
from maml_robot.meta.run_folder import (BEST_FILE, CSV_FILE, LATEST_FILE, prepare_run_folder,
                                        ProgressLog, RESUME_FILE)
from maml_robot.observation import observation_layout
from maml_robot.policy import expand_params, GaussianPolicy, ObsNormalizer, PolicyConfig
from maml_robot.sampler import resolve_device, Sampler, SamplerError, ScenarioEnvFactory
from maml_robot.scenario import load_scenario
from maml_robot.train_config import TrainConfig
from maml_robot.train_state import load_train_state, save_train_state
import numpy as np
import torch
from tqdm import tqdm

# streams spawned from SeedSequence([seed, iteration]), in this order
STREAMS = ('tasks', 'pre', 'post', 'learner')


def iteration_seeds(seed: int, iteration: int) -> dict:
    """Return the independent SeedSequences of one iteration, keyed by STREAMS."""
    children = np.random.SeedSequence([seed, iteration]).spawn(len(STREAMS))
    return dict(zip(STREAMS, children))


def masked_returns(episodes) -> torch.Tensor:
    """Return the undiscounted return of every rollout: (B, N)."""
    return episodes.returns()


class Trainer:
    """
    Meta-trains a policy on a scenario; the run folder: :mod:`maml_robot.meta.run_folder`.

    :param config: the run's :class:`TrainConfig`.
    :param out_dir: the run folder (created).
    :param resume: continue the run saved in ``out_dir`` (its config.yaml must match).
    :param env_factory: picklable env builder overriding the scenario's (tests, benchmarks);
        the env must offer ``unwrapped.sample_tasks(n, split, seed)`` and ``set_task``.
    :param progress: show a tqdm progress bar.
    :param backend: a started-or-not ``WorkerBackend`` (e.g. Ray); default the local pool.
    """

    def __init__(self, config: TrainConfig, out_dir, *, resume: bool = False,
                 env_factory=None, progress: bool = True, backend=None):
        self.config = cfg = config
        self.out = Path(out_dir)
        self.progress = progress
        self.device = resolve_device(cfg.device)
        self.run_id, self._resume_state = prepare_run_folder(self.out, cfg, resume)
        self.scenario = None
        if env_factory is None:
            self.scenario = load_scenario(cfg.scenario)
            env_factory = ScenarioEnvFactory(str(self.scenario.path))
        self.task_env = env_factory()  # main-process env: task sampling and spaces only
        obs_dim = int(self.task_env.observation_space.shape[0])
        act_dim = int(self.task_env.action_space.shape[0])
        horizon = cfg.horizon
        if horizon is None:
            if self.scenario is None:
                raise ValueError('horizon: set it in the config when training on a custom env')
            horizon = self.scenario.episode_steps
        self.horizon = int(horizon)
        self.policy = GaussianPolicy(PolicyConfig(
            obs_dim=obs_dim, act_dim=act_dim, hidden_sizes=cfg.hidden_sizes,
            activation=cfg.activation, init_log_std=cfg.init_log_std)).to(self.device)
        self.normalizer = ObsNormalizer(obs_dim)
        start = cfg.start_checkpoint(expect=self.scenario)      # None: a fresh network
        params = (self.policy.init_params(seed=cfg.seed, device=self.device) if start is None
                  else {k: v.to(self.device) for k, v in start.params.items()})
        if start is not None:
            self.policy.set_normalization(start.obs_mean, start.obs_std)
        self.learner = build_learner(cfg, self.policy, params)
        self.sampler = Sampler(num_workers=cfg.workers, seed=cfg.seed, device=cfg.device,
                               horizon=self.horizon, env_factory=env_factory,
                               max_retries=cfg.max_retries, step_timeout=cfg.step_timeout,
                               max_envs=cfg.max_envs, backend=backend,
                               inference=cfg.inference)
        self.iteration = 0          # iterations completed
        self.best_return = -math.inf
        self.env_steps = 0
        self.wall_time = 0.0
        self.log = ProgressLog(self.out / CSV_FILE)
        if resume:
            self._load_resume()

    # --------------------------------------------------------------------------- iterations
    def run_iteration(self, it: int) -> dict:
        """Run meta-iteration ``it``; return its log row (returns, learner stats, timing)."""
        cfg, seeds = self.config, iteration_seeds(self.config.seed, it)
        task_seed = int(seeds['tasks'].generate_state(1)[0])
        tasks = self.task_env.unwrapped.sample_tasks(cfg.tasks_per_iteration, split='train',
                                                     seed=task_seed)
        if hasattr(self.learner, 'run_iteration'):   # es_maml: it samples its own episodes
            t0 = time.perf_counter()
            out = self.learner.run_iteration(self.sampler, tasks, cfg.rollouts_per_task, seeds)
            self._update_normalizer(out['episodes'])
            self.env_steps += out['env_steps']
            return self._row(it, torch.as_tensor(out['pre_returns'])[:, None],
                             torch.as_tensor(out['post_returns']), out['stats'],
                             {'time_iteration': time.perf_counter() - t0})
        num_tasks, rollouts = len(tasks), cfg.rollouts_per_task
        t0 = time.perf_counter()
        params_b = expand_params(self.learner.params, num_tasks)  # (B, ...) no copy
        pre_steps = []
        for k in range(cfg.inner_steps):  # each inner step on fresh rollouts
            pre_seed = seeds['pre'] if k == 0 else seeds['pre'].spawn(1)[0]
            pre_steps.append(self.sampler.sample(self.policy, params_b, tasks, rollouts,
                                                 seed=pre_seed))
            if k + 1 < cfg.inner_steps:
                params_b = self.learner.adapt(pre_steps)
        t1 = time.perf_counter()
        adapted_b = self.learner.adapt(pre_steps)
        t2 = time.perf_counter()
        post = self.sampler.sample(self.policy, adapted_b, tasks, rollouts, seed=seeds['post'])
        t3 = time.perf_counter()
        stats = self.learner.meta_step(pre_steps if cfg.inner_steps > 1 else pre_steps[0], post)
        t4 = time.perf_counter()
        self._update_normalizer(pre_steps[0])
        times = {'time_sample_pre': t1 - t0, 'time_adapt': t2 - t1, 'time_sample_post': t3 - t2,
                 'time_meta_step': t4 - t3, 'time_iteration': time.perf_counter() - t0}
        self.env_steps += int(sum(e.mask.sum().item() for e in pre_steps + [post]))
        return self._row(it, masked_returns(pre_steps[0]), masked_returns(post), stats, times)

    def _update_normalizer(self, episodes) -> None:
        """Add ``episodes``' observations to the statistics the NEXT iteration normalizes with."""
        if self.config.normalize_obs:  # this iteration's log-probs stay valid
            self.normalizer.update(episodes.observations, episodes.mask)
            self.policy.set_normalization(*self.normalizer.stats())

    def _row(self, it, pre_ret, post_ret, stats, times) -> dict:
        """Return the log row from returns (B, N) before and after adaptation, stats, times."""
        num_tasks = pre_ret.shape[0]
        row = {'iteration': it, 'pre_return': pre_ret.mean().item(),
               'post_return': post_ret.mean().item()}
        row['adaptation_gain'] = row['post_return'] - row['pre_return']
        row['pre_return_std'] = pre_ret.mean(-1).std().item() if num_tasks > 1 else 0.0
        row['post_return_std'] = post_ret.mean(-1).std().item() if num_tasks > 1 else 0.0
        row['env_steps'] = self.env_steps
        row['worker_crashes'] = len(self.sampler.crash_reports)
        row.update({k: _scalar(v) for k, v in sorted(stats.items()) if k not in row})
        row.update(times)
        return row

    def run(self) -> dict:
        """
        Train until ``config.iterations``; return the last log row (empty if none ran).

        On any error or interrupt the state of the last completed iteration is saved first.
        """
        # lazy: torch.utils.tensorboard takes 0.18 s and only a running training needs it
        from torch.utils.tensorboard import SummaryWriter
        cfg = self.config
        writer = SummaryWriter(str(self.out / 'tensorboard'), purge_step=self.iteration)
        bar = tqdm(total=cfg.iterations, initial=self.iteration, disable=not self.progress,
                   desc=f'train {cfg.scenario}', unit='it', dynamic_ncols=True)
        snapshot = self._snapshot()
        row = {}
        try:
            for it in range(self.iteration, cfg.iterations):
                start = time.perf_counter()
                row = self.run_iteration(it)
                self.iteration = it + 1
                self.wall_time += time.perf_counter() - start
                row['wall_time'] = self.wall_time
                self.log.append(row, writer)
                improved = row['post_return'] > self.best_return
                if improved:
                    self.best_return = row['post_return']
                snapshot = self._snapshot()
                if improved:
                    save_checkpoint(self.out / BEST_FILE, snapshot['checkpoint'])
                if self.iteration % cfg.checkpoint_every == 0 or self.iteration == cfg.iterations:
                    self._save(snapshot)
                bar.update(1)
                bar.set_postfix(pre=f'{row["pre_return"]:.2f}', post=f'{row["post_return"]:.2f}')
        except (KeyboardInterrupt, Exception) as err:  # any error: keep what was computed
            self._save(snapshot)
            what = ('interrupted' if isinstance(err, KeyboardInterrupt) else
                    'sampling failed' if isinstance(err, SamplerError) else
                    'the meta-step diverged' if isinstance(err, FloatingPointError) else
                    f'stopped by {type(err).__name__}')
            bar.write(f'{what}: saved the state after {snapshot["info"]["iteration"]} completed '
                      f'iterations in {self.out}; continue with --resume')
            raise
        finally:
            bar.close()
            writer.close()
            self.close()
        return row

    def close(self) -> None:
        """Stop the workers and release the main-process env (``run`` does this itself)."""
        self.sampler.close()
        self.task_env.close()

    # ------------------------------------------------------------------------ state / resume
    def _snapshot(self) -> dict:
        """
        Copy everything saved after the last completed iteration.

        Taken between iterations, so a Ctrl-C in the middle of a meta-step (parameters half
        updated) still saves a consistent state and checkpoint.
        """
        state = {'learner': self.learner.state_dict(),
                 'normalizer': self.normalizer.state_dict()}
        state = _clone(state)
        info = {'iteration': self.iteration, 'best_return': _json_float(self.best_return),
                'env_steps': self.env_steps, 'wall_time': self.wall_time,
                'crashes': len(self.sampler.crash_reports), 'config': self.config.to_dict(),
                'run_id': self.run_id}
        return {'state': state, 'info': info, 'checkpoint': self.make_checkpoint()}

    def _save(self, snapshot: dict) -> None:
        save_train_state(self.out / RESUME_FILE, snapshot['state'], snapshot['info'])
        save_checkpoint(self.out / LATEST_FILE, snapshot['checkpoint'])

    def _load_resume(self) -> None:
        # on the CPU: the learner copies into its (device) tensors, the normalizer stays on CPU
        state, info = self._resume_state or load_train_state(self.out / RESUME_FILE)
        self._resume_state = None
        self.learner.load_state_dict(state['learner'])
        self.normalizer.load_state_dict(state['normalizer'])
        if self.config.normalize_obs and float(self.normalizer.count) > 0:
            self.policy.set_normalization(*self.normalizer.stats())
        self.iteration = int(info['iteration'])
        best = info['best_return']
        self.best_return = -math.inf if best is None else float(best)
        self.env_steps = int(info['env_steps'])
        self.wall_time = float(info['wall_time'])
        self.log.truncate(self.iteration)

    def make_checkpoint(self) -> Checkpoint:
        """Return the deployable checkpoint of the current state (tensors copied)."""
        learner, cfg = self.learner, self.config
        inner_lr = learner.current_inner_lr()
        training = {'iterations': self.iteration, 'env_steps': self.env_steps,
                    'seed': cfg.seed, 'wall_time_s': round(self.wall_time, 3),
                    'best_post_return': _json_float(self.best_return),
                    'train_config': cfg.to_dict()}
        return Checkpoint(
            policy_config=self.policy.config, params=learner.current_params(),
            obs_mean=self.policy.obs_mean.clone(), obs_std=self.policy.obs_std.clone(),
            inner=learner.inner.to_dict(),
            inner_lr=inner_lr if isinstance(inner_lr, dict) else None,
            algorithm={'name': cfg.algorithm, 'config': asdict(learner.config)},
            adaptation=learner.adaptation(), training=training, **self._robot_contract())

    def _robot_contract(self) -> dict:
        """Joint names, observation layout, action scale, control period (and scenario)."""
        sc = self.scenario
        if sc is not None:
            return {'joint_names': tuple(sc.joint_names),
                    'observation_layout': tuple(observation_layout(sc)),
                    'action_scale': tuple(float(x) for x in sc.action_scale),
                    'control_period': float(sc.control_period), 'scenario': sc.to_dict()}
        cfg = self.policy.config  # a custom env: generic names, its action bounds
        high = self.task_env.action_space.high
        return {'joint_names': tuple(f'action_{i}' for i in range(cfg.act_dim)),
                'observation_layout': tuple(f'obs_{i}' for i in range(cfg.obs_dim)),
                'action_scale': tuple(float(abs(h)) if np.isfinite(h) and h != 0 else 1.0
                                      for h in high),
                'control_period': float(getattr(self.task_env.unwrapped, 'dt', 0.05)),
                'scenario': {'name': 'custom'}}


def build_learner(cfg: TrainConfig, policy, params):
    """Return the outer learner (maml_robot.meta.learners) the config asks for."""
    return make_learner(cfg.algorithm, policy, params, cfg.inner_config(), cfg.outer_config())


def _scalar(value) -> float:
    if isinstance(value, torch.Tensor):
        return float(value.detach().cpu().item())
    return float(value)


def _json_float(x: float):
    return x if math.isfinite(x) else None


def _clone(tree):
    if isinstance(tree, torch.Tensor):
        return tree.detach().clone()
    if isinstance(tree, dict):
        return {k: _clone(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_clone(v) for v in tree)
    return tree

"""
How a legged robot's domain-randomized PPO walks: return, forward speed and falls per test task.

Loads the PPO-DR model that ``maml-robot baseline --kind ppo-dr`` trained and cached for the
scenario (same cache folder, budget and seed), or a meta-policy checkpoint's pre-update policy
(``--checkpoint``), rolls out its mean action for one episode on each of the first ``--tasks``
tasks of a split, and compares with standing still (a zero action: the default pose in position
mode). ``--split train --task-seed S`` draws validation tasks from the training distribution
(for choosing a recipe without the held-out splits). Nothing is trained here. Run, after the
baseline:

    .venv/bin/maml-robot baseline --kind ppo-dr --scenario a1_walk --train-steps 1000000
        --tasks 8 --adapt-steps 0 --rollouts 5 --workers 1 --out runs/a1_ppo_dr
    .venv/bin/python benchmarks/walk_speed.py --scenario a1_walk --train-steps 1000000
        --out benchmarks/results/a1_walk_ppo_dr.md

(each command on one line), or ``--checkpoint runs/x/latest.safetensors``.
"""

import argparse
from datetime import datetime, timezone
import json
import os
from pathlib import Path
import platform
import sys

from maml_robot import baselines
from maml_robot.baseline_store import EnvSource
from maml_robot.commands.baseline import default_cache
from maml_robot.dynamics import sample_tasks
from maml_robot.policy import PolicyConfig
import numpy as np


def episode(env, act, task, seed):
    """Return (return, steps, forward distance m, fell) of one episode."""
    obs, _ = env.reset(seed=seed, options={'task': task})
    start = env.unwrapped.world.true_state().base_position.copy()
    total, steps = 0.0, 0
    while True:
        obs, reward, terminated, truncated, _ = env.step(act(obs))
        total, steps = total + reward, steps + 1
        if terminated or truncated:
            end = env.unwrapped.world.true_state().base_position
            return total, steps, float(end[0] - start[0]), bool(terminated)


def ppo_policy(args, source, sc):
    """Return (label, act, budget text) of the cached PPO-DR's mean action."""
    from stable_baselines3 import PPO  # lazy: SB3 only for this policy
    cache = baselines.BaselineCache(args.cache, source, PolicyConfig(sc.obs_dim, sc.act_dim))
    path = cache.folder('ppo-dr', args.train_steps, args.seed) / 'model.zip'
    if not path.is_file():
        raise SystemExit(f'no cached PPO-DR at {path}: run `maml-robot baseline --kind ppo-dr '
                         f'--scenario {args.scenario} --train-steps {args.train_steps}` first')
    model = PPO.load(path, device='cpu')
    trained = json.loads(path.with_suffix('.zip.json').read_text())
    return ('PPO-DR (mean action)', lambda obs: model.predict(obs, deterministic=True)[0],
            f'PPO-DR trained {trained["env_steps"]} env steps in {trained["wall_s"]:.0f} s '
            f'(seed {args.seed})')


def meta_policy(ckpt, path):
    """Return (label, act, budget text) of a loaded checkpoint's mean action (no update)."""
    import torch  # lazy: torch only for a checkpoint

    from maml_robot.policy import GaussianPolicy
    policy = GaussianPolicy(ckpt.policy_config, ckpt.obs_mean, ckpt.obs_std)

    def act(obs):
        with torch.no_grad():
            obs_t = torch.as_tensor(obs, dtype=torch.float32)[None]
            return policy.mean_action(ckpt.params, obs_t)[0].numpy()
    return 'meta-policy (mean action, before adapting)', act, f'checkpoint {path}'


def main(argv=None):
    """Roll out the policy and a zero action; print (and write) the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--scenario', default='a1_walk')
    parser.add_argument('--train-steps', type=int, default=1_000_000)
    parser.add_argument('--seed', type=int, default=0, help='training seed of the PPO-DR')
    parser.add_argument('--checkpoint', default=None,
                        help='a meta-policy checkpoint (path or shipped name) instead of the '
                             'cached PPO-DR (its scenario is used)')
    parser.add_argument('--split', default='test')
    parser.add_argument('--task-seed', type=int, default=None,
                        help='seed of the tasks drawn for --split train (validation)')
    parser.add_argument('--tasks', type=int, default=8)
    parser.add_argument('--cache', type=Path, default=default_cache())
    parser.add_argument('--out', type=Path, default=None, help='markdown file to write')
    args = parser.parse_args(argv)
    ckpt = None
    if args.checkpoint is not None:
        from maml_robot.checkpoint import load_checkpoint  # lazy: torch only for a checkpoint
        from maml_robot.online.loading import resolve_checkpoint
        from maml_robot.scenario import checkpoint_reference
        ckpt = load_checkpoint(resolve_checkpoint(args.checkpoint))
        snapshot = ckpt.scenario
        source = EnvSource.from_scenario(checkpoint_reference(snapshot['name'], snapshot))
    else:
        source = EnvSource.from_scenario(args.scenario)
    env = source.make_env()
    sc = env.unwrapped.scenario
    label, act, budget = (meta_policy(ckpt, args.checkpoint) if ckpt is not None
                          else ppo_policy(args, source, sc))
    policies = {label: act, 'standing still (zero action)': lambda obs: np.zeros(sc.act_dim)}
    rows = []
    for i, task in enumerate(sample_tasks(sc, args.tasks, args.split, seed=args.task_seed)):
        rows.append([episode(env, act, task, seed=i) for act in policies.values()])
    env.close()
    lines = [f'# {sc.name}: {label} vs standing still, {args.split} tasks 0-{args.tasks - 1}',
             '',
             f'{datetime.now(timezone.utc):%Y-%m-%d}, {platform.machine()}, '
             f'{os.cpu_count()} cores; {budget}; command: `python benchmarks/walk_speed.py '
             f'{" ".join(argv if argv is not None else sys.argv[1:])}`', '',
             '| policy | mean return | mean speed (m/s) | falls | episode steps |',
             '|---|---|---|---|---|']
    period = sc.control_period
    for k, name in enumerate(policies):
        ret, steps, dist, fell = (np.array([r[k][j] for r in rows]) for j in range(4))
        lines.append(f'| {name} | {ret.mean():.1f} | {np.mean(dist / (steps * period)):.2f} | '
                     f'{int(fell.sum())}/{len(rows)} | {steps.mean():.0f} |')
    text = '\n'.join(lines) + '\n'
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == '__main__':
    main()

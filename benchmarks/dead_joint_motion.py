"""
What the oracle does with a dead joint that the adapted meta-policy does not.

For each given task of a split (tasks with a dead joint), this loads or trains the oracle (SB3
PPO on that task alone; the same cache and seeds as ``maml-robot baseline --kind oracle``),
adapts the meta-policy on the task (``maml_robot.evaluate.adapt_tasks``, K updates of R
rollouts), and then rolls out the oracle, the meta-policy before adapting and the adapted one
for ``--episodes`` episodes each with the same start states and goals. It reports the return and
what the DEAD (unpowered) joint does: how far it moves from where it started, and how fast it
still moves in the last fifth of the episode. A dead joint moves only when the powered joints
swing it through the arm's inertia; with low damping it swings under any policy, so what tells
a policy that controls the passive link from one that lets it flop is whether the link comes
to rest where the goal needs it (late speed, late reward). Run:

    .venv/bin/python benchmarks/dead_joint_motion.py --checkpoint reacher --tasks 7 10 28 \
        [--split ood] [--train-steps 1000000] [--adapt 3x16] [--episodes 40] [--out FILE.md]
"""

import argparse
import datetime
import os
from pathlib import Path
import sys
import time

import numpy as np


def rollouts(env, policy, params, episodes, seed, joint):
    """
    Roll ``policy`` out for ``episodes`` episodes; return a dict of per-episode arrays.

    ``return``; ``late_reward``: mean reward over the last fifth of the episode (how well it
    holds the goal once there); for ``joint``: ``peak`` (largest |q - q0|), ``end`` (|q_end -
    q0|) and ``late_speed`` (mean |dq/dt| over the last fifth: a held link vs a swinging one).
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    out = {k: [] for k in ('return', 'late_reward', 'peak', 'end', 'late_speed')}
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed * 100_003 + ep)
        q0 = env.unwrapped.world.true_state().joint_position[joint]
        rewards, moved, speed, done = [], [], [], False
        while not done:
            action, _ = policy.sample(params, torch.as_tensor(obs, dtype=torch.float32)[None],
                                      generator=gen)
            obs, reward, terminated, truncated, _ = env.step(action[0].numpy())
            state = env.unwrapped.world.true_state()
            rewards.append(reward)
            moved.append(state.joint_position[joint] - q0)
            speed.append(abs(state.joint_velocity[joint]))
            done = terminated or truncated
        late = max(1, len(rewards) // 5)
        out['return'].append(sum(rewards))
        out['late_reward'].append(np.mean(rewards[-late:]))
        out['peak'].append(np.max(np.abs(moved)))
        out['end'].append(abs(moved[-1]))
        out['late_speed'].append(np.mean(speed[-late:]))
    return {k: np.array(v) for k, v in out.items()}


def main(argv=None):
    """Measure oracle vs meta-policy on each task; print and optionally write a table."""
    import torch

    from maml_robot import baselines, sb3_bridge
    from maml_robot.checkpoint import load_checkpoint
    from maml_robot.commands.baseline import default_cache
    from maml_robot.envs import MetaRobotEnv
    from maml_robot.evaluate import adapt_tasks, AdaptConfig
    from maml_robot.online import resolve_checkpoint
    from maml_robot.policy import unstack_params
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from validate_ood_protocol import parse_setting     # the benchmark next door

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--checkpoint', default='reacher',
                        help='meta-policy checkpoint or shipped model name (default: reacher)')
    parser.add_argument('--tasks', type=int, nargs='+', required=True,
                        help='indices in the split of tasks with a dead joint')
    parser.add_argument('--split', default='ood', choices=('test', 'ood'))
    parser.add_argument('--train-steps', type=int, default=1_000_000,
                        help='oracle PPO env steps per task (the ood oracle used 1000000)')
    parser.add_argument('--adapt', type=parse_setting, default=(3, 16, 1),
                        help='meta-policy adaptation KxR before its rollouts (default 3x16)')
    parser.add_argument('--episodes', type=int, default=40)
    parser.add_argument('--seed', type=int, default=0, help='start states, goals, action noise')
    parser.add_argument('--workers', type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument('--cache', type=Path, default=default_cache())
    parser.add_argument('--out', help='also write the table to this markdown file')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    ckpt = load_checkpoint(resolve_checkpoint(args.checkpoint))
    source = baselines.EnvSource.from_scenario(ckpt.scenario_name)
    all_tasks, _ = source.split_tasks(args.split)
    bad = [i for i in args.tasks if not 0 <= i < len(all_tasks) or not all_tasks[i].dead_joints]
    if bad:
        raise SystemExit(f'--tasks {bad}: not tasks of split {args.split!r} with a dead joint '
                         f'(it has {len(all_tasks)} tasks; `maml-robot eval --task-filter '
                         'dead-joint` lists which have one)')
    tasks = [all_tasks[i] for i in args.tasks]
    cfg = baselines.BaselineConfig(kind='oracle', split=args.split, train_steps=args.train_steps,
                                   workers=args.workers)
    cache = baselines.BaselineCache(args.cache, source, ckpt.policy_config)
    k, r, s = args.adapt
    with source.sampler(args.workers, device='cpu') as sampler:
        adapted = adapt_tasks(ckpt.make_policy(), ckpt.params, tasks, sampler,
                              AdaptConfig(k, r, ckpt.inner_step_size(),
                                          ckpt.inner_config().advantage_kwargs(),
                                          steps_per_batch=s),
                              seed=args.seed, keep_params=True)['params']
    rows = [f'| {args.split} task | dynamics | policy | return | reward, last fifth | dead joint: '
            'largest move (rad) | moved at the end (rad) | speed, last fifth (rad/s) |',
            '|---|---|---|---|---|---|---|---|']
    env = MetaRobotEnv(ckpt.scenario_name)
    meta = ckpt.make_policy()
    for task_id, task, params_k in zip(args.tasks, tasks, unstack_params(adapted)):
        start = time.perf_counter()
        model = baselines.oracle_model(cfg, source, cache, task, task_id, 0)
        oracle, oracle_params = sb3_bridge.sb3_to_params(model, ckpt.policy_config)
        env.unwrapped.set_task(task)
        joint = env.unwrapped.scenario.joint_names.index(task.dead_joints[0])
        for name, policy, params in (
                (f'oracle (PPO, {args.train_steps} steps)', oracle, oracle_params),
                ('meta-policy, before adapting', meta, ckpt.params),
                (f'meta-policy after {k} x {r}', meta, params_k)):
            m = {key: v.mean() for key, v in
                 rollouts(env, policy, params, args.episodes, args.seed, joint).items()}
            rows.append(f'| {task_id} | {task.describe(env.unwrapped.scenario)} | {name} | '
                        f"{m['return']:.2f} | {m['late_reward']:.3f} | {m['peak']:.2f} | "
                        f"{m['end']:.2f} | {m['late_speed']:.2f} |")
            print(rows[-1], flush=True)
        print(f'  task {task_id}: {time.perf_counter() - start:.0f} s', flush=True)
    env.close()
    note = (f'{ckpt.scenario_name}, split {args.split}, checkpoint {args.checkpoint}, '
            f'{args.episodes} episodes per row with seed {args.seed}; '
            f'{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.')
    print(note)
    if args.out:
        with open(args.out, 'w') as f:
            f.write('# Dead-joint motion: oracle vs meta-policy\n\n' + note + '\n\n'
                    + '\n'.join(rows) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())

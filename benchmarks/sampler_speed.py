"""
Env steps per second of maml_robot's Sampler vs the raw env and vs stable-baselines3.

Three numbers from one run, same scenario and worker count:

1. raw: one env stepped in this process with random actions (no policy), cycling through the
   same train tasks -- the ceiling of one core; ``raw x workers`` is the ideal for the pool
   (target: sampler >= 80 % of it); also the same raw loop in ``workers`` processes at once,
   which shows what the cores deliver while other jobs share the machine;
2. sampler: ``Sampler.sample`` with ``tasks x rollouts`` envs spread over the workers, counting
   valid env steps over wall time, variants alternating call by call: central inference (one
   batched, vmapped policy call per step in the main process; serial, pipelined, per-task
   params) and worker inference (whole episodes inside the workers, numpy policy);
3. sb3: SB3's own rollout collection (``PPO.collect_rollouts``) over ``SubprocVecEnv`` with one
   env per worker process and an MLP policy of the same size (target: sampler >= 4x).

Usage::

    .venv/bin/python benchmarks/sampler_speed.py --scenario reacher --workers 2
        --out benchmarks/results/sampler_speed.md   (one line)
"""

import argparse
import multiprocessing as mp
import platform
import time

from maml_robot.policy import expand_params, GaussianPolicy, PolicyConfig, stack_params
from maml_robot.sampler import Sampler, ScenarioEnvFactory
from maml_robot.scenario import load_scenario
import numpy as np
import torch


def raw_rate(scenario: str, steps: int, tasks: list, seed: int = 0) -> float:
    """Return env steps/s of one env in this process, random actions, cycling ``tasks``."""
    env = ScenarioEnvFactory(scenario)()
    rng = np.random.default_rng(seed)
    episode = 0
    env.unwrapped.set_task(tasks[0])
    env.reset(seed=seed)
    actions = rng.uniform(-1, 1, (steps,) + env.action_space.shape).astype(np.float32)
    start = time.perf_counter()
    for t in range(steps):
        _, _, terminated, truncated, _ = env.step(actions[t])
        if terminated or truncated:
            episode += 1
            env.unwrapped.set_task(tasks[episode % len(tasks)])
            env.reset(seed=seed + episode)
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def parallel_raw_rate(scenario: str, steps: int, tasks: list, workers: int) -> float:
    """Return the summed rate of ``workers`` processes each stepping one raw env at once."""
    ctx = mp.get_context('forkserver')
    with ctx.Pool(workers) as pool:
        rates = pool.starmap(raw_rate, [(scenario, steps, tasks, seed) for seed in range(workers)])
    return float(sum(rates))


def train_tasks(scenario: str, n: int) -> list:
    """Return ``n`` train-split tasks (seed 0)."""
    env = ScenarioEnvFactory(scenario)()
    tasks = env.unwrapped.sample_tasks(n, 'train', seed=0)
    env.close()
    return tasks


def sampler_rate(scenario: str, workers: int, task_list: list, rollouts: int, repeats: int,
                 hidden: tuple, device: str, max_envs: int) -> tuple:
    """
    Return ({variant: steps/s}, envs) of Sampler.sample, best of ``repeats`` per variant.

    Variants: serial and pipelined with the meta-parameters shared by all tasks (pre-update
    sampling), and serial with different params per task (post-update sampling, vmapped). They
    alternate call by call so all see the same machine load.
    """
    sc = load_scenario(scenario)
    policy = GaussianPolicy(PolicyConfig(sc.obs_dim, sc.act_dim, hidden_sizes=hidden))
    tasks = len(task_list)
    params = policy.init_params(0)
    shared = expand_params(params, tasks)
    # adapted params differ per task: the vmapped call of post-update sampling
    per_task = stack_params([{k: v + 0.01 * b for k, v in params.items()} for b in range(tasks)])
    variants = {  # name -> (inference, pipeline, params_b)
        'serial': ('central', False, shared),
        'pipelined': ('central', True, shared),
        'per-task': ('central', False, per_task),
        'workers': ('workers', False, shared),
        'workers-per-task': ('workers', False, per_task),
    }
    best = dict.fromkeys(variants, 0.0)
    with Sampler(sc, num_workers=workers, seed=0, device=device, max_envs=max_envs) as sampler:
        sampler.sample(policy, shared, task_list, rollouts)  # starts the pool
        for _ in range(repeats):
            for name, (inference, pipeline, params_b) in variants.items():
                sampler.inference, sampler.pipeline = inference, pipeline
                start = time.perf_counter()
                eps = sampler.sample(policy, params_b, task_list, rollouts)
                rate = eps.mask.sum().item() / (time.perf_counter() - start)
                best[name] = max(best[name], rate)
    return best, min(tasks, max(1, max_envs // rollouts)) * rollouts


def sb3_rate(scenario: str, workers: int, steps_per_env: int, repeats: int,
             hidden: tuple) -> float:
    """Return env steps/s of SB3 PPO's collect_rollouts over SubprocVecEnv (1 env/process)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import SubprocVecEnv
    vec = SubprocVecEnv([ScenarioEnvFactory(scenario)] * workers, start_method='forkserver')
    try:
        model = PPO('MlpPolicy', vec, n_steps=steps_per_env, batch_size=steps_per_env,
                    policy_kwargs={'net_arch': list(hidden)}, device='cpu', seed=0, verbose=0)
        _, callback = model._setup_learn(steps_per_env * workers * (repeats + 1), None)
        callback.on_training_start(locals(), globals())
        model.collect_rollouts(vec, callback, model.rollout_buffer, steps_per_env)  # warm-up
        best = 0.0
        for _ in range(repeats):
            start = time.perf_counter()
            model.collect_rollouts(vec, callback, model.rollout_buffer, steps_per_env)
            best = max(best, steps_per_env * workers / (time.perf_counter() - start))
        return best
    finally:
        vec.close()


def main(argv=None) -> None:
    """Run the three measurements and write the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--scenario', default='reacher')
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--tasks', type=int, default=20)
    parser.add_argument('--rollouts', type=int, default=10)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--raw-steps', type=int, default=5000)
    parser.add_argument('--sb3-steps', type=int, default=1000, help='steps per SB3 env')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--max-envs', type=int, default=64, help='Sampler max_envs')
    parser.add_argument('--note', default='', help='free text recorded with the result')
    parser.add_argument('--out', default=None, help='write the markdown result here')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    hidden = (64, 64)
    tasks = train_tasks(args.scenario, args.tasks)
    raw = raw_rate(args.scenario, args.raw_steps, tasks)
    parallel = parallel_raw_rate(args.scenario, args.raw_steps, tasks, args.workers)
    ours, envs = sampler_rate(args.scenario, args.workers, tasks, args.rollouts,
                              args.repeats, hidden, args.device, args.max_envs)
    sb3 = sb3_rate(args.scenario, args.workers, args.sb3_steps, args.repeats, hidden)
    ideal = raw * args.workers
    fastest = ours['serial']
    lines = [
        '# Sampler speed',
        '',
        f'Command: `.venv/bin/python benchmarks/sampler_speed.py --scenario {args.scenario} '
        f'--workers {args.workers} --tasks {args.tasks} --rollouts {args.rollouts} '
        f'--repeats {args.repeats} --device {args.device} --max-envs {args.max_envs}`',
        '',
        f'Machine: {platform.processor() or platform.machine()}, '
        f'{torch.get_num_threads()} torch thread(s) in the main process, '
        f'torch {torch.__version__}. {args.note}'.rstrip(),
        '',
        '| what | env steps/s | ratio |',
        '| --- | ---: | ---: |',
        f'| raw env, 1 process, random actions, same tasks | {raw:,.0f} | |',
        f'| ideal = raw x {args.workers} workers | {ideal:,.0f} | |',
        f'| raw env in {args.workers} processes at once (what the cores deliver now) | '
        f'{parallel:,.0f} | {parallel / ideal:.0%} of ideal |',
        f'| maml_robot Sampler, serial (default; {args.tasks} tasks x {args.rollouts} rollouts '
        f'in waves of {envs} envs on {args.workers} workers, policy 64x64) | '
        f'{ours["serial"]:,.0f} | {ours["serial"] / ideal:.0%} of ideal (target >= 80%); '
        f'{ours["serial"] / parallel:.0%} of the parallel raw rate |',
        f'| same, different params per task (vmapped call, as after adaptation) | '
        f'{ours["per-task"]:,.0f} | {ours["per-task"] / ideal:.0%} of ideal; '
        f'{ours["per-task"] / parallel:.0%} of parallel raw |',
        f'| same, pipeline=True | {ours["pipelined"]:,.0f} | '
        f'{ours["pipelined"] / ideal:.0%} of ideal; {ours["pipelined"] / parallel:.0%} of '
        'parallel raw |',
        '| Sampler, inference=workers (each worker runs its share of all episodes in batches on '
        'its envs, numpy policy) | '
        f'{ours["workers"]:,.0f} | {ours["workers"] / ideal:.0%} of ideal (target >= 80%); '
        f'{ours["workers"] / parallel:.0%} of parallel raw |',
        f'| same, different params per task | {ours["workers-per-task"]:,.0f} | '
        f'{ours["workers-per-task"] / ideal:.0%} of ideal; '
        f'{ours["workers-per-task"] / parallel:.0%} of parallel raw |',
        f'| SB3 PPO.collect_rollouts, SubprocVecEnv {args.workers} procs (policy 64x64) | '
        f'{sb3:,.0f} | sampler (default) = {fastest / sb3:.1f}x SB3, inference=workers = '
        f'{ours["workers"] / sb3:.1f}x (target >= 4x) |',
        '',
    ]
    text = '\n'.join(lines)
    print(text)
    if args.out:
        with open(args.out, 'w', encoding='utf-8') as f:
            f.write(text)


if __name__ == '__main__':
    main()

"""
Env steps per second of the Sampler on the Ray backend vs the local process pool.

On one machine, for each scenario and worker count: ``Sampler.sample`` with the default local
backend (worker processes, shared memory) and with the Ray backend (one Ray actor per worker,
a private Ray instance on this machine), the same seed, tasks and rollouts, alternating call
by call so both see the same machine load; best of ``--repeats`` calls each. Also checks that
both backends return identical episodes. Targets: Ray >= 85 % of local at the same worker
count; throughput grows with workers up to the cores available. ``--inference workers`` runs
whole episodes inside the workers (one Ray call per actor and wave instead of one per step).

Usage::

    .venv/bin/python benchmarks/ray_speed.py --scenarios reacher,cheetah --workers 1,2
        --out benchmarks/results/ray_speed.md   (one line)
"""

import argparse
import os
import platform
import time

from maml_robot.policy import expand_params, GaussianPolicy, PolicyConfig
from maml_robot.sampler import Sampler, ScenarioEnvFactory
from maml_robot.sampling.ray_backend import import_ray, RayBackend
from maml_robot.scenario import load_scenario
import torch


def _equal(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.as_tuple(), b.as_tuple()))


def compare(scenario: str, workers: int, tasks: int, rollouts: int, repeats: int,
            max_envs: int, inference: str = 'central') -> dict:
    """Return {'local': steps/s, 'ray': steps/s, 'equal': bool} for one worker count."""
    sc = load_scenario(scenario)
    env = ScenarioEnvFactory(scenario)()
    task_list = env.unwrapped.sample_tasks(tasks, 'train', seed=0)
    env.close()
    policy = GaussianPolicy(PolicyConfig(sc.obs_dim, sc.act_dim, hidden_sizes=(64, 64)))
    params_b = expand_params(policy.init_params(0), tasks)
    samplers = {
        'local': Sampler(sc, num_workers=workers, seed=0, max_envs=max_envs,
                         inference=inference),
        'ray': Sampler(sc, seed=0, max_envs=max_envs, backend=RayBackend(workers),
                       inference=inference),
    }
    best = dict.fromkeys(samplers, 0.0)
    try:
        first = {name: s.sample(policy, params_b, task_list, rollouts)  # starts the pools
                 for name, s in samplers.items()}
        for _ in range(repeats):
            for name, sampler in samplers.items():
                start = time.perf_counter()
                eps = sampler.sample(policy, params_b, task_list, rollouts)
                best[name] = max(best[name], eps.mask.sum().item() /
                                 (time.perf_counter() - start))
    finally:
        for sampler in samplers.values():
            sampler.close()
    return {**best, 'equal': _equal(first['local'], first['ray'])}


def main(argv=None) -> None:
    """Measure every scenario and worker count; print and write the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--scenarios', default='reacher,cheetah')
    parser.add_argument('--workers', default='1,2', help='comma-separated worker counts')
    parser.add_argument('--tasks', type=int, default=8)
    parser.add_argument('--rollouts', type=int, default=8)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--max-envs', type=int, default=64, help='Sampler max_envs')
    parser.add_argument('--inference', default='central', choices=('central', 'workers'),
                        help='Sampler inference mode (both backends)')
    parser.add_argument('--note', default='', help='free text recorded with the result')
    parser.add_argument('--out', default=None, help='write the markdown result here')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    counts = [int(w) for w in args.workers.split(',')]
    # loopback only, and no token file needed for a private instance
    os.environ.setdefault('RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER', '0')
    ray = import_ray()
    ray.init(num_cpus=max(counts), include_dashboard=False, log_to_driver=False,
             _node_ip_address='127.0.0.1')
    rows = []
    try:
        for scenario in args.scenarios.split(','):
            base = None
            for w in counts:
                r = compare(scenario, w, args.tasks, args.rollouts, args.repeats,
                            args.max_envs, args.inference)
                base = base or r
                rows.append(
                    f'| {scenario} | {w} | {r["local"]:,.0f} | {r["ray"]:,.0f} | '
                    f'{r["ray"] / r["local"]:.0%} | {r["local"] / base["local"]:.2f}x | '
                    f'{r["ray"] / base["ray"]:.2f}x | {"yes" if r["equal"] else "NO"} |')
                print(rows[-1], flush=True)
    finally:
        ray.shutdown()
    lines = [
        '# Ray backend speed',
        '',
        f'Command: `.venv/bin/python benchmarks/ray_speed.py --scenarios {args.scenarios} '
        f'--workers {args.workers} --tasks {args.tasks} --rollouts {args.rollouts} '
        f'--repeats {args.repeats} --max-envs {args.max_envs} --inference {args.inference}`',
        '',
        f'Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, '
        f'ray {ray.__version__}; policy 64x64 on cpu; {args.tasks} tasks x {args.rollouts} '
        f'rollouts per call, best of {args.repeats} calls, local and Ray alternating. '
        f'{args.note}'.rstrip(),
        '',
        '| scenario | workers | local steps/s | Ray steps/s | Ray / local (target >= 85%) | '
        'local scaling | Ray scaling | same episodes |',
        '| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
        *rows,
        '',
    ]
    text = '\n'.join(lines)
    print(text)
    if args.out:
        with open(args.out, 'w', encoding='utf-8') as f:
            f.write(text)


if __name__ == '__main__':
    main()

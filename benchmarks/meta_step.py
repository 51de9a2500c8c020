"""
Benchmark: one meta-gradient over many tasks, batched (vmap) vs a per-task Python loop.

Both compute the same thing (checked): advantages with the linear baseline, one differentiable
LVC inner step per task, the post-update policy-gradient loss, and backward to the
meta-parameters. The loop is the classic structure: per task, copy the parameters, adapt,
backprop. It also times the loop at one step per task (its per-task overhead alone) and
prints the ceiling that removing all of that overhead would give at each size. Usage::

    python benchmarks/meta_step.py                       # CPU, 40 tasks, reacher-sized policy
    python benchmarks/meta_step.py --device cuda --tasks 40
"""

import argparse
from pathlib import Path
import statistics
import sys
import time

from maml_robot.meta.inner import adapt_batched, compute_advantages, inner_step
from maml_robot.meta.losses import pg_surrogate
from maml_robot.policy import GaussianPolicy, PolicyConfig
import torch

INNER_LR = 0.1


def batched_meta_grad(policy, params, pre, post):
    """Return the meta-gradient with one vmapped inner step over all tasks."""
    pre_adv = compute_advantages(policy, pre)
    post_adv = compute_advantages(policy, post)
    adapted = adapt_batched(policy, params, pre, INNER_LR, surrogate='lvc', advantages=pre_adv)
    logp = policy.batched_log_prob(adapted, post.observations, post.actions)  # (B, N, T)
    loss = -pg_surrogate(logp, post_adv, post.mask).mean()
    return torch.autograd.grad(loss, list(params.values()))


def loop_meta_grad(policy, params, pre, post):
    """Return the meta-gradient with a Python loop over tasks (copy, adapt, backprop)."""
    num_tasks = pre.rewards.shape[0]
    grads = [torch.zeros_like(p) for p in params.values()]
    for b in range(num_tasks):
        task_pre, task_post = pre.task(b), post.task(b)
        copy = {k: v.clone() for k, v in params.items()}  # the per-task model copy
        adapted = inner_step(policy, copy, task_pre, INNER_LR, surrogate='lvc')
        post_adv = compute_advantages(policy, task_post)
        logp = policy.log_prob(adapted, task_post.observations, task_post.actions)
        loss = -pg_surrogate(logp, post_adv, task_post.mask) / num_tasks
        for g, new in zip(grads, torch.autograd.grad(loss, list(params.values()))):
            g += new
    return grads


def timed(fn, repeats, device):
    times = []
    for _ in range(repeats + 1):  # the first call is a warm-up
        if device.type == 'cuda':
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == 'cuda':
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times[1:]


def run_case(args, rollouts, horizon):
    """Time one problem size; returns ``(batched times, loop times, gradient difference)``."""
    device = torch.device(args.device)
    policy = GaussianPolicy(PolicyConfig(args.obs_dim, args.act_dim, tuple(args.hidden)))
    params = policy.init_params(0)
    tests = str(Path(__file__).resolve().parent.parent / 'tests')
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from helpers import synthetic_episodes      # the tests' toy Episodes (tests/helpers.py)
    pre = synthetic_episodes(policy, params, args.tasks, rollouts, horizon, seed=1)
    post = synthetic_episodes(policy, params, args.tasks, rollouts, horizon, seed=2)
    policy.to(device)
    pre, post = pre.to(device), post.to(device)
    params = {k: v.to(device).requires_grad_(True) for k, v in params.items()}
    g_batched = batched_meta_grad(policy, params, pre, post)
    g_loop = loop_meta_grad(policy, params, pre, post)
    err = max(float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))
              for a, b in zip(g_batched, g_loop))
    t_batched = timed(lambda: batched_meta_grad(policy, params, pre, post), args.repeats, device)
    t_loop = timed(lambda: loop_meta_grad(policy, params, pre, post), args.repeats, device)
    return t_batched, t_loop, err


SWEEP = ((20, 50), (5, 50), (2, 50), (20, 5), (1, 10))
"""(rollouts, horizon) per task for ``--sweep``; the first is the reacher-sized default."""

OVERHEAD_CASE = (1, 1)
"""One rollout of one step per task: the loop's time is then its per-task overhead alone."""


def main(argv=None):
    """Run the benchmark and print markdown table rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--tasks', type=int, default=40)
    parser.add_argument('--rollouts', type=int, default=20)
    parser.add_argument('--horizon', type=int, default=50)
    parser.add_argument('--obs-dim', type=int, default=10)
    parser.add_argument('--act-dim', type=int, default=2)
    parser.add_argument('--hidden', type=int, nargs='+', default=[64, 64])
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, default=1, help='torch CPU threads')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--sweep', action='store_true',
                        help=f'also time other per-task sizes (rollouts, horizon): {SWEEP[1:]}')
    args = parser.parse_args(argv)
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda given but torch.cuda.is_available() is False')
    torch.set_num_threads(args.threads)
    print(f'device={args.device} threads={args.threads} tasks={args.tasks} obs={args.obs_dim} '
          f'act={args.act_dim} hidden={args.hidden} repeats={args.repeats} '
          f'torch={torch.__version__}')
    # the loop's fixed cost per task (Python, autograd bookkeeping, small kernels): what
    # batching can remove. At a given size the batched call cannot beat the loop by more than
    # loop / (loop - overhead) unless its arithmetic is also cheaper than the loop's.
    _, t_over, _ = run_case(args, *OVERHEAD_CASE)
    overhead = statistics.median(t_over)
    print(f'per-task loop at {OVERHEAD_CASE[0]} x {OVERHEAD_CASE[1]} per task (its overhead): '
          f'{overhead:.4f} s for {args.tasks} tasks')
    print('| device | tasks x rollouts x steps | batched (vmap) s | per-task loop s | speed-up '
          '| loop - overhead s | ceiling | grad diff |')
    print('|---|---|---|---|---|---|---|---|')
    cases = [(args.rollouts, args.horizon)] + (list(SWEEP[1:]) if args.sweep else [])
    worst = 0.0
    for rollouts, horizon in cases:
        t_b, t_l, err = run_case(args, rollouts, horizon)
        worst = max(worst, err)
        med_b, med_l = statistics.median(t_b), statistics.median(t_l)
        work = max(med_l - overhead, 1e-9)
        print(f'| {args.device} | {args.tasks} x {rollouts} x {horizon} | {med_b:.4f} '
              f'(min {min(t_b):.4f}) | {med_l:.4f} (min {min(t_l):.4f}) | '
              f'{med_l / med_b:.1f}x | {work:.4f} | {med_l / work:.1f}x | {err:.1e} |',
              flush=True)
    if worst > 1e-3:
        raise SystemExit(f'the batched and looped meta-gradients differ ({worst:.2e})')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

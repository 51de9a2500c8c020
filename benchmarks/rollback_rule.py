"""
Rollback rule of the online adapter: how often it rolls back an update, on real reacher returns.

Collects episodes of the shipped reacher meta-policy (exploration on, as the adapter acts) on
the demo's held-out task, then resamples them to judge updates that changed nothing (the share
rolled back is the false-rollback rate) and updates that made the return worse by a given
fraction of |mean| (the share rolled back is the power), for the adapter's rule
(``maml_robot.online.adapter._worse``) at several windows and ``rollback_z``. Run:

    .venv/bin/python benchmarks/rollback_rule.py [--episodes 1000] [--trials 20000] [--out F.md]
"""

import argparse
import datetime

import numpy as np


def reacher_returns(episodes, seed=0):
    """Return ``episodes`` returns of the shipped reacher policy on the demo task."""
    import torch

    from maml_robot.checkpoint import load_checkpoint
    from maml_robot.commands.demo import pick_task
    from maml_robot.envs import MetaRobotEnv
    from maml_robot.online import resolve_checkpoint

    torch.set_num_threads(1)
    ckpt = load_checkpoint(resolve_checkpoint('reacher'))
    policy, params = ckpt.make_policy(), ckpt.params
    env = MetaRobotEnv('reacher')
    env.set_task(pick_task(env.scenario)[1])
    rng, returns = np.random.default_rng(seed), []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed * 100003 + episode)
        total, done = 0.0, False
        while not done:
            with torch.no_grad():
                dist = policy.dist(params, torch.as_tensor(obs))
                raw = dist.loc.numpy() + dist.scale.numpy() * rng.standard_normal(2)
            obs, reward, terminated, truncated, _ = env.step(
                np.clip(raw, -1, 1).astype(np.float32))
            total, done = total + reward, terminated or truncated
        returns.append(total)
    env.close()
    return np.array(returns)


def rollback_rate(returns, n_ref, n_window, z, drop, trials, rng, margin=0.1):
    """Share of judged updates rolled back when the true return changes by -drop x |mean|."""
    from maml_robot.online.adapter import _sample_stats, _worse

    shift = drop * abs(returns.mean())
    hits = 0
    for _ in range(trials):
        ref = rng.choice(returns, n_ref)
        window = rng.choice(returns, n_window) - shift
        hits += _worse(_sample_stats(window), _sample_stats(ref), margin, z)
    return hits / trials


def main(argv=None):
    """Print (and optionally write) the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--episodes', type=int, default=1000)
    parser.add_argument('--trials', type=int, default=20000)
    parser.add_argument('--out', help='also write the markdown here')
    args = parser.parse_args(argv)
    returns = reacher_returns(args.episodes)
    rng = np.random.default_rng(1)
    skew = float(((returns - returns.mean()) ** 3).mean() / returns.std() ** 3)
    lines = [f'Episode returns: {len(returns)} episodes, mean {returns.mean():.2f}, standard '
             f'deviation {returns.std():.2f}, skewness {skew:.2f}; rollback_margin 0.1; '
             f'{args.trials} resampled judgements per cell.', '',
             '| window (reference = 20 episodes) | rollback_z | rolled back, no change | '
             'rolled back, 10 % worse | rolled back, 25 % worse |', '|---|---|---|---|---|']
    for window in (2, 20):
        for z in (0.0, 1.0, 1.64):
            rates = [rollback_rate(returns, 20, window, z, d, args.trials, rng)
                     for d in (0.0, 0.1, 0.25)]
            lines.append(f'| {window} | {z:g} | ' + ' | '.join(f'{r:.1%}' for r in rates) + ' |')
    text = '\n'.join(lines)
    print(text)
    if args.out:
        stamp = f'{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC'
        with open(args.out, 'w') as f:
            f.write('# Rollback rule of the online adapter\n\n' + __doc__.split('Run:')[0].strip()
                    + f'\n\n{text}\n\nDate: {stamp}. Command: `.venv/bin/python '
                    f'benchmarks/rollback_rule.py --episodes {args.episodes} --trials '
                    f'{args.trials} --out {args.out}`\n')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

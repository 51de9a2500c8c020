"""``maml-robot showcase``: what the dynamics splits change, and what that does to a controller."""

import textwrap
import time

from maml_robot.checkpoint import load_checkpoint
from maml_robot.dynamics import Task
from maml_robot.envs import MetaRobotEnv
from maml_robot.envs.controllers import controller_kind, make_controller, rollout
from maml_robot.scenario import checkpoint_reference
import numpy as np

ROBOTS = ('reacher', 'cheetah', 'quadruped')


def add_arguments(parser):
    """Add the showcase options."""
    parser.add_argument('--scenario', nargs='+', default=list(ROBOTS), metavar='NAME|PATH',
                        help='scenarios to show (default: all shipped robots)')
    parser.add_argument('--splits', nargs='+', default=['train', 'test', 'ood'],
                        help='dynamics splits to sample (default: train test ood)')
    parser.add_argument('--tasks', type=int, default=3, help='tasks per split (default 3)')
    parser.add_argument('--seed', type=int, default=0, help='seed of train tasks and episodes')
    parser.add_argument('--summary', action='store_true',
                        help='instead of the table, roll out EVERY task of the fixed splits '
                             '(test, ood) and print mean returns and the nominal-vs-oracle gap')
    parser.add_argument('--policy', metavar='CHECKPOINT', default=None,
                        help='use a trained policy (mean action) as the fixed controller instead '
                             'of the reference one, e.g. the shipped cheetah model: '
                             '--scenario cheetah --policy cheetah')


def _row(env, task, seed, checkpoint=None):
    """Return the (nominal, oracle, zero-action) returns of one episode under ``task``."""
    sc = env.scenario
    zero_action = np.zeros(sc.act_dim)
    return (rollout(env, make_controller(sc, checkpoint=checkpoint), task, seed),
            rollout(env, make_controller(sc, task, checkpoint=checkpoint), task, seed),
            rollout(env, lambda obs: zero_action, task, seed))


def show(name, splits, tasks, seed, out=print):
    """Print the table of one scenario; return {split: [(nominal, oracle, zero), ...]}."""
    env = MetaRobotEnv(name)
    sc = env.scenario
    try:
        kind = controller_kind(sc)
        out(f'\n== {sc.name}: {len(sc.joint_names)} joints, {sc.episode_steps} steps at '
            f'{sc.control_rate_hz:g} Hz; controller: {kind} ==')
        out(f'{"split":<6} {"#":>2} {"nominal":>9} {"oracle":>9} {"zero":>9}  what changed')
        results = {}
        rows = [('-', 0, Task())] + [
            (split, i, task) for split in splits
            for i, task in enumerate(env.sample_tasks(tasks, split, seed=seed))]
        for split, i, task in rows:
            ret = _row(env, task, seed + i)
            results.setdefault(split, []).append(ret)
            text = textwrap.wrap(task.describe(sc), 64) or ['nominal']
            out(f'{split:<6} {i:>2} {ret[0]:>9.2f} {ret[1]:>9.2f} {ret[2]:>9.2f}  {text[0]}')
            for line in text[1:]:
                out(f'{"":41}{line}')
        return results
    finally:
        env.close()


def summarize(name, seed, out=print, checkpoint=None, label=None):
    """Print the nominal/oracle/zero returns over all fixed-split tasks; return the numbers."""
    env = MetaRobotEnv(name)
    sc = env.scenario
    numbers = {}
    try:
        using = f'the policy of {label}' if checkpoint is not None else controller_kind(sc)
        using = f' (controller: {using})'
        out(f'\n== {sc.name} =={using}')
        out(f'{"split":<6} {"tasks":>5} {"nominal":>15} {"oracle":>15} {"zero":>9} '
            f'{"nominal score":>13} {"oracle >> nominal":>17}')
        for split, spec in sc.splits.items():
            if not spec.fixed:
                continue
            tasks = env.sample_tasks(None, split)
            ret = np.array([_row(env, task, seed + i, checkpoint)
                            for i, task in enumerate(tasks)])
            nominal, oracle, zero = ret.T
            # Normalized like the evaluation protocol: (R - R_zero) / (R_oracle - R_zero).
            score = (nominal.mean() - zero.mean()) / (oracle.mean() - zero.mean())
            margin = 0.1 * abs(oracle.mean() - zero.mean())
            gap = np.mean(oracle > nominal + margin)
            out(f'{split:<6} {len(tasks):>5} {nominal.mean():>8.2f} ±{nominal.std():>5.2f} '
                f'{oracle.mean():>8.2f} ±{oracle.std():>5.2f} {zero.mean():>9.2f} '
                f'{score:>13.2f} {gap:>16.0%}')
            numbers[split] = {'nominal': nominal, 'oracle': oracle, 'zero': zero}
        nominal_task = _row(env, Task(), seed, checkpoint)
        out(f'nominal robot: nominal {nominal_task[0]:.2f}, zero {nominal_task[2]:.2f}')
    finally:
        env.close()
    return numbers


def run(args):
    """Show every requested scenario; return 0."""
    if args.tasks < 1:
        raise ValueError(f'--tasks must be >= 1, got {args.tasks}')
    start = time.perf_counter()
    checkpoint = None
    if args.policy is not None:
        # lazy: the online adapter package (0.03 s) only to resolve a shipped model name
        from maml_robot.online import resolve_checkpoint
        if not args.summary or len(args.scenario) != 1:
            raise ValueError('--policy needs --summary and one --scenario (the one the '
                             'checkpoint was trained on)')
        checkpoint = load_checkpoint(resolve_checkpoint(args.policy))
        checkpoint_reference(checkpoint.scenario_name, checkpoint.scenario, args.scenario[0])
    print('Returns of one episode per task: "nominal" = a controller tuned for the nominal '
          'dynamics,\n"oracle" = the same controller told the true task (undoes reversed/weak '
          'motors and\ncalibration offsets; the pose controller of position mode can only '
          'correct its targets\nfor the offsets), "zero" = a zero action (no torque; the '
          'default pose in position mode).\nSplit "-" is the nominal robot.')
    for name in args.scenario:
        if args.summary:
            summarize(name, args.seed, checkpoint=checkpoint, label=args.policy)
        else:
            show(name, args.splits, args.tasks, args.seed)
    if args.summary:
        print('\n"nominal score" = (nominal - zero) / (oracle - zero) of the mean returns; '
              '"oracle >> nominal" = share of tasks where the oracle beats the nominal '
              'controller by more than 10% of (oracle - zero).')
    print(f'\n({time.perf_counter() - start:.1f} s)')
    return 0

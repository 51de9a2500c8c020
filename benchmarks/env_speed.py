"""
Environment speed: env steps per second vs the raw PyBullet rate for the same robot.

For each robot: (1) ``MetaRobotEnv`` with random actions (resets included); (2) raw PyBullet:
``stepSimulation`` x frame_skip + one ``getJointStates`` read per control step, no env, the
robot passive; (3) the same raw loop plus the random torque command each physics step (Bullet
clears joint torques after every step, so torque control needs it): the same physics as the
env. Raw loops restart from the initial pose every episode_steps, like the env. (4) The time
spent inside ``World.step`` during the env run itself: the physics of exactly the same
trajectory, the fairest raw number on a busy machine. Run:

    .venv/bin/python benchmarks/env_speed.py [--steps 3000] [--repeats 3] [--out FILE.md]
"""

import argparse
import datetime
import os
import platform
import time

from maml_robot.envs import MetaRobotEnv
from maml_robot.scenario import load_scenario
from maml_robot.sim.client import quiet_stdout
import numpy as np
import pybullet

ROBOTS = ('reacher', 'cheetah', 'quadruped')


def env_rate(name, steps):
    """
    Return (env steps/s, physics steps/s of the same trajectory) under random actions.

    The second number times only ``World.step`` (torques, stepSimulation x frame_skip and the
    joint/base state read) inside the same run: the raw physics cost of exactly these episodes.
    """
    env = MetaRobotEnv(name)
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, env.scenario.act_dim))
    actions = actions.astype(np.float32)
    world_step = env.world.step
    physics = [0.0]

    def timed_step():
        t0 = time.perf_counter()
        world_step()
        physics[0] += time.perf_counter() - t0

    env.world.step = timed_step
    env.reset(seed=0)
    start = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
    total = time.perf_counter() - start
    env.close()
    return steps / total, steps / physics[0]


def raw_rate(name, steps, with_torque):
    """Return control steps per second of bare PyBullet for the robot and frame skip."""
    sc = load_scenario(name)
    cid = pybullet.connect(pybullet.DIRECT)
    pybullet.setTimeStep(sc.sim_timestep, physicsClientId=cid)
    pybullet.setGravity(0, 0, sc.gravity, physicsClientId=cid)
    if sc.ground:
        shape = pybullet.createCollisionShape(pybullet.GEOM_PLANE, physicsClientId=cid)
        pybullet.createMultiBody(0, shape, physicsClientId=cid)
    with quiet_stdout():
        body = pybullet.loadURDF(str(sc.urdf_path), basePosition=sc.base_position,
                                 useFixedBase=sc.base_fixed,
                                 flags=pybullet.URDF_USE_INERTIA_FROM_FILE, physicsClientId=cid)
    names = {pybullet.getJointInfo(body, i, physicsClientId=cid)[1].decode(): i
             for i in range(pybullet.getNumJoints(body, physicsClientId=cid))}
    joints = [names[n] for n in sc.joint_names]
    pybullet.setJointMotorControlArray(body, joints, pybullet.VELOCITY_CONTROL,
                                       forces=[0.0] * len(joints), physicsClientId=cid)
    torques = (np.random.default_rng(0).uniform(-1, 1, (steps, len(joints)))
               * sc.effort_limits).tolist()
    saved = pybullet.saveState(physicsClientId=cid)
    start = time.perf_counter()
    for k in range(steps):
        if k % sc.episode_steps == 0:  # episodes as long as the env's, from the same pose
            pybullet.restoreState(saved, physicsClientId=cid)
        for _ in range(sc.frame_skip):
            if with_torque:
                pybullet.setJointMotorControlArray(body, joints, pybullet.TORQUE_CONTROL,
                                                   forces=torques[k], physicsClientId=cid)
            pybullet.stepSimulation(physicsClientId=cid)
        pybullet.getJointStates(body, joints, physicsClientId=cid)
    rate = steps / (time.perf_counter() - start)
    pybullet.disconnect(physicsClientId=cid)
    return rate


def main(argv=None):
    """Measure every robot and print (or write) a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument('--steps', type=int, default=3000)
    parser.add_argument('--repeats', type=int, default=3, help='best of N runs is reported')
    parser.add_argument('--out', help='also write the table to this markdown file')
    parser.add_argument('--note', default='', help='a line added to the markdown (e.g. load)')
    args = parser.parse_args(argv)
    rows = []
    for name in ROBOTS:
        sc = load_scenario(name)
        runs = [env_rate(name, args.steps) + (raw_rate(name, args.steps, False),
                                              raw_rate(name, args.steps, True))
                for _ in range(args.repeats)]  # interleaved, best of each
        env, inner, raw, raw_t = (max(r[i] for r in runs) for i in range(4))
        rows.append(f'| {name} | {sc.frame_skip} x {sc.sim_timestep:g} s | {env:,.0f} | '
                    f'{raw:,.0f} | {raw_t:,.0f} | {inner:,.0f} | {env / raw:.0%} | '
                    f'{env / raw_t:.0%} | {env / inner:.0%} |')
    header = ['| robot | frame skip x timestep | env steps/s | raw steps/s | '
              'raw + torque steps/s | same-trajectory physics steps/s | env / raw | '
              'env / (raw + torque) | env / same-trajectory physics |',
              '|---|---|---|---|---|---|---|---|---|']
    table = '\n'.join(header + rows)
    cpu = platform.processor() or platform.machine()
    meta = (f'Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; '
            f'machine: {platform.node()} ({cpu}, {os.cpu_count()} CPUs, Python '
            f'{platform.python_version()}, pybullet {pybullet.getAPIVersion()}); '
            f'{args.steps} steps, best of {args.repeats}.')
    command = (f'.venv/bin/python benchmarks/env_speed.py --steps {args.steps} '
               f'--repeats {args.repeats}' + (f' --out {args.out}' if args.out else ''))
    print(table)
    print(meta)
    if args.out:
        with open(args.out, 'w') as f:
            f.write('# Environment speed\n\n' + (__doc__.split('Run:')[0].strip()) + '\n\n'
                    + table + '\n\n' + meta + '\n\nCommand: `' + command.strip() + '`\n'
                    + (f'\nNote: {args.note}\n' if args.note else ''))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

"""Drive a simulated robot with an OnlineAdapter in process: the online loop without ROS."""

import numpy as np


def run_in_process(adapter, world, episodes, rng):
    """
    Run ``episodes`` episodes of ``world`` under ``adapter``; return its episode returns.

    Each episode resets the world from ``rng`` (a numpy Generator: goals, start poses), hands the
    adapter the measured state every control step (an ``episode_start`` on the first) and the
    reward of the step before, computed from true states with the checkpoint's reward. After the
    last step the adapter sees the final state and reward, so every episode is complete. What
    the sim node and the adapter node do over ROS 2, without the transport: use it to rehearse
    adapter settings, and as the reference the ROS path is compared with
    (``benchmarks/online_vs_offline.py``).

    :param adapter: a :class:`maml_robot.online.OnlineAdapter` (``synchronous`` config for a
        deterministic run).
    :param world: a :class:`maml_robot.sim.world.World` of the adapter's scenario.
    :returns: list of ``(return, adaptations)`` per finished episode
        (``adapter.episode_returns``).
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f'rng must be a numpy Generator, got {type(rng).__name__}')
    for _ in range(int(episodes)):
        world.reset(rng)
        start, reward = True, None
        for _ in range(adapter.episode_steps):
            before = world.true_state()
            cmd = adapter.act(world.measured_state(), 0.0, episode_start=start,
                              reward=None if start else reward)
            world.apply_action(cmd.action)
            world.step()
            after = world.true_state()
            reward = adapter.spec.reward(before, cmd.action, after)
            start = False
            if adapter.spec.terminated is not None and adapter.spec.terminated(after):
                break     # a fall ends the episode, as in training and in the sim node
        adapter.act(world.measured_state(), 0.0, reward=reward)
    return list(adapter.episode_returns)

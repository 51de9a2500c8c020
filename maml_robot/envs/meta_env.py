"""MetaRobotEnv: a gymnasium env over a scenario whose dynamics (the Task) can be switched."""


import gymnasium as gym
from gymnasium import spaces
from maml_robot.dynamics import sample_tasks, Task
from maml_robot.observation import build_observation, compute_reward, is_terminated
from maml_robot.scenario import load_scenario
from maml_robot.sim.world import World
import numpy as np


class MetaRobotEnv(gym.Env):
    """
    A robot of a scenario under a Task; actions are normalized efforts in [-1, 1] per joint.

    Observations come from the MEASURED state (calibration offset, noise), rewards from the
    TRUE state. Episodes are truncated after ``scenario.episode_steps`` control steps.

    :param scenario: a Scenario, a shipped scenario name or a path to a scenario YAML.
    :param task: the dynamics to start with; None for nominal.
    :param render_mode: None, 'rgb_array' (render() returns an image) or 'human' (the
        PyBullet GUI; needs a display).
    """

    metadata = {'render_modes': ['rgb_array']}

    def __init__(self, scenario='reacher', task=None, render_mode=None):
        if render_mode not in (None, 'rgb_array', 'human'):
            raise ValueError('render_mode must be None, "rgb_array" or "human", '
                             f'got {render_mode!r}')
        self.scenario = sc = load_scenario(scenario)
        self.render_mode = render_mode
        self.metadata = {'render_modes': ['rgb_array'], 'render_fps': sc.control_rate_hz}
        self.world = World(sc, task, gui=render_mode == 'human')
        self.action_space = spaces.Box(-1.0, 1.0, (sc.act_dim,), np.float32)
        self.observation_space = spaces.Box(-np.inf, np.inf, (sc.obs_dim,), np.float32)
        self._steps = 0
        self._needs_reset = True

    # -- task API (on env.unwrapped) ---------------------------------------------------------
    def sample_tasks(self, n, split='train', seed=None):
        """Return ``n`` tasks of ``split``; train draws use ``seed`` or else the env's rng."""
        spec = self.scenario.splits.get(split)
        if seed is None and spec is not None and not spec.fixed:
            seed = self.np_random
        return sample_tasks(self.scenario, n, split, seed)

    def set_task(self, task):
        """Switch the dynamics to ``task`` (a Task or its dict); takes effect at once."""
        if isinstance(task, dict):
            task = Task.from_dict(task)
        if task is not None and not isinstance(task, Task):
            raise TypeError(f'set_task expects a Task, a dict or None, got {type(task).__name__}')
        self.world.set_task(task)

    def get_task(self):
        """Return the Task in effect."""
        return self.world.get_task()

    # -- gymnasium API -------------------------------------------------------------------------
    def reset(self, *, seed=None, options=None):
        """Start an episode; ``options={'task': Task}`` switches the task first."""
        super().reset(seed=seed)
        if options and 'task' in options:
            self.set_task(options['task'])
        self.world.reset(self.np_random)
        self._steps = 0
        self._needs_reset = False
        self._state = self.world.true_state(lists=True)   # the next step's "before"
        state = self.world.measured_state(lists=True)
        return build_observation(self.scenario, state), {'task': self.world.task}

    def step(self, action):
        """Apply ``action`` for one control period; return obs, reward, terminated, truncated."""
        if self._needs_reset:
            raise RuntimeError('call reset() before step() (and after an episode ends)')
        world, sc = self.world, self.scenario
        before = self._state
        action = world.apply_action(action)  # validated and clipped to [-1, 1]
        world.step()
        self._state = after = world.true_state(lists=True)
        reward = compute_reward(sc, before, action, after)
        terminated = is_terminated(sc, after)
        self._steps += 1
        truncated = not terminated and self._steps >= sc.episode_steps
        self._needs_reset = terminated or truncated
        obs = build_observation(sc, world.measured_state(lists=True))
        return obs, reward, terminated, truncated, {}

    def render(self):
        """Return an RGB image (H, W, 3) uint8 in 'rgb_array' mode; the GUI draws itself."""
        if self.render_mode == 'rgb_array':
            return self.world.render_rgb()
        return None

    def close(self):
        """Release the PyBullet client."""
        self.world.close()

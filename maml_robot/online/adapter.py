"""OnlineAdapter: act safely, collect live episodes, adapt off the control path."""

import time
from typing import Callable, Optional

from maml_robot.actuation import Actuation
from maml_robot.episodes import Transition
from maml_robot.online.adaptation import AdaptiveParameters
from maml_robot.online.config import (AdapterSpec, Command, MODE_BAD_ACTION, MODE_BAD_OBS,
                                      MODE_ESTOP, MODE_FADE, MODE_POLICY, MODE_RAMP,
                                      MODE_STALE, OnlineConfig)
from maml_robot.online.diagnostics import RepeatGate
from maml_robot.policy import gaussian_log_prob
import numpy as np
import torch


class OnlineAdapter(AdaptiveParameters):
    """
    Act with a meta-policy and adapt it online with an adaptation operator from live episodes.

    The operator (``config.adaptation``, else the checkpoint's) is training's inner step
    (``pg``, on rollouts of the Gaussian policy) or a derivative-free one (``hill_climb``,
    ``es``: the policy acts with its mean action, and each round tries candidate parameters,
    :class:`~maml_robot.online.rounds.CandidateRound`).
    The control thread calls :meth:`act` once per control period; it never waits for an update.
    Updates run on their own thread (or inline when ``config.synchronous``) and are swapped in as
    one reference assignment under a lock (the adaptation path:
    :class:`~maml_robot.online.adaptation.AdaptiveParameters`). Safety, for every operator:
    watchdog, clamps, non-finite rejection, ramp/fade-in, latched e-stop, bounded change,
    accept-if-better with rollback, divergence guard, persistence via ``persist_fn``.
    """

    def __init__(self, policy, meta_params, spec: AdapterSpec, config: OnlineConfig, *,
                 seed: int = 0, initial_params=None, inner_step_fn=None,
                 persist_fn: Optional[Callable] = None, log: Callable = print,
                 reference: Optional[tuple] = None):
        """
        Build an adapter.

        :param policy: a GaussianPolicy (functional; ``mean_action(params, obs)``).
        :param meta_params: the meta-learned parameters (dict of tensors), the fallback.
        :param spec: the deployment contract from the checkpoint.
        :param config: online settings.
        :param seed: seed of the exploration noise (and of a derivative-free operator's
            candidates).
        :param initial_params: parameters to resume from (persisted adaptation), else meta.
        :param inner_step_fn: pg's inner update; default maml_robot.meta.inner.inner_step.
        :param persist_fn: persist_fn(params, info) saves accepted parameters atomically.
        :param log: where warnings go (the node passes its logger).
        :param reference: (mean, variance of the mean) of the meta-policy's returns, persisted
            with ``initial_params``: the divergence guard's reference after a restart.
        """
        super().__init__(policy, meta_params, spec, config, seed=seed,
                         initial_params=initial_params, inner_step_fn=inner_step_fn,
                         persist_fn=persist_fn, log=log, reference=reference)
        self._actuation = spec.actuation or Actuation.torque(spec.action_scale)
        self._terminated = spec.terminated
        self._last_command = None    # the last command sent: a 'hold: last' pose holds it
        self._joint_position = None  # the last measured joint positions: 'hold: gravity'
        self._min_steps = int(config.min_episode_steps or max(1, self.episode_steps // 2))
        self.estop = False
        self._warn_gate = RepeatGate(1.0)   # each kind of warning at once, then once a second
        self._reset_motion()

    # ----------------------------------------------------------------------- control path
    def act(self, state, state_age: float, reward: Optional[float] = None,
            episode_start: bool = False, joint_position=None) -> Command:
        """
        Return the command for this control step.

        :param state: the latest RobotState (measured), or None if none arrived yet.
        :param state_age: seconds since that state arrived.
        :param reward: reward of the previous step (reward_source topic), else computed here.
        :param episode_start: the robot was reset since the last step (a reset signal): the
            running episode ends; an internal reward across the reset is not computed.
        :param joint_position: (J,) the latest measured joint positions when ``state`` is None
            because another source (goal, odometry) is missing: the hold needs only these.
        """
        self.note_joint_position(state.joint_position if state is not None else joint_position)
        if self.estop:
            return self._hold(MODE_ESTOP)
        if state is None or not state_age <= self.config.state_timeout:
            self.frozen = True
            return self._hold(MODE_STALE)
        obs = np.asarray(self.spec.observe(state), dtype=np.float32)
        if not np.all(np.isfinite(obs)):
            self.stats['rejected_observations'] += 1
            return self._hold(MODE_BAD_OBS)
        self.frozen = False
        if episode_start and reward is None:
            self._pending = None
        fallen = self._terminated is not None and self._terminated(state)
        self._close_transition(state, reward, fallen)
        if episode_start:
            self.end_episode()
        with self._lock:
            params, version = self._acting_locked()
        mode, weight = self._phase()
        learn = self.adapt_enabled
        raw, log_prob = self._sample(params, obs, learn and self._operator.stochastic)
        action = np.clip(raw, -1.0, 1.0)
        if self.config.rate_limit > 0:
            step = self.config.rate_limit
            action = np.clip(action, self._last_action - step, self._last_action + step)
        command = self._actuation.command(action)
        if weight < 1.0:   # ramp and fade: from the safe hold toward the policy's command
            start = self._ramp_start
            if self._actuation.hold == 'gravity':    # it follows the arm: at its pose now
                start = self.hold_command()
            command = start + weight * (command - start)
        action = weight * action
        if not np.all(np.isfinite(action)) or not np.all(np.isfinite(command)):
            self._log(f'policy produced a non-finite action {action}; holding')
            return self._hold(MODE_BAD_ACTION)
        self._tick += 1
        self._last_action = action
        # no transition starts from a terminal state (a fallen robot): training has none, and
        # a robot lying there until someone picks it up would fill the batch with them
        record = mode == MODE_POLICY and learn and not fallen
        self._pending = (obs, raw, log_prob, state, action, version) if record else None
        self._prev_state = state
        self._last_command = command
        return Command(effort=command, action=action, mode=mode)

    def note_joint_position(self, position):
        """Remember measured joint positions (J,) for the hold; None or non-finite: ignored."""
        if position is None:
            return
        position = np.asarray(position, dtype=np.float64)
        if position.shape == (len(self.spec.joint_names),) and np.all(np.isfinite(position)):
            self._joint_position = position

    @property
    def may_command(self) -> bool:
        """
        Say whether to publish: not under a gravity hold before any joint position.

        Its hold would be zero effort, which drops an arm under gravity; publishing nothing
        leaves the robot to the drives' own hold (in the sim node, gravity at the true pose).
        """
        return self._actuation.hold != 'gravity' or self._joint_position is not None

    def hold_command(self) -> np.ndarray:
        """
        Return the safe command in checkpoint joint order, per control mode.

        Torque: zero effort, or (``hold: gravity``) the efforts that cancel gravity at the last
        joint positions measured (:meth:`note_joint_position`, :meth:`act`): while the state
        stream is cut those are the last known ones, where the watchdog holds the arm; none yet,
        zero effort. The masses are the URDF's nominal ones (a payload is not known).
        Position: the default pose, or (``hold: last``) the last pose commanded — a legged
        robot stays standing, an arm stays where it is. Velocity: zero velocity (the drive
        brakes; a joint under load creeps unless the drive holds position).
        """
        return self._actuation.hold_command(self._last_command, self._joint_position)

    def _hold(self, mode):
        """Publish the hold command and break the running episode (and the ramp-in)."""
        self._reset_motion()
        hold = self.hold_command()
        self._last_command = hold
        return Command(effort=hold, action=np.zeros(len(hold)), mode=mode)

    def _reset_motion(self):
        self._ramp_start = self.hold_command()   # the ramp-in starts from the safe hold
        self._tick = 0
        self._last_action = np.zeros(len(self.spec.joint_names))
        self._pending = None
        self._prev_state = None
        self._drop_episode()

    def _drop_episode(self):
        self._episode = []           # Transitions of the running episode
        self._episode_tags = set()   # the parameters that acted in it (_acting_locked's tags)

    def _phase(self):
        ramp, fade = self.config.ramp_in_steps, self.config.fade_in_steps
        if self._tick < ramp:
            return MODE_RAMP, 0.0
        if self._tick < ramp + fade:
            return MODE_FADE, (self._tick - ramp + 1) / (fade + 1)
        return MODE_POLICY, 1.0

    def _sample(self, params, obs, explore):
        """Return (action (act_dim,) float64, its log-prob): the mean action unless exploring."""
        with torch.no_grad():
            mean_t = self.policy.mean_action(params, torch.as_tensor(obs))   # (act_dim,)
            mean = mean_t.double().numpy()
            if not explore:
                return mean, 0.0
            std = np.broadcast_to(params['log_std'].exp().double().numpy(), mean.shape)
            raw = mean + std * self._rng.standard_normal(mean.shape)
            log_prob = float(gaussian_log_prob(
                mean_t, params['log_std'], torch.as_tensor(raw, dtype=mean_t.dtype)))
        return raw, log_prob

    def _close_transition(self, state, reward, fallen):
        """Finish the previous step's transition with its reward; end full or fallen episodes."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        obs, raw, log_prob, prev_state, action, tag = pending
        if reward is None:
            reward = self.spec.reward(prev_state, action, state)
        reward = float(reward)
        if not abs(reward) <= self.config.reward_limit:      # NaN, inf or absurd
            self.stats['rejected_rewards'] += 1
            self._warn('reward', f'reward {reward} is not finite or beyond reward_limit '
                       f'{self.config.reward_limit:g}; dropping the running episode')
            self._drop_episode()
            return
        self._episode.append(Transition(obs, raw, log_prob, reward))
        self._episode_tags.add(tag)
        if fallen:
            self.end_episode(terminal=True)     # a fall ends the episode, as in training
        elif len(self._episode) >= self.episode_steps:
            self.end_episode()

    def _warn(self, kind, text):
        """Log a warning of one kind at once, then at most once a second, with the count held."""
        held = self._warn_gate.check(kind, time.monotonic())
        if held is not None:
            self._log(text + (f' ({held} more since the last warning)' if held else ''))

    def end_episode(self, terminal: bool = False):
        """
        End the running episode now.

        A reset signal (``terminal=False``) cuts it: episodes shorter than min_episode_steps are
        not learned from. A terminal state (a fall) ends it as training does: learned from at
        any length.
        """
        self._pending = None
        episode, tags = self._episode, self._episode_tags
        self._drop_episode()
        if not episode or (len(episode) < self._min_steps and not terminal):
            return
        self._file_episode(episode, tags)

    # ------------------------------------------------------------------------- controls
    def set_estop(self, engaged: bool):
        """Engage (latch) or release the e-stop; release starts a new ramp-in."""
        self.estop = bool(engaged)
        self._reset_motion()

    def set_adaptation(self, enabled: bool):
        """Enable or disable online adaptation (acting continues)."""
        with self._lock:
            self.adapt_enabled = bool(enabled)
            self._round = None       # a round's candidates start afresh when re-enabled
        self._pending = None
        self._drop_episode()

    def reset_adaptation(self):
        """Return to the meta-parameters and forget live episodes and probation."""
        super().reset_adaptation()
        self._pending = None
        self._drop_episode()

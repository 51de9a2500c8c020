"""OnlineAdapter: act safely, collect live episodes, adapt off the control path."""

import math
import threading
import time
from typing import Callable, Optional

from maml_robot.actuation import Actuation
from maml_robot.online.config import (AdapterSpec, Command, MODE_BAD_ACTION, MODE_BAD_OBS,
                                      MODE_ESTOP, MODE_FADE, MODE_POLICY, MODE_RAMP,
                                      MODE_STALE, OnlineConfig)
import numpy as np
import torch


def _finite_params(params):
    return all(bool(torch.isfinite(p).all()) for p in params.values())


def _detach(params):
    return {k: v.detach().clone() for k, v in params.items()}


def _sample_stats(returns):
    """Return (mean, variance of the mean) of episode returns (variance 0 for one episode)."""
    n = len(returns)
    var = float(np.var(returns, ddof=1)) / n if n > 1 else 0.0
    return float(np.mean(returns)), var


def _worse(judged, reference, margin, z):
    """
    Return True when ``judged`` (mean, var) is worse than ``reference`` beyond noise.

    The drop must exceed ``margin`` x |reference mean| and ``z`` standard errors of the
    difference of the two means (Welch); with one episode on each side only the margin counts.
    """
    drop = reference[0] - judged[0]
    return (drop > margin * max(abs(reference[0]), 1e-6)
            and drop > z * math.sqrt(judged[1] + reference[1]))


class OnlineAdapter:
    """
    Act with a meta-policy and adapt it online with the same inner step as training.

    The control thread calls :meth:`act` once per control period; it never waits for an update.
    Updates run on their own thread (or inline when ``config.synchronous``) and are swapped in as
    one reference assignment under a lock. Safety: watchdog, clamps, non-finite rejection,
    ramp/fade-in, latched e-stop, accept-if-better with rollback, persistence via ``persist_fn``.
    """

    def __init__(self, policy, meta_params, spec: AdapterSpec, config: OnlineConfig, *,
                 seed: int = 0, initial_params=None, inner_step_fn=None,
                 persist_fn: Optional[Callable] = None, log: Callable = print,
                 reference: Optional[tuple] = None):
        """
        Build an adapter.

        :param policy: a GaussianPolicy (functional; ``dist(params, obs)``).
        :param meta_params: the meta-learned parameters (dict of tensors), the fallback.
        :param spec: the deployment contract from the checkpoint.
        :param config: online settings.
        :param seed: seed of the exploration noise.
        :param initial_params: parameters to resume from (persisted adaptation), else meta.
        :param inner_step_fn: the inner update; default maml_robot.meta.inner.inner_step.
        :param persist_fn: persist_fn(params, info) saves accepted parameters atomically.
        :param log: where warnings go (the node passes its logger).
        :param reference: (mean, variance of the mean) of the meta-policy's returns, persisted
            with ``initial_params``: the divergence guard's reference after a restart.
        """
        if inner_step_fn is None:
            from maml_robot.meta.inner import inner_step as inner_step_fn
        if not _finite_params(meta_params):
            raise ValueError('meta-parameters contain NaN or inf; the checkpoint is unusable')
        self.policy, self.spec, self.config = policy, spec, config
        self._inner_step, self._persist_fn, self._log = inner_step_fn, persist_fn, log
        self._rng = np.random.default_rng(seed)
        self._meta = _detach(meta_params)
        start = self._meta
        if initial_params is not None:
            if set(initial_params) != set(meta_params) or not _finite_params(initial_params):
                raise ValueError('persisted parameters do not match the checkpoint or are not '
                                 'finite; delete the persist file to start from the meta-policy')
            start = _detach(initial_params)
        self._actuation = spec.actuation or Actuation.torque(spec.action_scale)
        self._terminated = spec.terminated
        self._last_command = None    # the last command sent: a 'hold: last' pose holds it
        self.episode_steps = int(config.episode_steps or spec.episode_steps)
        self._min_steps = int(config.min_episode_steps or max(1, self.episode_steps // 2))
        self._lock = threading.Lock()
        self._params, self._version = start, 0
        self._prev = None            # (params, (mean, var) of returns) before the update
        self._meta_sample = (math.nan, 0.0)   # (mean, var) of the meta-policy's first returns
        self._probation = False
        self._batch = []             # finished episodes under the current version
        self._worker = None
        self.adapt_enabled = bool(config.adapt)
        self.estop = False
        self.frozen = False
        self.stats = {'adaptations': 0, 'rollbacks': 0, 'reverts_to_meta': 0,
                      'rejected_updates': 0, 'rejected_observations': 0,
                      'rejected_rewards': 0, 'episodes': 0, 'meta_return': math.nan,
                      'current_return': math.nan, 'last_return': math.nan,
                      'last_update_time': math.nan, 'last_update_seconds': math.nan,
                      'resumed': initial_params is not None}
        self._warned = {}            # warning kind -> (monotonic time logged, repeats since)
        if reference is not None and all(math.isfinite(float(x)) for x in reference):
            self._meta_sample = (float(reference[0]), float(reference[1]))
            self.stats['meta_return'] = self._meta_sample[0]
        self.episode_returns = []    # (return, adaptations) per finished episode, in order
        self.episode_lengths = []    # control steps of each of those episodes
        self._reset_motion()

    # ----------------------------------------------------------------------- control path
    def act(self, state, state_age: float, reward: Optional[float] = None,
            episode_start: bool = False) -> Command:
        """
        Return the command for this control step.

        :param state: the latest RobotState (measured), or None if none arrived yet.
        :param state_age: seconds since that state arrived.
        :param reward: reward of the previous step (reward_source topic), else computed here.
        :param episode_start: the robot was reset since the last step (a reset signal): the
            running episode ends; an internal reward across the reset is not computed.
        """
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
            params, version = self._params, self._version
        mode, weight = self._phase()
        explore = self.adapt_enabled
        raw, log_prob = self._sample(params, obs, explore)
        action = np.clip(raw, -1.0, 1.0)
        if self.config.rate_limit > 0:
            step = self.config.rate_limit
            action = np.clip(action, self._last_action - step, self._last_action + step)
        command = self._actuation.command(action)
        if weight < 1.0:   # ramp and fade: from the safe hold toward the policy's command
            command = self._ramp_start + weight * (command - self._ramp_start)
        action = weight * action
        if not np.all(np.isfinite(action)) or not np.all(np.isfinite(command)):
            self._log(f'policy produced a non-finite action {action}; holding')
            return self._hold(MODE_BAD_ACTION)
        self._tick += 1
        self._last_action = action
        # no transition starts from a terminal state (a fallen robot): training has none, and
        # a robot lying there until someone picks it up would fill the batch with them
        record = mode == MODE_POLICY and explore and not fallen
        self._pending = (obs, raw, log_prob, state, action, version) if record else None
        self._prev_state = state
        self._last_command = command
        return Command(effort=command, action=action, mode=mode)

    def hold_command(self) -> np.ndarray:
        """
        Return the safe command in checkpoint joint order, per control mode.

        Torque: zero effort. Position: the default pose, or (``hold: last``) the last pose
        commanded — a legged robot stays standing, an arm stays where it is.
        """
        return self._actuation.hold_command(self._last_command)

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
        self._episode = []

    def _phase(self):
        ramp, fade = self.config.ramp_in_steps, self.config.fade_in_steps
        if self._tick < ramp:
            return MODE_RAMP, 0.0
        if self._tick < ramp + fade:
            return MODE_FADE, (self._tick - ramp + 1) / (fade + 1)
        return MODE_POLICY, 1.0

    def _sample(self, params, obs, explore):
        with torch.no_grad():
            obs_t = torch.as_tensor(obs)
            dist = self.policy.dist(params, obs_t)
            mean = dist.loc.double().numpy()
            if not explore:
                return mean, 0.0
            std = np.broadcast_to(dist.scale.double().numpy(), mean.shape)
            raw = mean + std * self._rng.standard_normal(mean.shape)
            log_prob = float(dist.log_prob(torch.as_tensor(raw, dtype=dist.loc.dtype)).sum())
        return raw, log_prob

    def _close_transition(self, state, reward, fallen):
        """Finish the previous step's transition with its reward; end full or fallen episodes."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        obs, raw, log_prob, prev_state, action, version = pending
        if reward is None:
            reward = self.spec.reward(prev_state, action, state)
        reward = float(reward)
        if not abs(reward) <= self.config.reward_limit:      # NaN, inf or absurd
            self.stats['rejected_rewards'] += 1
            self._warn('reward', f'reward {reward} is not finite or beyond reward_limit '
                       f'{self.config.reward_limit:g}; dropping the running episode')
            self._episode = []
            return
        self._episode.append((obs, raw, log_prob, reward, version))
        if fallen:
            self.end_episode(terminal=True)     # a fall ends the episode, as in training
        elif len(self._episode) >= self.episode_steps:
            self.end_episode()

    def _warn(self, kind, text, every=1.0):
        """Log a warning of one kind at once, then at most once per ``every`` s of them."""
        now = time.monotonic()
        last, repeats = self._warned.get(kind, (-math.inf, 0))
        if now - last < every:
            self._warned[kind] = (last, repeats + 1)
            return
        self._log(text + (f' ({repeats} more since the last warning)' if repeats else ''))
        self._warned[kind] = (now, 0)

    def end_episode(self, terminal: bool = False):
        """
        End the running episode now.

        A reset signal (``terminal=False``) cuts it: episodes shorter than min_episode_steps are
        not learned from. A terminal state (a fall) ends it as training does: learned from at
        any length.
        """
        self._pending = None
        episode, self._episode = self._episode, []
        if not episode or (len(episode) < self._min_steps and not terminal):
            return
        ret = float(sum(step[3] for step in episode))
        versions = {step[4] for step in episode}
        with self._lock:
            self.stats['episodes'] += 1
            self.stats['last_return'] = ret
            self.episode_returns.append((ret, self.stats['adaptations']))
            self.episode_lengths.append(len(episode))
            if versions != {self._version}:
                return          # parameters changed mid-episode: not evidence for either
            self._batch.append(episode)
            self._judge_locked()
            start = self._ready_locked()
        if start is not None:
            self._start_update(*start)

    # -------------------------------------------------------------------- adaptation path
    def _judge_locked(self):
        """Accept, roll back or revert once the probation window of episodes is complete."""
        returns = [sum(s[3] for s in ep) for ep in self._batch]
        cfg = self.config
        if math.isnan(self.stats['meta_return']) and self.stats['adaptations'] == 0 \
                and not self.stats['resumed'] and len(returns) >= cfg.rollouts_per_step \
                and np.all(np.isfinite(returns)):
            self.stats['meta_return'] = float(np.mean(returns))
            self._meta_sample = _sample_stats(returns)
        if not self._probation or len(returns) < cfg.window:
            if not self._probation and returns:
                self.stats['current_return'] = float(np.mean(returns))
            return
        judged = _sample_stats(returns[:cfg.window])
        window = judged[0]
        prev_params, prev_sample = self._prev
        prev_return = prev_sample[0]
        meta_return = self.stats['meta_return']
        self._probation, self._prev = False, None
        self.stats['current_return'] = window
        if math.isfinite(meta_return) and _worse(judged, self._meta_sample,
                                                 cfg.divergence_margin, cfg.rollback_z):
            self._log(f'adapted return {window:.3f} fell far below the meta-policy '
                      f'{meta_return:.3f}: reverting to the meta-parameters')
            self.stats['reverts_to_meta'] += 1
            self._swap_locked(self._meta)
            self.stats['current_return'] = meta_return
        elif _worse(judged, prev_sample, cfg.rollback_margin, cfg.rollback_z):
            self._log(f'adapted return {window:.3f} is worse than {prev_return:.3f} before the '
                      'update: rolling back')
            self.stats['rollbacks'] += 1
            self._swap_locked(prev_params)
            self.stats['current_return'] = prev_return
        else:
            self._persist_locked()

    def _ready_locked(self):
        n = self.config.rollouts_per_step
        if (not self.adapt_enabled or self._probation or self.frozen or self._worker is not None
                or len(self._batch) < n):
            return None
        episodes = self._batch[-n:]
        sample = _sample_stats([sum(s[3] for s in ep) for ep in episodes])
        self._worker = 'starting'
        return self._params, self._version, episodes, sample

    def _start_update(self, params, version, episodes, sample):
        if self.config.synchronous:
            self._update(params, version, episodes, sample)
            return
        worker = threading.Thread(target=self._update, args=(params, version, episodes, sample),
                                  name='maml_robot_adaptation', daemon=True)
        with self._lock:
            self._worker = worker
        worker.start()

    def _update(self, params, version, episodes, sample):
        """Run the inner step(s) on live episodes; swap the result in if it is sane."""
        try:
            started = time.perf_counter()
            try:
                new = self._compute_update(params, episodes)
            except Exception as err:    # noqa: B902 - any failure discards the update only
                self._log(f'update failed ({type(err).__name__}: {err}); discarded, keeping '
                          'the current parameters')
                with self._lock:
                    self.stats['rejected_updates'] += 1
                new = None
            seconds = time.perf_counter() - started
            with self._lock:
                self.stats['last_update_seconds'] = seconds
                if new is None or version != self._version or self.frozen \
                        or not self.adapt_enabled:
                    return
                self._prev = (self._params, sample)
                self._swap_locked(new)
                self._probation = True
                self.stats['adaptations'] += 1
                self.stats['last_update_time'] = time.time()
        finally:
            with self._lock:
                self._worker = None

    def _compute_update(self, params, episodes):
        kwargs = dict(self.spec.inner_kwargs or {})
        new = {k: v.detach() for k, v in params.items()}
        try:
            batch = self.episodes_tensor(episodes)
            for _ in range(self.config.inner_steps):
                new = {k: v.detach() for k, v in
                       self._inner_step(self.policy, new, batch, self.spec.inner_lr,
                                        **kwargs).items()}
        except (RuntimeError, ValueError) as err:
            self._log(f'inner step failed ({err}); keeping the current parameters')
            self.stats['rejected_updates'] += 1
            return None
        delta = {k: new[k] - params[k] for k in params}
        norm = float(torch.sqrt(sum((d.double() ** 2).sum() for d in delta.values())))
        if not math.isfinite(norm) or not _finite_params(new):
            self._log('update produced non-finite gradients or parameters; rejected')
            self.stats['rejected_updates'] += 1
            return None
        if norm > self.config.max_param_delta:
            shrink = self.config.max_param_delta / norm
            new = {k: params[k] + shrink * delta[k] for k in params}
        return new

    def warm_up(self):
        """
        Run one throw-away update on synthetic episodes; return its seconds.

        The first ``torch.func`` call is ~100x slower than the next ones and holds the GIL; doing
        it at configure time keeps that stall away from the running control loop.
        """
        obs_dim, act_dim = self.policy.config.obs_dim, self.policy.config.act_dim
        steps = max(2, self.episode_steps)
        fake = [[(np.zeros(obs_dim, np.float32), np.zeros(act_dim), 0.0, float(i * t % 3), 0)
                 for t in range(steps)] for i in range(1, 3)]
        started = time.perf_counter()
        self._compute_update(self._meta, fake)
        return time.perf_counter() - started

    def episodes_tensor(self, episodes):
        """Stack live episodes as training's Episodes (N, T, ...), padded with mask 0."""
        from maml_robot.episodes import Episodes
        n, t = len(episodes), max(len(ep) for ep in episodes)
        obs_dim, act_dim = len(episodes[0][0][0]), len(episodes[0][0][1])
        obs = torch.zeros(n, t, obs_dim)          # (N, T, obs_dim)
        act = torch.zeros(n, t, act_dim)          # (N, T, act_dim)
        rew, mask, logp = torch.zeros(n, t), torch.zeros(n, t), torch.zeros(n, t)  # (N, T)
        for i, ep in enumerate(episodes):
            for j, (o, a, lp, r, _) in enumerate(ep):
                obs[i, j] = torch.as_tensor(o)
                act[i, j] = torch.as_tensor(a, dtype=torch.float32)
                rew[i, j], mask[i, j], logp[i, j] = r, 1.0, lp
        return Episodes(observations=obs, actions=act, rewards=rew, mask=mask, log_probs=logp)

    def _swap_locked(self, params):
        self._params = params
        self._version += 1
        self._batch = []

    def _persist_locked(self):
        if self._persist_fn is None:
            return
        info = {'adaptations': self.stats['adaptations'],
                'current_return': self.stats['current_return'],
                'meta_return': self.stats['meta_return'],
                'meta_return_var': self._meta_sample[1]}
        try:
            self._persist_fn(self._params, info)
        except OSError as err:
            self._log(f'could not persist adapted parameters: {err}')

    # ------------------------------------------------------------------------- controls
    @property
    def params(self):
        """Return the parameters acting now (a reference; never mutated)."""
        with self._lock:
            return self._params

    @property
    def meta_params(self):
        """Return the meta-parameters loaded from the checkpoint."""
        return self._meta

    def set_estop(self, engaged: bool):
        """Engage (latch) or release the e-stop; release starts a new ramp-in."""
        self.estop = bool(engaged)
        self._reset_motion()

    def set_adaptation(self, enabled: bool):
        """Enable or disable online adaptation (acting continues)."""
        with self._lock:
            self.adapt_enabled = bool(enabled)
        self._pending, self._episode = None, []

    def reset_adaptation(self):
        """Return to the meta-parameters and forget live episodes and probation."""
        with self._lock:
            self._swap_locked(self._meta)
            self._probation, self._prev = False, None
            self.stats['current_return'] = self.stats['meta_return']
            self._persist_locked()
        self._pending, self._episode = None, []

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait for a running update to finish (tests, shutdown); True when idle."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                worker = self._worker
            if worker is None:
                return True
            if isinstance(worker, threading.Thread):
                worker.join(max(0.0, deadline - time.monotonic()))
            else:
                time.sleep(0.001)
        return False

    def persist(self):
        """Save the current parameters now (clean shutdown) unless they are on probation."""
        with self._lock:
            if not self._probation:
                self._persist_locked()


# ------------------------------------------------------------------ checkpoint <-> adapter

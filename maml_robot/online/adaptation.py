"""
The parameters an OnlineAdapter acts with, and their adaptation from finished live episodes.

:class:`AdaptiveParameters` is the adaptation path of :class:`~maml_robot.online.OnlineAdapter`
(its base class; the adapter adds the control path): it files each finished episode by the
parameters that acted in it, runs the operator's update off the control path, judges the result
on probation (accept, roll back, revert: :mod:`maml_robot.online.guard`) and persists what is
accepted. All state changes happen under ``self._lock``; updates swap the parameter dict as one
reference assignment.
"""

import math
import threading
import time
from typing import Callable, Optional

from maml_robot.episodes import episode_return, Episodes, Transition
from maml_robot.online.config import AdapterSpec, OnlineConfig
from maml_robot.online.guard import (bounded_change, detached, finite_params, REVERT,
                                     ROLLBACK, same_params, sample_stats, verdict)
from maml_robot.online.rounds import adapter_operator, CandidateRound
import numpy as np


class AdaptiveParameters:
    """
    Current, meta- and previous parameters, and the live episodes that adapt them.

    pg learns from ``rollouts_per_step`` episodes of the current parameters; a derivative-free
    operator takes those episodes as its reference and then runs a
    :class:`~maml_robot.online.rounds.CandidateRound`. Either update is bounded
    (``max_param_delta``) and on probation for ``config.window`` episodes.
    """

    def __init__(self, policy, meta_params, spec: AdapterSpec, config: OnlineConfig, *,
                 seed: int = 0, initial_params=None, inner_step_fn=None,
                 persist_fn: Optional[Callable] = None, log: Callable = print,
                 reference: Optional[tuple] = None):
        """Set up the adaptation state (parameters as :class:`OnlineAdapter` documents them)."""
        if not finite_params(meta_params):
            raise ValueError('meta-parameters contain NaN or inf; the checkpoint is unusable')
        self.policy, self.spec, self.config = policy, spec, config
        self._operator = adapter_operator(config, spec, policy, inner_step_fn)
        self._persist_fn, self._log = persist_fn, log
        self._rng = np.random.default_rng(seed)   # exploration noise and candidates
        self._meta = detached(meta_params)
        start = self._meta
        if initial_params is not None:
            if set(initial_params) != set(meta_params) or not finite_params(initial_params):
                raise ValueError('persisted parameters do not match the checkpoint or are not '
                                 'finite; delete the persist file to start from the meta-policy')
            start = detached(initial_params)
        self.episode_steps = int(config.episode_steps or spec.episode_steps)
        self._lock = threading.Lock()
        self._params, self._version = start, 0
        self._prev = None            # (params, (mean, var) of returns) before the update
        self._meta_sample = (math.nan, 0.0)   # (mean, var) of the meta-policy's first returns
        self._probation = False
        self._batch = []             # finished episodes (lists of Transition), current version
        self._round = None           # a derivative-free operator's CandidateRound in progress
        self._worker = None
        self.adapt_enabled = bool(config.adapt)
        self.frozen = False
        self.stats = {'adaptations': 0, 'rollbacks': 0, 'reverts_to_meta': 0,
                      'rejected_updates': 0, 'rejected_observations': 0,
                      'rejected_rewards': 0, 'episodes': 0, 'meta_return': math.nan,
                      'current_return': math.nan, 'last_return': math.nan,
                      'last_update_time': math.nan, 'last_update_seconds': math.nan,
                      'rounds_kept': 0, 'adaptation': self._operator.name,
                      'resumed': initial_params is not None}
        if reference is not None and all(math.isfinite(float(x)) for x in reference):
            self._meta_sample = (float(reference[0]), float(reference[1]))
            self.stats['meta_return'] = self._meta_sample[0]
        self.episode_returns = []    # (return, adaptations) per finished episode, in order
        self.episode_lengths = []    # control steps of each of those episodes

    def _acting_locked(self):
        """Return (parameters acting now, their tag): a round's candidate, else the current."""
        if self._round is not None and self.adapt_enabled:
            index, params = self._round.current()
            return params, (self._version, index)
        return self._params, self._version

    def _file_episode(self, episode, tags):
        """Record a finished live episode (Transitions; ``tags``: who acted) and learn from it."""
        ret = episode_return(episode)
        with self._lock:
            self.stats['episodes'] += 1
            self.stats['last_return'] = ret
            self.episode_returns.append((ret, self.stats['adaptations']))
            self.episode_lengths.append(len(episode))
            start = self._file_locked(episode, tags)
        if start is not None:
            self._start_update(*start)

    def _file_locked(self, episode, tags):
        """File a finished episode by the parameters that acted; return an update to start."""
        if tags == {self._version}:
            self._batch.append(episode)
            self._judge_locked()
            return self._ready_locked()
        tag = next(iter(tags)) if len(tags) == 1 else None
        if self._round is None or not isinstance(tag, tuple):
            return None         # parameters changed mid-episode: not evidence for either
        version, index = tag
        if version != self._version or not self._round.add(index, episode):
            return None
        done, self._round = self._round, None
        self._worker = 'starting'
        return self._params, self._version, done.episodes, done.sample, done.candidates

    def _judge_locked(self):
        """Accept, roll back or revert once the probation window of episodes is complete."""
        returns = [episode_return(ep) for ep in self._batch]
        cfg = self.config
        if math.isnan(self.stats['meta_return']) and self.stats['adaptations'] == 0 \
                and not self.stats['resumed'] and len(returns) >= cfg.rollouts_per_step \
                and np.all(np.isfinite(returns)):
            self.stats['meta_return'] = float(np.mean(returns))
            self._meta_sample = sample_stats(returns)
        if not self._probation or len(returns) < cfg.window:
            if not self._probation and returns:
                self.stats['current_return'] = float(np.mean(returns))
            return
        judged = sample_stats(returns[:cfg.window])
        window = judged[0]
        prev_params, prev_sample = self._prev
        prev_return = prev_sample[0]
        meta_return = self.stats['meta_return']
        self._probation, self._prev = False, None
        self.stats['current_return'] = window
        outcome = verdict(judged, prev_sample, self._meta_sample, cfg)
        if outcome == REVERT:
            self._log(f'adapted return {window:.3f} fell far below the meta-policy '
                      f'{meta_return:.3f}: reverting to the meta-parameters')
            self.stats['reverts_to_meta'] += 1
            self._swap_locked(self._meta)
            self.stats['current_return'] = meta_return
        elif outcome == ROLLBACK:
            self._log(f'adapted return {window:.3f} is worse than {prev_return:.3f} before the '
                      'update: rolling back')
            self.stats['rollbacks'] += 1
            self._swap_locked(prev_params)
            self.stats['current_return'] = prev_return
        else:
            self._persist_locked()

    def _ready_locked(self):
        """
        Return the pg update to start once rollouts_per_step episodes are in, else None.

        A derivative-free operator starts a round of candidates instead (its update starts when
        the round is done); these episodes are the reference either way.
        """
        n = self.config.rollouts_per_step
        if (not self.adapt_enabled or self._probation or self.frozen or self._worker is not None
                or self._round is not None or len(self._batch) < n):
            return None
        episodes = self._batch[-n:]
        sample = sample_stats([episode_return(ep) for ep in episodes])
        if not self._operator.stochastic:
            try:
                self._round = CandidateRound(self._operator, self._params, self._rng,
                                             self.config.max_param_delta, sample)
            except ValueError as err:
                self._log(f'{err}; keeping the current parameters')
                self.stats['rejected_updates'] += 1
            return None
        self._worker = 'starting'
        return self._params, self._version, episodes, sample

    def _start_update(self, params, version, episodes, sample, candidates=None):
        args = (params, version, episodes, sample, candidates)
        if self.config.synchronous:
            self._update(*args)
            return
        worker = threading.Thread(target=self._update, args=args,
                                  name='maml_robot_adaptation', daemon=True)
        with self._lock:
            self._worker = worker
        worker.start()

    def _update(self, params, version, episodes, sample, candidates=None):
        """Run the operator's update on live episodes; swap the result in if it is sane."""
        try:
            started = time.perf_counter()
            try:
                new = self._compute_update(params, episodes, candidates)
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
                if candidates is not None and same_params(new, params):
                    self.stats['rounds_kept'] += 1     # no candidate beat the current ones
                    return
                self._prev = (self._params, sample)
                self._swap_locked(new)
                self._probation = True
                self.stats['adaptations'] += 1
                self.stats['last_update_time'] = time.time()
        finally:
            with self._lock:
                self._worker = None

    def _compute_update(self, params, episodes, candidates=None):
        """
        Return the operator's bounded update of ``params``, or None when it failed.

        :param episodes: pg: the live episodes of ``params``; with ``candidates``: the live
            episodes of each candidate (a list per candidate).
        """
        if candidates is None:
            candidates, episodes = [params], [episodes]
        try:
            batches = [self.episodes_tensor(eps) for eps in episodes]
            new = self._operator.tell(params, candidates, batches)
        except (RuntimeError, ValueError) as err:
            self._log(f'{self._operator.name} update failed ({err}); keeping the current '
                      'parameters')
            self.stats['rejected_updates'] += 1
            return None
        bounded = bounded_change(params, new, self.config.max_param_delta)
        if bounded is None:
            self._log('update produced non-finite gradients or parameters; rejected')
            self.stats['rejected_updates'] += 1
        return bounded

    def warm_up(self):
        """
        Run one throw-away update on synthetic episodes; return its seconds.

        The first ``torch.func`` call is ~100x slower than the next ones and holds the GIL; doing
        it at configure time keeps that stall away from the running control loop.
        """
        obs_dim, act_dim = self.policy.config.obs_dim, self.policy.config.act_dim
        steps = max(2, self.episode_steps)
        fake = [[Transition(np.zeros(obs_dim, np.float32), np.zeros(act_dim), 0.0,
                            float(i * t % 3)) for t in range(steps)] for i in range(1, 3)]
        candidates = self._operator.ask(self._meta, np.random.default_rng(0))
        started = time.perf_counter()
        self._compute_update(self._meta, [fake] * len(candidates), candidates)
        return time.perf_counter() - started

    def episodes_tensor(self, episodes) -> Episodes:
        """
        Return live episodes (lists of Transition) as training's Episodes (N, T, ...).

        ValueError when a value is not finite in float32 (e.g. a reward that overflows it).
        """
        batch = Episodes.from_transitions(episodes)
        batch.check_finite()
        return batch

    def _swap_locked(self, params):
        self._params = params
        self._version += 1
        self._batch = []
        self._round = None

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
        """
        Return the current parameters (a reference; never mutated).

        They act, except while a derivative-free round tries its candidates.
        """
        with self._lock:
            return self._params

    @property
    def meta_params(self):
        """Return the meta-parameters loaded from the checkpoint."""
        return self._meta

    def reset_adaptation(self):
        """Return to the meta-parameters and forget live episodes and probation."""
        with self._lock:
            self._swap_locked(self._meta)
            self._probation, self._prev = False, None
            self.stats['current_return'] = self.stats['meta_return']
            self._persist_locked()

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

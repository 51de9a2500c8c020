"""ROS-free online adapter: act safely, collect live episodes, adapt off the control path."""

from dataclasses import dataclass
import math
import threading
import time
from typing import Callable, Optional

import numpy as np
import torch

# Why an action was (or was not) the policy's: reported with every command.
MODE_POLICY = 'policy'
MODE_RAMP = 'ramp_in'
MODE_FADE = 'fade_in'
MODE_ESTOP = 'estop'
MODE_STALE = 'stale_state'
MODE_BAD_OBS = 'bad_observation'
MODE_BAD_ACTION = 'bad_action'


@dataclass
class OnlineConfig:
    """Settings of the online adapter (the adapter node's parameters mirror these)."""

    adapt: bool = True
    """Adapt online from live rewards; False runs the loaded policy (mean action) unchanged."""
    inner_steps: int = 1
    """inner_step calls per update, all on the same batch of live episodes."""
    rollouts_per_step: int = 20
    """Live episodes collected under the current parameters before each update (the shipped
    policies were meta-trained for one step on 20 rollouts)."""
    episode_steps: int = 0
    """Control steps per episode; 0 takes the checkpoint's episode length."""
    min_episode_steps: int = 0
    """Shorter episodes (cut by a reset signal) are not learned from; 0 = half an episode."""
    state_timeout: float = 0.1
    """Seconds without fresh state before the hold command is sent and adaptation freezes."""
    max_param_delta: float = 1.0
    """Largest L2 norm of one update over all parameters; a larger step is scaled down to it."""
    rate_limit: float = 0.0
    """Largest change of a normalized action per control step; 0 disables the rate limit."""
    ramp_in_steps: int = 10
    """Control steps of hold command after start, e-stop release or a sensor outage."""
    fade_in_steps: int = 25
    """Control steps over which the policy's action is blended in after the ramp-in."""
    accept_window: int = 2
    """Episodes an adapted policy is evaluated on before it is accepted or rolled back."""
    rollback_margin: float = 0.1
    """Roll back when the window return is below the previous one by this fraction of |it|."""
    divergence_margin: float = 0.5
    """Revert to the meta-parameters when the return falls this fraction of |meta| below it."""
    synchronous: bool = False
    """Run updates inline in act() (deterministic tests); False runs them on their own thread."""

    def __post_init__(self):
        """Check every field; the message says which one to change."""
        positive = {'inner_steps': self.inner_steps, 'rollouts_per_step': self.rollouts_per_step,
                    'accept_window': self.accept_window}
        for name, value in positive.items():
            if int(value) != value or value < 1:
                raise ValueError(f'{name} must be an integer >= 1, got {value!r}')
        for name in ('episode_steps', 'min_episode_steps', 'ramp_in_steps', 'fade_in_steps'):
            value = getattr(self, name)
            if int(value) != value or value < 0:
                raise ValueError(f'{name} must be an integer >= 0, got {value!r}')
        for name in ('state_timeout', 'max_param_delta'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f'{name} must be a finite number > 0, got {value!r}')
        for name in ('rate_limit', 'rollback_margin', 'divergence_margin'):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f'{name} must be a finite number >= 0, got {value!r}')


@dataclass(frozen=True)
class AdapterSpec:
    """What the adapter needs from a checkpoint: the deployment contract."""

    joint_names: tuple
    """Controlled joints in checkpoint (scenario) order; commands follow this order."""
    action_scale: np.ndarray
    """(J,) effort limits: effort = normalized action * action_scale, clamped to +-it."""
    episode_steps: int
    """Control steps per training episode."""
    observe: Callable
    """observe(state) -> (obs_dim,) observation, the function training used."""
    reward: Callable
    """reward(state, action, next_state) -> float, the function training used."""
    inner_lr: object = 0.1
    """Inner-loop step size: a float or a dict of per-parameter tensors (Meta-SGD)."""
    inner_kwargs: Optional[dict] = None
    """Extra keyword arguments of inner_step (gamma, gae_lambda, first_order)."""
    control_period: float = 0.0
    """Seconds per control step in training (0 if unknown)."""
    needs: tuple = ()
    """Extra RobotState sources the observation needs: 'goal' and/or 'odom'."""


@dataclass
class Command:
    """One control step's output."""

    effort: np.ndarray      # (J,) efforts to publish, finite and within +-action_scale
    action: np.ndarray      # (J,) normalized action after clamp, rate limit and fade
    mode: str               # MODE_* above


def _finite_params(params):
    return all(bool(torch.isfinite(p).all()) for p in params.values())


def _detach(params):
    return {k: v.detach().clone() for k, v in params.items()}


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
                 persist_fn: Optional[Callable] = None, log: Callable = print):
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
        self._scale = np.asarray(spec.action_scale, dtype=np.float64)
        self.episode_steps = int(config.episode_steps or spec.episode_steps)
        self._min_steps = int(config.min_episode_steps or max(1, self.episode_steps // 2))
        self._lock = threading.Lock()
        self._params, self._version = start, 0
        self._prev = None            # (params, return) before the update on probation
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
        self.episode_returns = []    # (return, adaptations) per finished episode, in order
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
        self._close_transition(state, reward)
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
        action = weight * action
        if not np.all(np.isfinite(action)):
            self._log(f'policy produced a non-finite action {action}; holding')
            return self._hold(MODE_BAD_ACTION)
        self._tick += 1
        self._last_action = action
        record = mode == MODE_POLICY and explore
        self._pending = (obs, raw, log_prob, state, action, version) if record else None
        self._prev_state = state
        effort = np.clip(action * self._scale, -self._scale, self._scale)
        return Command(effort=effort, action=action, mode=mode)

    def hold_command(self) -> np.ndarray:
        """Return the safe command (zero effort in checkpoint joint order)."""
        return np.zeros(len(self.spec.joint_names))

    def _hold(self, mode):
        """Publish the hold command and break the running episode (and the ramp-in)."""
        self._reset_motion()
        zero = self.hold_command()
        return Command(effort=zero, action=zero.copy(), mode=mode)

    def _reset_motion(self):
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

    def _close_transition(self, state, reward):
        """Finish the previous step's transition with its reward; end full episodes."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        obs, raw, log_prob, prev_state, action, version = pending
        if reward is None:
            reward = self.spec.reward(prev_state, action, state)
        reward = float(reward)
        if not math.isfinite(reward):
            self.stats['rejected_rewards'] += 1
            self._log(f'non-finite reward {reward}; dropping the running episode')
            self._episode = []
            return
        self._episode.append((obs, raw, log_prob, reward, version))
        if len(self._episode) >= self.episode_steps:
            self.end_episode()

    def end_episode(self):
        """End the running episode now (a reset signal); short episodes are not learned from."""
        self._pending = None
        episode, self._episode = self._episode, []
        if len(episode) < self._min_steps:
            return
        ret = float(sum(step[3] for step in episode))
        versions = {step[4] for step in episode}
        with self._lock:
            self.stats['episodes'] += 1
            self.stats['last_return'] = ret
            self.episode_returns.append((ret, self.stats['adaptations']))
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
        if math.isnan(self.stats['meta_return']) and self.stats['adaptations'] == 0 \
                and not self.stats['resumed'] and len(returns) >= self.config.rollouts_per_step:
            self.stats['meta_return'] = float(np.mean(returns))
        if not self._probation or len(returns) < self.config.accept_window:
            if not self._probation and returns:
                self.stats['current_return'] = float(np.mean(returns))
            return
        window = float(np.mean(returns[:self.config.accept_window]))
        prev_params, prev_return = self._prev
        meta_return = self.stats['meta_return']
        self._probation, self._prev = False, None
        self.stats['current_return'] = window
        if math.isfinite(meta_return) and window < meta_return - (
                self.config.divergence_margin * max(abs(meta_return), 1e-6)):
            self._log(f'adapted return {window:.3f} fell far below the meta-policy '
                      f'{meta_return:.3f}: reverting to the meta-parameters')
            self.stats['reverts_to_meta'] += 1
            self._swap_locked(self._meta)
            self.stats['current_return'] = meta_return
        elif window < prev_return - self.config.rollback_margin * max(abs(prev_return), 1e-6):
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
        ret = float(np.mean([sum(s[3] for s in ep) for ep in episodes]))
        self._worker = 'starting'
        return self._params, self._version, episodes, ret

    def _start_update(self, params, version, episodes, ret):
        if self.config.synchronous:
            self._update(params, version, episodes, ret)
            return
        worker = threading.Thread(target=self._update, args=(params, version, episodes, ret),
                                  name='maml_robot_adaptation', daemon=True)
        with self._lock:
            self._worker = worker
        worker.start()

    def _update(self, params, version, episodes, ret):
        """Run the inner step(s) on live episodes; swap the result in if it is sane."""
        try:
            started = time.perf_counter()
            new = self._compute_update(params, episodes)
            seconds = time.perf_counter() - started
            with self._lock:
                self.stats['last_update_seconds'] = seconds
                if new is None or version != self._version or self.frozen \
                        or not self.adapt_enabled:
                    return
                self._prev = (self._params, ret)
                self._swap_locked(new)
                self._probation = True
                self.stats['adaptations'] += 1
                self.stats['last_update_time'] = time.time()
        finally:
            with self._lock:
                self._worker = None

    def _compute_update(self, params, episodes):
        batch = self.episodes_tensor(episodes)
        kwargs = dict(self.spec.inner_kwargs or {})
        new = {k: v.detach() for k, v in params.items()}
        try:
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
        from maml_robot.meta.episodes import Episodes
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
                'meta_return': self.stats['meta_return']}
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
GOAL_TERMS = ('goal_position', 'fingertip_to_goal', 'goal_distance')
SHIPPED_MODELS = ('reacher', 'cheetah', 'quadruped')


def resolve_checkpoint(name_or_path: str):
    """Return the file of a shipped model name (maml_robot/models/NAME.safetensors) or a path."""
    from pathlib import Path
    text = str(name_or_path).strip()
    if not text:
        raise ValueError('no checkpoint given: set the checkpoint parameter to a .safetensors '
                         'file written by `maml-robot train`')
    if text in SHIPPED_MODELS:
        return Path(__file__).resolve().parent / 'models' / f'{text}.safetensors'
    return Path(text).expanduser()


def params_fingerprint(params) -> str:
    """Return a short hash of a params dict (identifies the meta-policy a file adapted)."""
    import hashlib
    digest = hashlib.sha256()
    for name in sorted(params):
        digest.update(name.encode())
        digest.update(params[name].detach().to('cpu', torch.float32).contiguous().numpy()
                      .tobytes())
    return digest.hexdigest()[:16]


def scenario_of(ckpt):
    """Return the Scenario a checkpoint was trained on (snapshot, else the shipped name)."""
    from maml_robot.scenario import load_scenario, Scenario
    if 'source' in ckpt.scenario:
        return Scenario.from_dict(ckpt.scenario)
    return load_scenario(ckpt.scenario_name or 'reacher')


def spec_from_checkpoint(ckpt, scenario) -> AdapterSpec:
    """Return the deployment contract of a checkpoint, observing as training did."""
    from maml_robot.observation import build_observation, compute_reward
    if tuple(ckpt.joint_names) != tuple(scenario.joint_names):
        raise ValueError(f'checkpoint joints {list(ckpt.joint_names)} differ from scenario '
                         f'{scenario.name!r} joints {list(scenario.joint_names)}')
    terms = set(scenario.observation) | set(scenario.reward)
    needs = tuple(n for n, used in (('goal', terms & set(GOAL_TERMS)),
                                    ('odom', any(t.startswith('base_') for t in terms)
                                     or 'forward_velocity' in terms)) if used)
    return AdapterSpec(
        joint_names=tuple(ckpt.joint_names),
        action_scale=np.asarray(ckpt.action_scale, dtype=np.float64),
        episode_steps=int(scenario.episode_steps),
        observe=lambda state: build_observation(scenario, state),
        reward=lambda state, action, nxt: compute_reward(scenario, state, action, nxt),
        inner_lr=ckpt.inner_step_size(),
        inner_kwargs=ckpt.inner_config().advantage_kwargs(),
        control_period=float(ckpt.control_period), needs=needs)


def _saver(path, ckpt, fingerprint):
    """Return persist_fn: write adapted params as a checkpoint (atomic, via the checkpoint)."""
    import dataclasses
    from maml_robot.checkpoint import save_checkpoint

    def persist_fn(params, info):
        clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                 for k, v in info.items()}
        training = dict(ckpt.training, adapted_from=fingerprint, **clean)
        save_checkpoint(path, dataclasses.replace(
            ckpt, params={k: v.detach() for k, v in params.items()}, training=training))
    return persist_fn


def load_adapter(checkpoint, config: OnlineConfig, *, persist_path='', seed=0, log=print):
    """
    Load a checkpoint (and resume persisted adapted parameters) into an OnlineAdapter.

    Raises ValueError (CheckpointError) with what to change on a bad or mismatched file.
    """
    from pathlib import Path
    from maml_robot.checkpoint import load_checkpoint
    ckpt = load_checkpoint(resolve_checkpoint(checkpoint))
    scenario = scenario_of(ckpt)
    spec = spec_from_checkpoint(ckpt, scenario)
    fingerprint = params_fingerprint(ckpt.params)
    initial = persist_fn = None
    if persist_path:
        persist_path = Path(persist_path).expanduser()
        if persist_path.exists():
            saved = load_checkpoint(persist_path)
            origin = saved.training.get('adapted_from')
            if origin != fingerprint:
                raise ValueError(f'{persist_path} holds parameters adapted from another '
                                 f'meta-policy ({origin}, this one is {fingerprint}); delete it '
                                 'or set another persist_path')
            initial = saved.params
            log(f'resuming {saved.training.get("adaptations", "?")} adaptations from '
                f'{persist_path}')
        persist_fn = _saver(persist_path, ckpt, fingerprint)
    return OnlineAdapter(ckpt.make_policy(), ckpt.params, spec, config, seed=seed,
                         initial_params=initial, persist_fn=persist_fn, log=log)


def fresh_checkpoint(scenario, seed: int = 0, hidden_sizes=(64, 64)):
    """Return a Checkpoint of a freshly initialized (untrained) policy for ``scenario``."""
    from maml_robot.checkpoint import Checkpoint
    from maml_robot.observation import observation_layout
    from maml_robot.policy import GaussianPolicy, PolicyConfig
    config = PolicyConfig(obs_dim=scenario.obs_dim, act_dim=scenario.act_dim,
                          hidden_sizes=tuple(hidden_sizes))
    policy = GaussianPolicy(config)
    return Checkpoint(policy_config=config, params=policy.init_params(seed),
                      obs_mean=policy.obs_mean, obs_std=policy.obs_std,
                      joint_names=tuple(scenario.joint_names),
                      observation_layout=tuple(observation_layout(scenario)),
                      action_scale=tuple(float(x) for x in scenario.effort_limits),
                      control_period=float(scenario.control_period),
                      scenario=scenario.to_dict(), training={'fresh_init_seed': seed})

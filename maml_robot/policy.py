"""Functional Gaussian MLP policy over a parameter dict, with observation normalization."""

from dataclasses import asdict, dataclass
import math

import torch
from torch.nn import functional as F

ACTIVATIONS = {'tanh': torch.tanh, 'relu': torch.relu, 'elu': F.elu}
LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class PolicyConfig:
    """Shape of the policy network; stored in every checkpoint."""

    obs_dim: int
    """Length of the (raw) observation vector."""
    act_dim: int
    """Number of normalized actions (one per controlled joint)."""
    hidden_sizes: tuple = (64, 64)
    """Width of each hidden layer."""
    activation: str = 'tanh'
    """Hidden activation: one of 'tanh', 'relu', 'elu'."""
    init_log_std: float = 0.0
    """Initial value of the state-independent log standard deviation."""
    obs_clip: float = 10.0
    """Normalized observations are clipped to [-obs_clip, obs_clip]; 0 disables the clip."""

    def __post_init__(self):
        object.__setattr__(self, 'hidden_sizes', tuple(int(h) for h in self.hidden_sizes))
        if int(self.obs_dim) < 1 or int(self.act_dim) < 1:
            raise ValueError(f'obs_dim and act_dim must be >= 1, got {self.obs_dim}, '
                             f'{self.act_dim}')
        if any(h < 1 for h in self.hidden_sizes):
            raise ValueError(f'hidden_sizes must be positive, got {self.hidden_sizes}')
        if self.activation not in ACTIVATIONS:
            raise ValueError(f'activation {self.activation!r} unknown; use one of '
                             f'{sorted(ACTIVATIONS)}')
        if not math.isfinite(self.init_log_std) or not self.obs_clip >= 0:
            raise ValueError('init_log_std must be finite and obs_clip >= 0')

    def to_dict(self):
        """Return a JSON-able dict (``from_dict`` inverts it)."""
        d = asdict(self)
        d['hidden_sizes'] = list(self.hidden_sizes)
        return d

    @classmethod
    def from_dict(cls, d):
        """Rebuild from ``to_dict()``; unknown keys are an error."""
        known = set(cls.__dataclass_fields__)
        extra = set(d) - known
        if extra:
            raise ValueError(f'unknown PolicyConfig keys {sorted(extra)}; known: {sorted(known)}')
        return cls(**d)

    def param_shapes(self):
        """Return ``{name: shape}`` of every trainable parameter, in a fixed order."""
        shapes = {}
        sizes = (self.obs_dim,) + self.hidden_sizes
        for i in range(len(self.hidden_sizes)):
            shapes[f'hidden.{i}.weight'] = (sizes[i + 1], sizes[i])
            shapes[f'hidden.{i}.bias'] = (sizes[i + 1],)
        shapes['mean.weight'] = (self.act_dim, sizes[-1])
        shapes['mean.bias'] = (self.act_dim,)
        shapes['log_std'] = (self.act_dim,)
        return shapes


class GaussianPolicy:
    """
    Diagonal Gaussian policy: tanh MLP mean, state-independent ``log_std``.

    Functional: it holds no trainable state. Every method takes the parameter dict, so the
    inner loop can evaluate adapted parameters and ``torch.func.vmap`` can batch over tasks
    (a params dict whose tensors have a leading ``B`` dim). The observation normalization
    (``obs_mean``, ``obs_std``) lives on the policy: it is a constant during adaptation and is
    saved in checkpoints.
    """

    def __init__(self, config, obs_mean=None, obs_std=None):
        """
        Build the policy.

        :param config: the network shape (:class:`PolicyConfig`).
        :param obs_mean: (obs_dim,) normalization mean; zeros when None.
        :param obs_std: (obs_dim,) normalization std (> 0); ones when None.
        """
        self.config = config
        self.obs_mean = torch.zeros(config.obs_dim)
        self.obs_std = torch.ones(config.obs_dim)
        if obs_mean is not None or obs_std is not None:
            self.set_normalization(
                self.obs_mean if obs_mean is None else obs_mean,
                self.obs_std if obs_std is None else obs_std)
        self._act = ACTIVATIONS[config.activation]

    # ---------------------------------------------------------------- parameters / normalization
    def init_params(self, seed, device=None, dtype=torch.float32):
        """Return freshly initialized parameters (``log_std`` included) from an integer seed."""
        gen = torch.Generator().manual_seed(int(seed))
        params = {}
        for name, shape in self.config.param_shapes().items():
            if name == 'log_std':
                p = torch.full(shape, float(self.config.init_log_std), dtype=torch.float64)
            elif name.endswith('.bias'):
                p = torch.zeros(shape, dtype=torch.float64)
            else:
                # scaled normal init; the output layer starts small so actions start near 0
                gain = 0.01 if name.startswith('mean') else 1.0
                p = torch.randn(shape, generator=gen, dtype=torch.float64)
                p = p * gain / math.sqrt(shape[1])
            params[name] = p.to(device=device, dtype=dtype)
        return params

    def set_normalization(self, mean, std):
        """Set the observation normalization (tensors or arrays of shape (obs_dim,), std > 0)."""
        mean = torch.as_tensor(mean, dtype=torch.float32).detach().clone()
        std = torch.as_tensor(std, dtype=torch.float32).detach().clone()
        want = (self.config.obs_dim,)
        if tuple(mean.shape) != want or tuple(std.shape) != want:
            raise ValueError(f'obs_mean/obs_std must have shape {want}, got '
                             f'{tuple(mean.shape)} and {tuple(std.shape)}')
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
            raise ValueError('obs_mean must be finite and obs_std finite and > 0')
        self.obs_mean, self.obs_std = mean.to(self.obs_mean.device), std.to(self.obs_std.device)

    def to(self, device):
        """Move the normalization tensors to ``device``; returns self."""
        self.obs_mean = self.obs_mean.to(device)
        self.obs_std = self.obs_std.to(device)
        return self

    def check_params(self, params):
        """Raise ValueError unless ``params`` has exactly the expected names and shapes."""
        shapes = self.config.param_shapes()
        if set(params) != set(shapes):
            raise ValueError(f'parameter names differ from the policy config: missing '
                             f'{sorted(set(shapes) - set(params))}, extra '
                             f'{sorted(set(params) - set(shapes))}')
        for name, shape in shapes.items():
            if tuple(params[name].shape[-len(shape):]) != shape:
                raise ValueError(f'parameter {name!r} has shape {tuple(params[name].shape)}; '
                                 f'the policy config needs (..., {shape})')

    # ----------------------------------------------------------------------------- evaluation
    def normalize(self, obs):
        """Return normalized (and clipped) observations, same shape as ``obs``."""
        mean = self.obs_mean.to(dtype=obs.dtype)
        std = self.obs_std.to(dtype=obs.dtype)
        x = (obs - mean) / std
        clip = self.config.obs_clip
        return x.clamp(-clip, clip) if clip > 0 else x

    def mean_action(self, params, obs):
        """Return the mean action (..., act_dim) for raw observations (..., obs_dim)."""
        x = self.normalize(obs)
        for i in range(len(self.config.hidden_sizes)):
            x = self._act(F.linear(x, params[f'hidden.{i}.weight'], params[f'hidden.{i}.bias']))
        return F.linear(x, params['mean.weight'], params['mean.bias'])

    def dist(self, params, obs):
        """Return the action distribution ``Normal(mean, std)`` (per action dimension)."""
        mean = self.mean_action(params, obs)
        std = params['log_std'].exp().expand_as(mean)
        return torch.distributions.Normal(mean, std, validate_args=False)

    def log_prob(self, params, obs, actions):
        """Return log pi(actions | obs) summed over act_dim: shape (...)."""
        mean = self.mean_action(params, obs)
        return gaussian_log_prob(mean, params['log_std'], actions)

    def kl(self, params_p, params_q, obs):
        """Return KL(pi_p(.|obs) || pi_q(.|obs)) summed over act_dim: shape (...)."""
        return gaussian_kl(self.mean_action(params_p, obs), params_p['log_std'],
                           self.mean_action(params_q, obs), params_q['log_std'])

    def sample(self, params, obs, generator=None):
        """Sample actions; returns ``(actions (..., act_dim), log_probs (...))`` (no grad)."""
        with torch.no_grad():
            mean = self.mean_action(params, obs)
            noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype,
                                device='cpu' if generator is None else generator.device)
            actions = mean + params['log_std'].exp() * noise.to(mean.device)
            return actions, gaussian_log_prob(mean, params['log_std'], actions)

    # ------------------------------------------------------------------------ batched (B tasks)
    def batched_mean_action(self, params_b, obs_b):
        """Mean actions for B tasks: params with leading B, obs (B, ..., obs_dim)."""
        return torch.func.vmap(self.mean_action)(params_b, obs_b)

    def batched_log_prob(self, params_b, obs_b, actions_b):
        """Log-probs for B tasks: params with leading B, obs (B, ...), actions (B, ...)."""
        return torch.func.vmap(self.log_prob)(params_b, obs_b, actions_b)

    def batched_sample(self, params_b, obs_b, generator=None):
        """Sample for B tasks in one call; returns ``(actions (B, ..., act_dim), log_probs)``."""
        with torch.no_grad():
            mean = self.batched_mean_action(params_b, obs_b)  # (B, ..., act_dim)
            log_std = params_b['log_std']  # (B, act_dim)
            log_std = log_std.reshape(log_std.shape[:1] + (1,) * (mean.dim() - 2)
                                      + log_std.shape[1:])  # (B, 1, ..., act_dim)
            noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype,
                                device='cpu' if generator is None else generator.device)
            actions = mean + log_std.exp() * noise.to(mean.device)
            return actions, gaussian_log_prob(mean, log_std, actions)


def gaussian_log_prob(mean, log_std, actions):
    """Log-density of a diagonal Gaussian, summed over the last dim (vmap-safe)."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z ** 2 - log_std - 0.5 * LOG_2PI).sum(-1)


def gaussian_kl(mean_p, log_std_p, mean_q, log_std_q):
    """KL(p || q) of diagonal Gaussians, summed over the last dim."""
    var_p = torch.exp(2 * log_std_p)
    var_q = torch.exp(2 * log_std_q)
    kl = log_std_q - log_std_p + (var_p + (mean_p - mean_q) ** 2) / (2 * var_q) - 0.5
    return kl.sum(-1)


def stack_params(params_list):
    """Stack a list of B param dicts into one dict with a leading B dim."""
    if not params_list:
        raise ValueError('stack_params needs at least one params dict')
    return {k: torch.stack([p[k] for p in params_list]) for k in params_list[0]}


def unstack_params(params_b):
    """Split a batched params dict (leading B dim) into a list of B dicts."""
    n = {v.shape[0] for v in params_b.values()}
    if len(n) != 1:
        raise ValueError(f'batched params disagree on the leading B dim: {sorted(n)}')
    return [{k: v[i] for k, v in params_b.items()} for i in range(n.pop())]


def expand_params(params, batch):
    """Repeat one params dict B times along a new leading dim (gradients flow back)."""
    return {k: v.unsqueeze(0).expand((batch,) + tuple(v.shape)) for k, v in params.items()}


class ObsNormalizer:
    """
    Running mean / std of observations (parallel Welford), used during meta-training.

    Update it with the raw observations of each batch, then copy ``mean`` / ``std`` into the
    policy with ``policy.set_normalization(*normalizer.stats())``. The statistics are frozen
    while adapting: they are not part of the params dict.
    """

    def __init__(self, obs_dim, min_std=1e-3):
        """:param obs_dim: observation length. :param min_std: floor on the reported std."""
        self.obs_dim = int(obs_dim)
        self.min_std = float(min_std)
        self.count = torch.zeros((), dtype=torch.float64)
        self.mean = torch.zeros(self.obs_dim, dtype=torch.float64)
        self.m2 = torch.zeros(self.obs_dim, dtype=torch.float64)

    def update(self, obs, mask=None):
        """Add observations (..., obs_dim); with a mask (...), only entries where mask > 0."""
        x = torch.as_tensor(obs).detach().to('cpu', torch.float64).reshape(-1, self.obs_dim)
        if mask is not None:
            keep = torch.as_tensor(mask).detach().to('cpu').reshape(-1) > 0
            x = x[keep]
        if x.shape[0] == 0:
            return
        if not torch.isfinite(x).all():
            raise ValueError('ObsNormalizer.update got NaN/inf observations; filter them first')
        n_b = torch.tensor(float(x.shape[0]), dtype=torch.float64)
        mean_b = x.mean(0)
        m2_b = ((x - mean_b) ** 2).sum(0)
        total = self.count + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * n_b / total
        self.m2 = self.m2 + m2_b + delta ** 2 * self.count * n_b / total
        self.count = total

    def stats(self):
        """Return ``(mean, std)`` as float32 tensors (std floored at ``min_std``)."""
        var = self.m2 / self.count.clamp(min=1.0)
        std = var.sqrt().clamp(min=self.min_std)
        if self.count == 0:
            std = torch.ones_like(std)
        return self.mean.float(), std.float()

    def state_dict(self):
        """Return the statistics as tensors (for exact resume)."""
        return {'count': self.count.clone(), 'mean': self.mean.clone(), 'm2': self.m2.clone()}

    def load_state_dict(self, state):
        """Restore from ``state_dict()``."""
        for key in ('count', 'mean', 'm2'):
            if key not in state:
                raise ValueError(f'ObsNormalizer state lacks {key!r}')
        if tuple(state['mean'].shape) != (self.obs_dim,):
            raise ValueError(f'ObsNormalizer state has obs_dim {tuple(state["mean"].shape)}, '
                             f'expected ({self.obs_dim},)')
        self.count = state['count'].detach().to(torch.float64).clone().reshape(())
        self.mean = state['mean'].detach().to(torch.float64).clone()
        self.m2 = state['m2'].detach().to(torch.float64).clone()

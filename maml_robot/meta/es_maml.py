"""
ES-MAML (Song et al., ICLR 2020): meta-parameters trained by ES for a derivative-free operator.

The meta-objective is ``J(theta) = E_task[ f_task(U(theta, task)) ]``: ``U`` is the adaptation
operator the policy will be deployed with (``hill_climb`` or ``es`` of
:mod:`maml_robot.meta.operators`, run for ``budget`` live episodes), ``f_task`` the return of
the adapted parameters' mean action on fresh episodes of the same task. ``J`` has no useful
derivative (the operators accept, reject and rank), so it is estimated with ES on ``theta``:

1. draw ``pairs`` directions ``eps_i ~ N(0, I)`` and build the antithetic members
   ``theta + sigma eps_i`` and ``theta - sigma eps_i``; pair ``i`` gets task ``i mod B``, and
   both of its members meet the same episodes (starts, goals) and the same operator draws;
2. adapt every member with ``U`` on live episodes of its task, then evaluate the adapted
   parameters on ``rollouts_per_task`` fresh episodes (deterministic policy): the fitness;
3. shape the fitness with centered ranks ``u`` and estimate
   ``g = 1 / (2 pairs sigma) sum_i (u_i+ - u_i-) eps_i``;
4. ascend with Adam: ``theta <- theta + outer_lr * Adam(g)``.

``log_std`` is neither perturbed nor trained: the mean action ignores it.
"""

from dataclasses import dataclass

from maml_robot.episodes import Episodes
from maml_robot.meta.learner import MetaLearner
from maml_robot.meta.operators import (centered_ranks, EvolutionStrategies,
                                       gaussian_directions, HillClimb, MeanActionPolicy,
                                       run_round, shifted, space_names, SPACES)
from maml_robot.policy import stack_params
import numpy as np
import torch

ES_OPERATORS = ('hill_climb', 'es')
"""The derivative-free operators ES-MAML can train for."""


@dataclass
class ESMAMLConfig:
    """Settings of the ES outer loop and of the operator it trains for."""

    outer_lr: float = 0.01
    """Adam step size on the ES gradient estimate."""
    pairs: int = 8
    """Antithetic pairs per iteration (``2 * pairs`` perturbed meta-parameters)."""
    sigma: float = 0.02
    """Standard deviation of each perturbed meta-parameter entry."""
    operator: str = 'hill_climb'
    """The adaptation operator U: 'hill_climb' or 'es'."""
    budget: int = 16
    """Live episodes U may use per task (whole rounds only)."""
    op_sigma: float = 0.05
    """The operator's perturbation size."""
    op_batch: int = 7
    """hill_climb: perturbations per round; es: antithetic pairs per step."""
    op_episodes: int = 2
    """Live episodes per candidate."""
    op_z: float = 0.0
    """hill_climb: acceptance margin in standard errors (paired differences)."""
    op_lr: float = 0.02
    """es: step size of the operator's own ES step."""
    op_max_delta: float | None = None
    """Largest change of one entry per operator update (None: unbounded)."""
    op_space: str = 'all'
    """Parameters the operator perturbs (a key of ``SPACES``)."""

    def __post_init__(self):
        """Reject settings that cannot run (the operator checks its own)."""
        if self.operator not in ES_OPERATORS:
            raise ValueError(f'es_maml operator {self.operator!r} unknown; use one of '
                             f'{ES_OPERATORS}')
        if not (self.outer_lr > 0 and self.sigma > 0 and self.pairs >= 1):
            raise ValueError('es_maml needs outer_lr > 0, sigma > 0 and pairs >= 1; got '
                             f'{self.outer_lr}, {self.sigma}, {self.pairs}')
        if self.op_space not in SPACES:
            raise ValueError(f'op_space {self.op_space!r} unknown; use one of {sorted(SPACES)}')
        if self.rounds() < 1:
            raise ValueError(f'es_maml: one {self.operator} round costs {self.round_cost()} '
                             f'live episodes but budget is {self.budget}; raise the budget or '
                             'lower op_batch / op_episodes')

    def operator_settings(self) -> dict:
        """Return the operator's fields (the checkpoint's ``adaptation['settings']``)."""
        common = {'sigma': self.op_sigma, 'episodes': self.op_episodes,
                  'max_delta': self.op_max_delta, 'space': self.op_space}
        if self.operator == 'hill_climb':
            return {**common, 'batch': self.op_batch, 'z': self.op_z, 'paired': True}
        return {**common, 'pairs': self.op_batch, 'lr': self.op_lr}

    def make_operator(self):
        """Return the operator U (a HillClimb or an EvolutionStrategies)."""
        cls = HillClimb if self.operator == 'hill_climb' else EvolutionStrategies
        return cls(**self.operator_settings())

    def round_cost(self) -> int:
        """Return the live episodes of one operator round."""
        candidates = self.op_batch + 1 if self.operator == 'hill_climb' else 2 * self.op_batch
        return candidates * self.op_episodes

    def rounds(self) -> int:
        """Return the operator rounds within ``budget``."""
        return self.budget // self.round_cost()


def antithetic_members(params, names, pairs, sigma, rng):
    """
    Return ``(eps, members)``: ``pairs`` direction dicts and the ``2 * pairs`` perturbed dicts.

    ``members[2 i] = params + sigma eps_i`` and ``members[2 i + 1] = params - sigma eps_i``
    over ``names`` (the other entries are shared, unperturbed). ``rng``: numpy Generator.
    """
    eps, members = [], []
    for _ in range(pairs):
        direction = {n: d.to(params[n]) for n, d in
                     gaussian_directions(params, names, rng).items()}
        eps.append(direction)
        members.append(shifted(params, {n: sigma * d for n, d in direction.items()}))
        members.append(shifted(params, {n: -sigma * d for n, d in direction.items()}))
    return eps, members


def es_gradient(eps, fitness, sigma, shaping=True):
    """
    Return the ES estimate of the gradient of the fitness, a dict shaped like ``eps[i]``.

    :param eps: the ``P`` directions of :func:`antithetic_members`.
    :param fitness: (2 P,) fitness of the members, ``+`` then ``-`` per pair.
    :param shaping: use centered ranks (fitness shaping) instead of the raw values.
    """
    fitness = np.asarray(fitness, dtype=np.float64)
    if fitness.shape != (2 * len(eps),):
        raise ValueError(f'fitness has shape {fitness.shape}; expected ({2 * len(eps)},), '
                         'one value per member')
    utility = centered_ranks(fitness) if shaping else fitness
    weights = (utility[0::2] - utility[1::2]) / (2 * len(eps) * sigma)     # (P,)
    return {n: sum(float(w) * e[n] for w, e in zip(weights, eps)) for n in eps[0]}


def rollout_returns(episodes):
    """Return the undiscounted return of every episode, (B, N) numpy."""
    return (episodes.rewards * episodes.mask).sum(-1).detach().cpu().double().numpy()


class ESMAMLLearner(MetaLearner):
    """
    ES-MAML: ES on the meta-parameters of the return after a derivative-free adaptation.

    The trainer calls :meth:`run_iteration` (it samples its own episodes) instead of
    ``adapt`` / ``meta_step``.
    """

    algorithm = 'es_maml'

    def __init__(self, policy, params, inner, config=None):
        """See :class:`MetaLearner`; ``config`` defaults to ``ESMAMLConfig()``."""
        if inner.learn_lr:
            raise ValueError('es_maml does not use the policy-gradient step: set '
                             'learn_inner_lr: false')
        super().__init__(policy, params, inner, config or ESMAMLConfig())
        self.operator = self.config.make_operator()
        self.names = space_names(self.params, 'all')   # every parameter but log_std
        self.optimizer = torch.optim.Adam([self.params[n] for n in self.names],
                                          lr=self.config.outer_lr)

    def adaptation(self) -> dict:
        """Return what the checkpoint records as its adaptation operator."""
        cfg = self.config
        return {'operator': cfg.operator, 'settings': cfg.operator_settings(),
                'budget': cfg.rounds() * cfg.round_cost()}

    def adapt(self, pre_episodes):
        """Not used: ES-MAML adapts inside :meth:`run_iteration`."""
        raise NotImplementedError('es_maml samples its own episodes: call run_iteration')

    def meta_step(self, pre_episodes, post_episodes):
        """Not used: ES-MAML steps inside :meth:`run_iteration`."""
        raise NotImplementedError('es_maml samples its own episodes: call run_iteration')

    # ------------------------------------------------------------------------------ iteration
    def run_iteration(self, sampler, tasks, rollouts, seeds):
        """
        Run one ES-MAML iteration; return its outcome.

        :param sampler: a :class:`~maml_robot.sampler.Sampler` (any backend).
        :param tasks: the iteration's B tasks; pair ``i`` runs on ``tasks[i % B]``.
        :param rollouts: fresh episodes that measure each adapted member (its fitness).
        :param seeds: the iteration's SeedSequences (``learner``: directions and operator
            draws; ``pre``: adaptation episodes; ``post``: measurement episodes).
        :returns: dict with ``pre_returns`` (2 P,) mean return of each member's first-round
            candidates, ``post_returns`` (2 P, N), ``episodes`` the measurement Episodes
            (2 P, N, T), ``env_steps`` and ``stats`` (floats).
        """
        cfg, pairs = self.config, self.config.pairs
        draw = int(seeds['learner'].generate_state(1)[0])
        theta = {k: v.detach() for k, v in self.params.items()}
        eps, members = antithetic_members(theta, self.names, pairs, cfg.sigma,
                                          np.random.default_rng([draw, 0]))
        pair_tasks = [tasks[i % len(tasks)] for i in range(pairs)]
        adapted, first, steps = self.adapt_members(members, pair_tasks, sampler, draw,
                                                   seeds['pre'])
        measured, post = [], []
        for sign in (0, 1):                  # + members, then - members: the same episodes
            episodes = sampler.sample(MeanActionPolicy(self.policy),
                                      stack_params(adapted[sign::2]), pair_tasks, rollouts,
                                      seed=seeds['post'])             # (P, N, T)
            measured.append(episodes)
            post.append(rollout_returns(episodes))                   # (P, N)
            steps += float(episodes.mask.sum())
        post_returns = _interleave(post[0], post[1])                 # (2 P, N)
        fitness = post_returns.mean(-1)                              # (2 P,)
        grad = es_gradient(eps, fitness, cfg.sigma)
        grad_norm = self.ascend(grad)
        self.iteration += 1
        stats = {'grad_norm': grad_norm, 'fitness_std': float(fitness.std()),
                 'pair_gap': float(np.abs(fitness[0::2] - fitness[1::2]).mean())}
        return {'pre_returns': first, 'post_returns': post_returns, 'env_steps': int(steps),
                'episodes': _cat(measured), 'stats': stats}

    def adapt_members(self, members, pair_tasks, sampler, draw, pre_seed):
        """
        Adapt the 2 P members with the operator; return ``(adapted, first, env steps)``.

        ``adapted``: 2 P dicts; ``first`` (2 P,): mean return of each member's first-round
        candidates (for hill_climb, the member and its neighbours), about its return before
        adapting. The two members of a pair get the same operator draws and episodes.
        """
        op, pairs = self.operator, self.config.pairs
        pre_word = int(pre_seed.generate_state(1)[0])
        current = [list(members[0::2]), list(members[1::2])]         # per sign: P dicts
        rngs = [[np.random.default_rng([draw, 1, i]) for i in range(pairs)] for _ in (0, 1)]
        first, steps = [None, None], 0.0
        for r in range(self.config.rounds()):
            seed = np.random.SeedSequence([pre_word, r])              # paired candidates
            for sign in (0, 1):
                candidates = [op.ask(p, g) for p, g in zip(current[sign], rngs[sign])]
                current[sign], used, returns = run_round(
                    op, self.policy, current[sign], candidates, pair_tasks, sampler,
                    lambda c: seed)                                   # returns (P, C, E)
                steps += float(used.sum())
                if r == 0:
                    first[sign] = returns.mean(axis=(1, 2))
        adapted = [p for pair in zip(current[0], current[1]) for p in pair]
        return adapted, _interleave(first[0], first[1]), steps

    def ascend(self, grad):
        """Take one Adam step up ``grad`` (a dict over ``self.names``); return its norm."""
        self.optimizer.zero_grad()
        for n in self.names:
            self.params[n].grad = -grad[n].to(self.params[n])         # Adam minimizes
        norm = float(torch.sqrt(sum((g.double() ** 2).sum() for g in grad.values())))
        if not np.isfinite(norm):
            raise FloatingPointError('es_maml gradient estimate is NaN/inf; check the rewards')
        self.optimizer.step()
        self.optimizer.zero_grad()
        return norm

    # ----------------------------------------------------------------------------------- state
    def extra_state(self):
        """Return Adam's hyper-parameters (JSON)."""
        return {'optimizer_param_groups': self.optimizer.state_dict()['param_groups']}

    def load_extra_state(self, extra):
        """Restore Adam (its tensors arrived in ``load_extra_tensors``)."""
        state = {}
        for name, value in self._optim_tensors.items():
            _, idx, key = name.split('.', 2)
            state.setdefault(int(idx), {})[key] = value
        groups = [dict(g, betas=tuple(g['betas'])) for g in extra['optimizer_param_groups']]
        self.optimizer.load_state_dict({'state': state, 'param_groups': groups})

    def extra_tensors(self):
        """Return Adam's moments and step counts as ``optim.<index>.<key>`` tensors."""
        return {f'optim.{idx}.{key}': torch.as_tensor(value).detach().cpu().clone()
                for idx, st in self.optimizer.state_dict()['state'].items()
                for key, value in st.items()}

    def load_extra_tensors(self, tensors):
        """Keep Adam's tensors until its param groups arrive (``load_extra_state``)."""
        self._optim_tensors = {k: v for k, v in tensors.items() if k.startswith('optim.')}


def _interleave(plus, minus):
    """Return ``[plus_0, minus_0, plus_1, ...]`` along the first axis (numpy)."""
    out = np.empty((2 * len(plus),) + np.shape(plus)[1:])
    out[0::2], out[1::2] = plus, minus
    return out


def _cat(parts):
    """Return the Episodes of ``parts`` joined along the task axis."""
    return Episodes(*(torch.cat(fields) for fields in zip(*(p.as_tuple() for p in parts))))

"""
The adapter's adaptation operator: chosen from the settings, and a derivative-free round.

The operators are those of ``maml-robot eval --adaptation`` (:mod:`maml_robot.meta.operators`).
``pg`` learns from the live episodes of the current parameters. A derivative-free operator
(``hill_climb``, ``es``) runs a :class:`CandidateRound`: it asks for candidates, each acts (with
its mean action) for ``op.episodes`` live episodes, and its answer is the update.
"""

from maml_robot.meta.operators import OPERATORS, PolicyGradient
from maml_robot.online.config import ADAPTATIONS
from maml_robot.online.guard import bounded_change
from maml_robot.operator_eval import make_operator, parse_settings


def adapter_operator(config, spec, policy, step_fn=None):
    """
    Return the operator the adapter runs: ``config.adaptation``, else the checkpoint's.

    ``pg`` takes its batch and repeats from ``config`` (rollouts_per_step, steps_per_batch) and
    its step size and advantage settings from the checkpoint (``spec``); a derivative-free
    operator takes the checkpoint's settings for it, overridden by ``config.adaptation_args``.

    :param step_fn: the pg update (default :func:`maml_robot.meta.inner.inner_step`).
    """
    name = config.adaptation or spec.adaptation or 'pg'
    if name not in ADAPTATIONS or name not in OPERATORS:
        raise ValueError(f'adaptation {name!r} unknown; use one of {ADAPTATIONS}')
    text = config.adaptation_args.strip()
    if name == 'pg':
        if text:
            raise ValueError(f'adaptation_args {text!r} is for hill_climb and es; pg takes '
                             'rollouts_per_step and steps_per_batch: clear adaptation_args')
        return PolicyGradient(policy=policy, lr=spec.inner_lr, episodes=config.rollouts_per_step,
                              inner_kwargs=dict(spec.inner_kwargs or {}),
                              steps_per_batch=config.steps_per_batch, step_fn=step_fn)
    settings = {}
    if name == spec.adaptation:
        settings.update({k: str(v) for k, v in (spec.adaptation_args or {}).items()})
    try:
        settings.update(parse_settings([s for s in text.split(',') if s.strip()]))
        return make_operator(name, policy, spec.inner_lr, spec.inner_kwargs, settings)
    except ValueError as err:
        raise ValueError(f'adaptation {name!r} with adaptation_args {text!r}: {err}') from None


class CandidateRound:
    """
    One round of a derivative-free operator on live episodes: candidates act in turn.

    Each candidate (bounded to ``max_norm`` from the current parameters, as every update is)
    acts for ``op.episodes`` whole episodes; episodes cut short or spanning two candidates are
    not counted. Not thread-safe: the adapter calls it under its lock.
    """

    def __init__(self, op, params, rng, max_norm, sample):
        """
        Ask ``op`` for candidates around ``params``.

        :param rng: the numpy Generator the perturbations are drawn from.
        :param max_norm: largest L2 distance of a candidate from ``params``.
        :param sample: (mean, variance of the mean) of the current parameters' returns: the
            reference the update will be judged against.
        """
        self.candidates = []
        for candidate in op.ask(params, rng):
            bounded = bounded_change(params, candidate, max_norm)
            if bounded is None:
                raise ValueError(f'{op.name} proposed non-finite parameters')
            self.candidates.append(bounded)
        self.episodes = [[] for _ in self.candidates]   # live episodes of each candidate
        self.episodes_each = int(op.episodes)
        self.sample = sample
        self.index = 0          # the candidate acting now

    def current(self):
        """Return (index, parameters) of the candidate acting now."""
        return self.index, self.candidates[self.index]

    def add(self, index, episode) -> bool:
        """File a finished episode of candidate ``index``; return True when the round is done."""
        if index != self.index:
            return False
        self.episodes[index].append(episode)
        if len(self.episodes[index]) >= self.episodes_each:
            self.index += 1
        return self.done

    @property
    def done(self) -> bool:
        """Return True when every candidate has its episodes."""
        return self.index >= len(self.candidates)

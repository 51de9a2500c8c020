"""Outer learners by name: 'promp' (default), 'trpo', 'fomaml', 'es_maml' (derivative-free)."""

from dataclasses import fields

from maml_robot.meta.es_maml import ESMAMLConfig, ESMAMLLearner
from maml_robot.meta.promp import FOMAMLLearner, ProMPConfig, ProMPLearner
from maml_robot.meta.trpo import TRPOConfig, TRPOLearner

LEARNERS = {'promp': (ProMPLearner, ProMPConfig), 'trpo': (TRPOLearner, TRPOConfig),
            'fomaml': (FOMAMLLearner, ProMPConfig), 'es_maml': (ESMAMLLearner, ESMAMLConfig)}
DEFAULT_ALGORITHM = 'promp'
FOMAML_DEFAULTS = {'num_outer_steps': 1, 'kl_coeff': 0.0, 'first_order': True}


def config_from_dict(algorithm, values=None):
    """Return the config dataclass of ``algorithm`` from a dict (unknown keys are an error)."""
    if algorithm not in LEARNERS:
        raise ValueError(f'algorithm {algorithm!r} unknown; use one of {sorted(LEARNERS)}')
    cls = LEARNERS[algorithm][1]
    values = dict(values or {})
    known = {f.name for f in fields(cls)}
    extra = set(values) - known
    if extra:
        raise ValueError(f'unknown {algorithm} settings {sorted(extra)}; known: {sorted(known)}')
    if algorithm == 'fomaml':
        values = {**FOMAML_DEFAULTS, **values}
    return cls(**values)


def make_learner(algorithm, policy, params, inner, config=None):
    """
    Build a learner.

    :param algorithm: 'promp', 'trpo', 'fomaml' or 'es_maml'.
    :param policy: the GaussianPolicy.
    :param params: initial meta-parameters.
    :param inner: InnerConfig.
    :param config: the algorithm's config dataclass, a dict of its fields, or None (defaults).
    """
    if config is None or isinstance(config, dict):
        config = config_from_dict(algorithm, config)
    return LEARNERS[algorithm][0](policy, params, inner, config)

"""
The observation terms: one table, one entry per term, from which every other use derives.

An entry gives a term's entries (a layout name and the Python expression of each: their count is
the term's size), the RobotState fields it reads besides the joints (with the least length each
must have), the kinematics type it needs and whether it needs the forward kinematics of the tip.
The scenario loader (names, sizes, which terms need kinematics and a goal), the compiled
observation (``maml_robot.observation``), the simulator (which terms need the base state) and the
online adapter (which inputs a checkpoint needs) all read this table. Nothing here imports
PyBullet, torch or ROS.
"""

from dataclasses import dataclass
from typing import Callable

FIELD_VARIABLES = {'goal': 'g', 'base_position': 'p', 'base_orientation': 'o',
                   'base_linear_velocity': 'v', 'base_angular_velocity': 'w'}
"""The variable an expression uses for each RobotState field (besides the joints)."""


@dataclass(frozen=True)
class ObservationTerm:
    """
    One observation term.

    Its expressions are Python over ``q0, q1, ...`` (measured joint positions, scenario order),
    ``d0, d1, ...`` (velocities), ``tx, ty`` (the planar chain's fingertip, world frame),
    ``ex, ey, ez`` (the URDF chain's tip, ``kinematics.base_link`` frame), one variable per
    RobotState field (FIELD_VARIABLES: ``g[0]`` is the goal's x) and the functions ``_cos``,
    ``_sin`` and ``_base_pitch``.

    :param name: the name a scenario's ``observation`` list uses.
    :param description: what the term is, in words (units, frame).
    :param entries: ``entries(joint_names) -> [(layout name, expression), ...]``, one pair per
        number of the term, in order.
    :param needs: ``((RobotState field, least length), ...)`` the term reads besides the joints.
    :param kinematics: the ``kinematics.type`` the term needs ('planar_chain' or 'urdf'), or None.
    :param tip: True when its expressions use the tip's forward kinematics (tx, ty or ex, ey, ez).
    """

    name: str
    description: str
    entries: Callable[[tuple], list]
    needs: tuple = ()
    kinematics: str | None = None
    tip: bool = False

    def size(self, joint_names):
        """Return the number of observation entries of the term for these joints."""
        return len(self.entries(tuple(joint_names)))

    def layout(self, joint_names):
        """Return the name of each entry, e.g. 'joint_velocity[elbow_joint]'."""
        return [name for name, _ in self.entries(tuple(joint_names))]

    def expressions(self, joint_names):
        """Return the Python expression of each entry."""
        return [expr for _, expr in self.entries(tuple(joint_names))]

    def fields(self):
        """Return the RobotState fields the term reads besides the joints."""
        return tuple(field for field, _ in self.needs)


def _per_joint(*patterns):
    """Return ``entries`` for one entry per joint per (layout, expression) pattern, in turn."""
    return lambda names: [(layout.format(n), expr.format(i)) for layout, expr in patterns
                          for i, n in enumerate(names)]


def _fixed(*pairs):
    """Return ``entries`` for a term of fixed size: the (layout, expression) pairs given."""
    return lambda names: list(pairs)


def _xyz(layout, expr, axes='xyz'):
    """Return ``entries`` of one entry per axis: ('goal.x', 'g[0]'), ... from two patterns."""
    return _fixed(*((layout.format(axis), expr.format(i)) for i, axis in enumerate(axes)))


_GOAL2, _GOAL3 = (('goal', 2),), (('goal', 3),)
_TERMS = (
    ObservationTerm('joint_position', 'measured joint positions (rad or m)',
                    _per_joint(('joint_position[{}]', 'q{}'))),
    ObservationTerm('joint_position_cos_sin', 'cosines of the joint positions, then sines',
                    _per_joint(('cos[{}]', '_cos(q{})'), ('sin[{}]', '_sin(q{})'))),
    ObservationTerm('joint_velocity', 'measured joint velocities (rad/s or m/s)',
                    _per_joint(('joint_velocity[{}]', 'd{}'))),
    ObservationTerm('fingertip_position', "the planar chain's fingertip x, y (world frame)",
                    _fixed(('fingertip.x', 'tx'), ('fingertip.y', 'ty')),
                    kinematics='planar_chain', tip=True),
    ObservationTerm('goal_position', 'the goal x, y (world frame)', _xyz('goal.{}', 'g[{}]', 'xy'),
                    needs=_GOAL2, kinematics='planar_chain'),
    ObservationTerm('fingertip_to_goal', 'goal minus fingertip, x and y',
                    _fixed(('goal_minus_fingertip.x', 'g[0] - tx'),
                           ('goal_minus_fingertip.y', 'g[1] - ty')),
                    needs=_GOAL2, kinematics='planar_chain', tip=True),
    ObservationTerm('ee_position', "the URDF chain's tip (kinematics.base_link frame)",
                    _fixed(('ee.x', 'ex'), ('ee.y', 'ey'), ('ee.z', 'ez')),
                    kinematics='urdf', tip=True),
    ObservationTerm('goal_position_3d', 'the goal (kinematics.base_link frame)',
                    _xyz('goal.{}', 'g[{}]'), needs=_GOAL3, kinematics='urdf'),
    ObservationTerm('ee_to_goal', 'goal minus tip (kinematics.base_link frame)',
                    _fixed(('goal_minus_ee.x', 'g[0] - ex'), ('goal_minus_ee.y', 'g[1] - ey'),
                           ('goal_minus_ee.z', 'g[2] - ez')),
                    needs=_GOAL3, kinematics='urdf', tip=True),
    ObservationTerm('base_height', 'height of the base link (world z, m)',
                    _fixed(('base.z', 'p[2]')), needs=(('base_position', 3),)),
    ObservationTerm('base_pitch', 'rotation of the base about world y (planar robots)',
                    _fixed(('base.pitch', '_base_pitch(o)')), needs=(('base_orientation', 4),)),
    ObservationTerm('base_orientation', 'the base quaternion x, y, z, w',
                    _xyz('base.q{}', 'o[{}]', 'xyzw'),
                    needs=(('base_orientation', 4),)),
    ObservationTerm('base_planar_velocity', 'base vx, vz and wy (world frame, planar robots)',
                    _fixed(('base.vx', 'v[0]'), ('base.vz', 'v[2]'), ('base.wy', 'w[1]')),
                    needs=(('base_linear_velocity', 3), ('base_angular_velocity', 3))),
    ObservationTerm('base_linear_velocity', 'base linear velocity (world frame)',
                    _xyz('base.v{}', 'v[{}]'), needs=(('base_linear_velocity', 3),)),
    ObservationTerm('base_angular_velocity', 'base angular velocity (world frame)',
                    _xyz('base.w{}', 'w[{}]'), needs=(('base_angular_velocity', 3),)),
)
OBSERVATION_TERMS = {term.name: term for term in _TERMS}
"""The table: {name: ObservationTerm}, in the order of docs/SCENARIOS.md."""

PLANAR_TERMS = tuple(n for n, t in OBSERVATION_TERMS.items() if t.kinematics == 'planar_chain')
SPATIAL_TERMS = tuple(n for n, t in OBSERVATION_TERMS.items() if t.kinematics == 'urdf')
GOAL_TERMS = tuple(n for n, t in OBSERVATION_TERMS.items() if 'goal' in t.fields())
BASE_TERMS = tuple(n for n, t in OBSERVATION_TERMS.items()
                   if any(f.startswith('base_') for f in t.fields()))
"""Terms that need kinematics of a planar or a URDF chain, a goal, the base's state."""


def observation_term(name):
    """Return the ObservationTerm called ``name``; ValueError naming the known ones if none."""
    try:
        return OBSERVATION_TERMS[name]
    except (KeyError, TypeError):
        raise ValueError(f'unknown observation term {name!r}; known: '
                         f'{sorted(OBSERVATION_TERMS)}') from None


def observation_size(terms, joint_names):
    """Return the number of entries of the observation ``terms`` for these joints."""
    return sum(observation_term(t).size(joint_names) for t in terms)

"""Load and validate a scenario YAML (robot, control, observation, reward, dynamics splits)."""

import copy
from dataclasses import dataclass, field
import hashlib
from pathlib import Path

from maml_robot.actuation import Actuation
from maml_robot.observation_terms import (observation_size, OBSERVATION_TERMS, PLANAR_TERMS,
                                          SPATIAL_TERMS)
from maml_robot.paths import data_path, urdf_candidates
from maml_robot.scenario_control import control_differences, CONTROL_KEYS, control_section
# MAX_SPLIT_SIZE, ScenarioWarning and SplitSpec are part of this module's interface too
from maml_robot.scenario_dynamics import (dynamics_section, MAX_SPLIT_SIZE,  # noqa: F401
                                          ScenarioWarning, SplitSpec)
from maml_robot.scenario_kinematics import goal_section, kinematics_section
from maml_robot.scenario_reader import Reader, ScenarioError
from maml_robot.urdf import parse_urdf, UrdfError
import numpy as np
import yaml

SHIPPED = ('reacher', 'cheetah', 'quadruped', 'a1_walk', 'kuka_reach')
REWARD_TERMS = ('goal_distance', 'control', 'forward_velocity', 'alive')
TOP_KEYS = ('name', 'description', 'urdf', 'joints', 'control', 'sim', 'base', 'episode_steps',
            'initial_state', 'goal', 'kinematics', 'observation', 'reward', 'termination',
            'dynamics')
REQUIRED_KEYS = ('name', 'urdf', 'joints', 'control', 'sim', 'base', 'episode_steps',
                 'observation', 'reward', 'dynamics')


MAX_EPISODE_STEPS = 100_000
"""Upper bound of ``episode_steps`` (100 000 steps: 33 min of simulated time at 50 Hz)."""


@dataclass(frozen=True, eq=False)
class Scenario:
    """A validated scenario; arrays are in scenario joint order (sorted by name)."""

    name: str
    path: Path
    urdf_path: Path
    description: str
    joint_names: tuple
    effort_limits: np.ndarray     # (J,) N·m (N for prismatic); also the action scale
    velocity_limits: np.ndarray   # (J,)
    position_limits: np.ndarray   # (J, 2) lower, upper (±inf for continuous joints)
    actuation: Actuation         # control mode, action scale, PD gains, safe hold
    uncontrolled: str            # URDF joints not controlled: 'free' or 'lock'
    control_rate_hz: float
    sim_timestep: float
    frame_skip: int
    gravity: float
    ground: bool
    ground_friction: float
    base_link: str
    base_fixed: bool
    base_position: tuple
    initial_joint_position: np.ndarray  # (J,)
    joint_position_noise: float
    joint_velocity_noise: float
    episode_steps: int
    goal_radius: tuple | None     # planar reacher: (lo, hi) m from kinematics.origin
    goal_region: dict | None      # 3-D goals (urdf kinematics): box or shell, base_link frame
    kinematics: dict | None
    observation: tuple
    reward: dict
    termination: dict
    payload_link: str | None
    splits: dict
    source: dict = field(repr=False)
    control_period: float = field(init=False)
    obs_dim: int = field(init=False)
    act_dim: int = field(init=False)

    def __post_init__(self):
        """Compute the derived sizes once."""
        j = len(self.joint_names)
        object.__setattr__(self, 'control_period', self.sim_timestep * self.frame_skip)
        object.__setattr__(self, 'act_dim', j)
        object.__setattr__(self, 'obs_dim', observation_size(self.observation, self.joint_names))

    @property
    def dynamics(self):
        """Return {'payload_link': str | None, 'splits': {name: SplitSpec}}."""
        return {'payload_link': self.payload_link, 'splits': self.splits}

    @property
    def control_mode(self):
        """Return 'torque' or 'position' (see maml_robot.actuation)."""
        return self.actuation.mode

    @property
    def action_scale(self):
        """Command per unit of normalized action (N·m in torque mode, rad in position mode)."""
        return self.actuation.action_scale

    def to_dict(self):
        """Return a JSON-able snapshot (stored in checkpoints); ``from_dict`` rebuilds it."""
        return {'name': self.name, 'path': str(self.path), 'urdf_path': str(self.urdf_path),
                'urdf_sha256': file_sha256(self.urdf_path),
                'joint_names': list(self.joint_names),
                'effort_limits': self.effort_limits.tolist(),
                'source': copy.deepcopy(self.source)}

    @classmethod
    def from_dict(cls, data):
        """
        Rebuild a Scenario from ``to_dict()``.

        The URDF is looked up where the snapshot found it, then as the scenario named it
        (``pybullet_data://`` and ``package://`` resolve on any machine); a URDF whose content
        differs from the one the snapshot was taken with is refused.
        """
        source = copy.deepcopy(data['source'])
        urdf = Path(data['urdf_path'])
        want = data.get('urdf_sha256')
        if urdf.is_file() and (want is None or file_sha256(urdf) == want):
            source['urdf'] = str(urdf)
        scenario = build_scenario(source, Path(data['path']))
        if want is not None and file_sha256(scenario.urdf_path) != want:
            raise ScenarioError(data['path'], 'urdf', f'the URDF the checkpoint was trained '
                                f'with (sha256 {want[:12]}...); {scenario.urdf_path} has other '
                                'content: use the robot description the policy was trained on, '
                                'or retrain', source.get('urdf'))
        if list(scenario.joint_names) != list(data['joint_names']):
            raise ScenarioError(data['path'], 'joints', f'joints {data["joint_names"]}',
                                list(scenario.joint_names))
        return scenario


def checkpoint_reference(name, snapshot, scenario=None):
    """
    Return what a checkpoint's scenario loads from: ``scenario``, a shipped name or the snapshot.

    Shipped scenarios load by name (the package's current YAML, as their baselines were
    computed); a user's scenario from the snapshot the checkpoint carries, so ``eval``, ``adapt``
    and ``launch`` need nothing but the checkpoint. ``scenario`` (a name, path or snapshot: a
    command's ``--scenario``) replaces both. Anything but the snapshot itself is refused where
    its control differs from the one the checkpoint was trained with (:func:`check_control`).

    :param name: the checkpoint's scenario name; ``snapshot`` its ``Scenario.to_dict()``.
    """
    has_source = isinstance(snapshot, dict) and 'source' in snapshot
    if scenario is not None:
        reference = scenario
    elif name in SHIPPED or not has_source:
        if not name:
            raise ValueError('the checkpoint records no scenario; pass --scenario')
        reference = name
    else:
        return snapshot
    if has_source:
        check_control(snapshot, load_scenario(reference))
    return reference


COMMANDS = {'torque': 'efforts', 'position': 'position targets', 'velocity': 'velocity targets'}
"""What an action commands in each control mode (for messages)."""


class ControlMismatch(ValueError):
    """A checkpoint meets a scenario whose control is not the one it was trained with."""


def check_control(snapshot, scenario):
    """
    Raise :class:`ControlMismatch` where ``scenario``'s control is not the snapshot's.

    An action is an effort, a position target or a velocity only under the control section it
    was trained with (``scenario_control.control_differences``): a torque policy driven as
    position targets would run without an error and mean nothing.

    :param snapshot: the checkpoint's ``Scenario.to_dict()``; ``scenario`` a Scenario.
    """
    trained = Scenario.from_dict(snapshot)
    diffs = control_differences(trained.actuation, scenario.actuation, trained.control_rate_hz,
                                scenario.control_rate_hz)
    if not diffs:
        return
    if trained.name in SHIPPED:
        advice = ('retrain on this scenario, or run the checkpoint on the scenario it carries: '
                  'written to a YAML with maml_robot.scenario.write_scenario_yaml and passed as '
                  '--scenario to eval or showcase (launch and the adapter node run a checkpoint '
                  f'of the shipped {trained.name!r} only on the one this maml_robot ships)')
    else:
        advice = ('run the checkpoint on the scenario it was trained with (the snapshot it '
                  'carries: leave out --scenario) or on one with the same control, or retrain '
                  'on this one')
    read = ''
    if trained.control_mode != scenario.control_mode:
        read = (f' ({COMMANDS[trained.control_mode]} read as '
                f'{COMMANDS[scenario.control_mode]})')
    raise ControlMismatch(
        f'scenario {scenario.name!r} ({scenario.path}) has another control than the checkpoint '
        f'was trained with: {"; ".join(diffs)}. Its actions would mean other commands here'
        f'{read}; {advice}')


def write_scenario_yaml(scenario, path):
    """Write ``scenario``'s YAML with its resolved URDF path (for a node that reads files)."""
    source = copy.deepcopy(scenario.source)
    source['urdf'] = str(scenario.urdf_path)
    Path(path).write_text(yaml.safe_dump(source, sort_keys=False))
    return Path(path)


def file_sha256(path):
    """Return the hex SHA-256 of a file's bytes (the URDF a scenario was built from)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def resolve(name_or_path):
    """Return the YAML path for a shipped scenario name or a user's path."""
    text = str(name_or_path)
    if text in SHIPPED:
        return data_path('sim', f'{text}.yaml')
    path = Path(text).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f'scenario {text!r} is neither a shipped scenario {SHIPPED} '
                                'nor an existing YAML file')
    return path.resolve()


def load_scenario(name_or_path):
    """
    Return the Scenario of a shipped name, a user's YAML path or a snapshot.

    A snapshot is ``Scenario.to_dict()`` as a checkpoint stores it: the robot and tasks a policy
    was trained on, usable where the scenario's file is not (another machine, another folder).
    """
    if isinstance(name_or_path, Scenario):
        return name_or_path
    if isinstance(name_or_path, dict):
        if 'source' not in name_or_path:
            raise ValueError('a scenario snapshot must come from Scenario.to_dict() (it has no '
                             "'source'); pass a scenario name or YAML path instead")
        return Scenario.from_dict(name_or_path)
    path = resolve(name_or_path)
    try:
        data = yaml.safe_load(path.read_text(encoding='utf-8'))
    except UnicodeDecodeError as err:
        raise ScenarioError(path, '<file>', 'a UTF-8 text YAML file',
                            f'undecodable byte at offset {err.start}') from None
    except yaml.YAMLError as err:
        raise ScenarioError(path, '<file>', 'valid YAML', str(err).splitlines()[0]) from None
    return build_scenario(data, path)


def _urdf_path(r, data, path):
    text = data['urdf']
    if not isinstance(text, str) or not text:
        r.fail('urdf', 'a path to a URDF file (relative to the YAML, or in the package urdf/), '
               'pybullet_data://REL or package://PKG/REL', text)
    try:
        candidates = urdf_candidates(text, path.parent)
    except ValueError as err:
        r.fail('urdf', str(err), text)
    for cand in candidates:
        if cand.is_file():
            return cand.resolve()
    r.fail('urdf', f'an existing URDF file; looked at {[str(c) for c in candidates]}', text)


def _joints(r, data, model):
    names = r.names(data['joints'], 'joints', set(model.joints), 'joint names of the URDF')
    for i, n in enumerate(names):
        if model.joints[n].type not in ('revolute', 'continuous', 'prismatic'):
            r.fail(f'joints[{i}]', 'an actuated (revolute, continuous or prismatic) joint',
                   f'{n} is {model.joints[n].type}')
        if not model.joints[n].effort or model.joints[n].effort <= 0:
            r.fail(f'joints[{i}]', f'joint {n!r} to have a positive URDF effort limit',
                   model.joints[n].effort)
    return tuple(sorted(names))


def _robot(r, data, path):
    """Return the URDF path, its parsed model and the controlled joints (sorted)."""
    urdf_path = _urdf_path(r, data, path)
    try:
        model = parse_urdf(urdf_path)
    except UrdfError as err:
        raise ScenarioError(path, 'urdf', 'a valid URDF', str(err)) from None
    return urdf_path, model, _joints(r, data, model)


def _timing(r, data):
    """
    Return the control and sim mappings and the checked rate, timestep, frame skip and ground.

    The control rate must be ``1 / (sim.timestep * sim.frame_skip)``.
    """
    control = r.mapping(data['control'], 'control', CONTROL_KEYS, ('mode', 'rate_hz'))
    sim = r.mapping(data['sim'], 'sim', ('timestep', 'frame_skip', 'gravity', 'ground',
                                         'ground_friction'), ('timestep', 'frame_skip'))
    timestep = r.number(sim['timestep'], 'sim.timestep', 0, 0.1, strict_lo=True)
    frame_skip = r.integer(sim['frame_skip'], 'sim.frame_skip', lo=1)
    rate = r.number(control['rate_hz'], 'control.rate_hz', 0, strict_lo=True)
    if abs(rate * timestep * frame_skip - 1.0) > 1e-6:
        r.fail('control.rate_hz', f'1 / (sim.timestep * sim.frame_skip) = '
               f'{1 / (timestep * frame_skip):g}', rate)
    ground = sim.get('ground', True)
    if not isinstance(ground, bool):
        r.fail('sim.ground', 'true or false', ground)
    return control, sim, {'control_rate_hz': rate, 'sim_timestep': timestep,
                          'frame_skip': frame_skip, 'ground': ground}


def _base(r, data, model):
    """Return the base mapping: a link of the URDF, fixed or not (position read later)."""
    base = r.mapping(data['base'], 'base', ('link', 'fixed', 'position'), ('link', 'fixed'))
    if base['link'] not in model.links:
        r.fail('base.link', f'a link of the URDF {sorted(model.links)}', base['link'])
    if not isinstance(base['fixed'], bool):
        r.fail('base.fixed', 'true or false', base['fixed'])
    return base


def _task_terms(r, data):
    """Return the observation terms, the reward weights and the termination tests."""
    obs = r.names(data['observation'], 'observation', set(OBSERVATION_TERMS),
                  'observation terms')
    reward = r.mapping(data['reward'], 'reward', REWARD_TERMS)
    if not reward:
        r.fail('reward', f'at least one term of {list(REWARD_TERMS)}', reward)
    reward = {k: r.number(v, f'reward.{k}') for k, v in reward.items()}
    term = r.mapping(data.get('termination', {}), 'termination', ('base_height', 'min_up'))
    termination = {}
    if 'base_height' in term:
        termination['base_height'] = r.range_(term['base_height'], 'termination.base_height')[0]
    if 'min_up' in term:
        termination['min_up'] = r.number(term['min_up'], 'termination.min_up', -1, 1)
    return obs, reward, termination


def _goal(r, data, kin, terms, initial_q):
    """Return the goal section's (radius, region) when one of ``terms`` needs a goal."""
    needs_goal = set(PLANAR_TERMS) | set(SPATIAL_TERMS) | {'goal_distance'}
    used = needs_goal & terms
    if used:
        return goal_section(r, data, kin, used, initial_q)
    return None, None


def build_scenario(data, path):
    """
    Validate the YAML mapping ``data`` read from ``path``; return a Scenario.

    Sections are checked in a fixed order (robot, timing, base, initial state, control,
    observation and reward, kinematics and goal, dynamics splits, name and length; the
    optional numbers with defaults last), so a file with several errors reports the same first.
    """
    path = Path(path)
    r = Reader(path)
    if not isinstance(data, dict):
        r.fail('<top level>', 'a mapping of scenario keys', type(data).__name__)
    r.mapping(data, '', TOP_KEYS, required=REQUIRED_KEYS)
    urdf_path, model, names = _robot(r, data, path)
    control, sim, timing = _timing(r, data)
    base = _base(r, data, model)
    init = r.mapping(data.get('initial_state', {}), 'initial_state',
                     ('joint_position', 'joint_position_noise', 'joint_velocity_noise'))
    initial_q = r.per_joint(init.get('joint_position', 0.0), 'initial_state.joint_position',
                            names, 0.0)
    gravity = r.number(sim.get('gravity', -9.81), 'sim.gravity')
    actuation, uncontrolled = control_section(r, control, names, model, initial_q, base,
                                              gravity)
    obs, reward, termination = _task_terms(r, data)
    kin = kinematics_section(r, data, names, model, base)
    goal, region = _goal(r, data, kin, set(obs) | set(reward), initial_q)
    payload_link, splits = dynamics_section(r, data, names, model)
    name = data['name']
    if not isinstance(name, str) or not name:
        r.fail('name', 'a non-empty string', name)
    steps = r.integer(data['episode_steps'], 'episode_steps', lo=1,
                      hi=MAX_EPISODE_STEPS)
    return Scenario(
        name=name, path=path.resolve(), urdf_path=urdf_path,
        description=str(data.get('description', '')), joint_names=names,
        effort_limits=actuation.effort_limit,     # read from the URDF once, in the actuation
        velocity_limits=actuation.velocity_limit,     # inf where the URDF gives none (or 0)
        position_limits=actuation.position_limits,
        actuation=actuation, uncontrolled=uncontrolled, **timing,
        gravity=gravity,
        ground_friction=r.number(sim.get('ground_friction', 1.0), 'sim.ground_friction', 0),
        base_link=base['link'], base_fixed=base['fixed'],
        base_position=r.vector(base.get('position', [0, 0, 0]), 'base.position', 3),
        initial_joint_position=initial_q,
        joint_position_noise=r.number(init.get('joint_position_noise', 0.0),
                                      'initial_state.joint_position_noise', 0),
        joint_velocity_noise=r.number(init.get('joint_velocity_noise', 0.0),
                                      'initial_state.joint_velocity_noise', 0),
        episode_steps=steps, goal_radius=goal, goal_region=region, kinematics=kin,
        observation=obs, reward=reward,
        termination=termination, payload_link=payload_link, splits=splits,
        source=copy.deepcopy(data))

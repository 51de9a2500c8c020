"""Read the parts of a URDF that scenarios need (joints, limits, links) with the stdlib."""

from dataclasses import dataclass
from pathlib import Path
import xml.etree.ElementTree as ElementTree

MOVING_TYPES = ('revolute', 'continuous', 'prismatic')
JOINT_TYPES = MOVING_TYPES + ('fixed', 'floating', 'planar')


class UrdfError(ValueError):
    """A URDF file that cannot be used: says the file, the element and what is wrong."""


@dataclass(frozen=True)
class UrdfJoint:
    """One <joint> element."""

    name: str
    type: str  # noqa: A003 - the URDF attribute's name
    parent: str
    child: str
    xyz: tuple
    rpy: tuple
    axis: tuple
    lower: float | None
    upper: float | None
    effort: float | None
    velocity: float | None
    damping: float


@dataclass(frozen=True)
class UrdfLink:
    """
    One <link> element; ``inertia`` is (ixx, iyy, izz, ixy, ixz, iyz) or None.

    ``com`` is the <inertial><origin xyz> (the centre of mass in the link frame). A link without
    <inertial> is massless here, as the URDF specification has it (PyBullet gives it 1 kg).
    """

    name: str
    mass: float
    inertia: tuple | None
    com: tuple = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class UrdfModel:
    """The robot tree: links, joints (by name) and the single root link."""

    path: Path
    name: str
    links: dict
    joints: dict
    root: str

    @property
    def moving_joints(self):
        """Names of the joints that move (revolute, continuous, prismatic)."""
        return [n for n, j in self.joints.items() if j.type in MOVING_TYPES]


def _floats(text, n, where):
    try:
        values = tuple(float(v) for v in text.split())
    except ValueError:
        raise UrdfError(f'{where}: expected {n} numbers, got {text!r}') from None
    if len(values) != n:
        raise UrdfError(f'{where}: expected {n} numbers, got {text!r}')
    return values


def _attr_float(elem, name, where, default=None):
    text = elem.get(name) if elem is not None else None
    if text is None:
        return default
    try:
        return float(text)
    except ValueError:
        raise UrdfError(f'{where}: attribute {name!r} must be a number, got {text!r}') from None


def _parse_joint(elem, where):
    name = elem.get('name')
    kind = elem.get('type')
    if not name or kind not in JOINT_TYPES:
        raise UrdfError(f'{where}: joint needs a name and a type in {JOINT_TYPES}, '
                        f'got name={name!r} type={kind!r}')
    where = f'{where}: joint {name!r}'
    parent, child = elem.find('parent'), elem.find('child')
    if parent is None or child is None or not parent.get('link') or not child.get('link'):
        raise UrdfError(f'{where}: needs <parent link=.../> and <child link=.../>')
    origin = elem.find('origin')
    xyz = _floats(origin.get('xyz', '0 0 0'), 3, where) if origin is not None else (0, 0, 0)
    rpy = _floats(origin.get('rpy', '0 0 0'), 3, where) if origin is not None else (0, 0, 0)
    axis_el = elem.find('axis')
    axis = _floats(axis_el.get('xyz', '1 0 0'), 3, where) if axis_el is not None else (1, 0, 0)
    limit = elem.find('limit')
    if kind in ('revolute', 'prismatic') and limit is None:
        raise UrdfError(f'{where}: a {kind} joint needs a <limit> element')
    dyn = elem.find('dynamics')
    return UrdfJoint(
        name=name, type=kind, parent=parent.get('link'), child=child.get('link'), xyz=xyz,
        rpy=rpy, axis=axis, lower=_attr_float(limit, 'lower', where),
        upper=_attr_float(limit, 'upper', where), effort=_attr_float(limit, 'effort', where),
        velocity=_attr_float(limit, 'velocity', where),
        damping=_attr_float(dyn, 'damping', where, 0.0))


def _parse_link(elem, where):
    name = elem.get('name')
    if not name:
        raise UrdfError(f'{where}: a <link> without a name')
    inertial = elem.find('inertial')
    if inertial is None:
        return UrdfLink(name, 0.0, None)
    mass = _attr_float(inertial.find('mass'), 'value', f'{where}: link {name!r} mass', 0.0)
    inertia_el = inertial.find('inertia')
    keys = ('ixx', 'iyy', 'izz', 'ixy', 'ixz', 'iyz')
    inertia = (tuple(_attr_float(inertia_el, k, f'{where}: link {name!r}', 0.0) for k in keys)
               if inertia_el is not None else None)
    origin = inertial.find('origin')
    com = (_floats(origin.get('xyz', '0 0 0'), 3, f'{where}: link {name!r} inertial origin')
           if origin is not None else (0.0, 0.0, 0.0))
    return UrdfLink(name, mass, inertia, com)


def parse_urdf(path):
    """Parse ``path`` into a UrdfModel; raise UrdfError unless it is a single tree."""
    path = Path(path)
    try:
        root_el = ElementTree.parse(path).getroot()
    except FileNotFoundError:
        raise UrdfError(f'{path}: URDF file not found') from None
    except ElementTree.ParseError as err:
        raise UrdfError(f'{path}: not well-formed XML ({err})') from None
    return _model(root_el, path, str(path))


def parse_urdf_text(text: str, where: str):
    """
    Parse a URDF given as text (``robot_description``) into a UrdfModel.

    ``where`` names its origin in messages (a topic name); the model's ``path`` is it too.
    """
    try:
        root_el = ElementTree.fromstring(text)
    except ElementTree.ParseError as err:
        raise UrdfError(f'{where}: not well-formed XML ({err})') from None
    return _model(root_el, Path(where), where)


def _model(root_el, path, where):
    """Return the UrdfModel of a parsed <robot> element."""
    if root_el.tag != 'robot':
        raise UrdfError(f'{where}: the root element must be <robot>, got <{root_el.tag}>')
    links = {}
    for elem in root_el.findall('link'):
        link = _parse_link(elem, where)
        if link.name in links:
            raise UrdfError(f'{where}: link {link.name!r} defined twice')
        links[link.name] = link
    joints = {}
    children = set()
    for elem in root_el.findall('joint'):
        joint = _parse_joint(elem, where)
        if joint.name in joints:
            raise UrdfError(f'{where}: joint {joint.name!r} defined twice')
        for end in (joint.parent, joint.child):
            if end not in links:
                raise UrdfError(f'{where}: joint {joint.name!r} refers to unknown link {end!r}')
        if joint.child in children:
            raise UrdfError(f'{where}: link {joint.child!r} has two parent joints')
        children.add(joint.child)
        joints[joint.name] = joint
    roots = [n for n in links if n not in children]
    if len(roots) != 1:
        raise UrdfError(f'{where}: expected exactly one root link, found {roots}')
    return UrdfModel(path=path, name=root_el.get('name', ''), links=links, joints=joints,
                     root=roots[0])

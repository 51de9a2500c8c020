"""The observation-term table: each entry is consistent, and every other use derives from it."""

import ast

from maml_robot.observation import observation_layout
from maml_robot.observation_terms import (BASE_TERMS, FIELD_VARIABLES, GOAL_TERMS,
                                          observation_size, observation_term, OBSERVATION_TERMS,
                                          PLANAR_TERMS, SPATIAL_TERMS)
from maml_robot.online.loading import fresh_checkpoint, spec_from_checkpoint
from maml_robot.scenario import load_scenario, SHIPPED
import pytest

TIP = {'tx': 'planar_chain', 'ty': 'planar_chain', 'ex': 'urdf', 'ey': 'urdf', 'ez': 'urdf'}
NAMES = ('a_joint', 'b_joint', 'c_joint')


def _names_used(expressions):
    """Return {variable: largest constant index read from it (-1: none)} of the expressions."""
    used = {}
    for expr in expressions:
        for node in ast.walk(ast.parse(expr, mode='eval')):
            if isinstance(node, ast.Name):
                used.setdefault(node.id, -1)
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
                used[node.value.id] = max(used.get(node.value.id, -1), node.slice.value)
    return used


@pytest.mark.parametrize('name', sorted(OBSERVATION_TERMS))
def test_each_entry_agrees_with_itself(name):
    term = OBSERVATION_TERMS[name]
    assert term.name == name and term.description
    layout, expressions = term.layout(NAMES), term.expressions(NAMES)
    assert len(layout) == len(expressions) == term.size(NAMES) > 0
    assert len(set(layout)) == len(layout)
    used = _names_used(expressions)
    # the fields it declares are exactly the ones its expressions read, long enough for them
    fields = {f: v for f, v in FIELD_VARIABLES.items() if v in used}
    assert set(term.fields()) == set(fields), (term.needs, used)
    for field, least in term.needs:
        assert used[FIELD_VARIABLES[field]] < least
    # it needs the tip's kinematics exactly when it reads tx, ty (planar) or ex, ey, ez (urdf)
    tips = {TIP[v] for v in used if v in TIP}
    assert term.tip == bool(tips) and tips <= {term.kinematics}
    joints = {v for v in used if v[0] in 'qd' and v[1:].isdigit()}
    assert all(int(v[1:]) < len(NAMES) for v in joints)


def test_derived_lists():
    assert PLANAR_TERMS == ('fingertip_position', 'goal_position', 'fingertip_to_goal')
    assert SPATIAL_TERMS == ('ee_position', 'goal_position_3d', 'ee_to_goal')
    assert GOAL_TERMS == ('goal_position', 'fingertip_to_goal', 'goal_position_3d', 'ee_to_goal')
    assert BASE_TERMS == ('base_height', 'base_pitch', 'base_orientation',
                          'base_planar_velocity', 'base_linear_velocity',
                          'base_angular_velocity')
    assert observation_term('joint_position_cos_sin').layout(('a', 'b')) == [
        'cos[a]', 'cos[b]', 'sin[a]', 'sin[b]']


@pytest.mark.parametrize('name', SHIPPED)
def test_scenarios_derive_sizes_layout_and_needs_from_the_table(name):
    sc = load_scenario(name)
    assert sc.obs_dim == len(observation_layout(sc)) == observation_size(sc.observation,
                                                                         sc.joint_names)
    needs = spec_from_checkpoint(fresh_checkpoint(sc), sc).needs
    terms = set(sc.observation) | set(sc.reward)
    assert ('goal' in needs) == bool(terms & (set(GOAL_TERMS) | {'goal_distance'}))
    assert ('odom' in needs) == bool(terms & (set(BASE_TERMS) | {'forward_velocity'}))


def test_unknown_terms_name_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown observation term 'joint_torque'; known: "
                                         r"\['base_angular_velocity', "):
        observation_term('joint_torque')
    with pytest.raises(ValueError, match='unknown observation term'):
        observation_size(['joint_position', 'joint_torque'], NAMES)

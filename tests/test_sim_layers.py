"""The simulator's layers each on its own: PyBullet client, robot, a Task's model."""

import math

from maml_robot.dynamics import Task
from maml_robot.scenario import load_scenario
from maml_robot.sim.client import PhysicsClient
from maml_robot.sim.robot import Robot
from maml_robot.sim.task_model import (body_parameters, CommandDelay, draw_goal, motor_gains,
                                       Sensors)
import numpy as np
import pybullet
import pytest


@pytest.fixture
def reacher():
    return load_scenario('reacher')


def _robot(scenario):
    client = PhysicsClient(timestep=scenario.sim_timestep, gravity=scenario.gravity)
    return client, Robot(client, scenario)


def test_clients_are_independent_and_close_once(reacher):
    (a, robot_a), (b, robot_b) = _robot(reacher), _robot(reacher)
    try:
        assert a.client_id != b.client_id and a.client_id >= 0
        robot_a.set_joints([0.0, 0.0], [3.0, -2.0])
        robot_b.set_joints([0.0, 0.0], [0.0, 0.0])
        step = a.bind('stepSimulation')          # bound once: acts on client a only
        for _ in range(5):
            step()
        q_a, _ = robot_a.read_joints()
        q_b, qd_b = robot_b.read_joints()
        assert abs(q_a[0]) > 1e-3 and q_b == [0.0, 0.0] and qd_b == [0.0, 0.0]
        # the bound call is the direct call: same numbers as physicsClientId= by hand
        assert robot_a.joint_states() == pybullet.getJointStates(
            robot_a.body, robot_a.joints, physicsClientId=a.client_id)
    finally:
        cid = a.client_id
        a.close()
        a.close()                                 # idempotent
        b.close()
    assert a.client_id == -1 and not pybullet.isConnected(physicsClientId=cid)


def test_a_client_connects_silently(capfd):
    capfd.readouterr()
    client = PhysicsClient()
    client.close()
    assert capfd.readouterr().out == ''    # no 'argv[0]=' per connection (sampler workers)


def test_robot_joints_in_scenario_order_and_state_round_trip(reacher):
    client, robot = _robot(reacher)
    try:
        names = [client.getJointInfo(robot.body, i)[1].decode() for i in robot.joints]
        assert names == list(reacher.joint_names)
        assert robot.link_index[reacher.base_link] == robot.base_index
        assert -1 in robot.link_index.values() and robot.drive_loop is None
        robot.set_joints([0.3, -0.4], [1.5, -2.5])
        assert robot.read_joints() == ([0.3, -0.4], [1.5, -2.5])
        tip = robot.link_position('fingertip')
        assert tip.shape == (3,) and np.all(np.isfinite(tip))
        # a positive torque on the shoulder alone accelerates it positively
        robot.set_joints([0.0, 0.0], [0.0, 0.0])
        robot.command_torques(forces=[0.05, 0.0])
        client.stepSimulation()
        assert robot.read_joints()[1][0] > 0.0
    finally:
        client.close()


def test_robot_set_physics_scales_what_it_is_given(reacher):
    client, robot = _robot(reacher)
    try:
        masses, damping = body_parameters(Task(mass_scale=2.0, payload=0.25, damping_scale=3.0),
                                          robot.nominal, robot.payload_index)
        robot.set_physics(masses, damping)
        for link, (mass, inertia) in masses.items():
            info = client.getDynamicsInfo(robot.body, link)
            assert info[0] == pytest.approx(mass) and info[2] == pytest.approx(inertia)
        # joint damping acts (Bullet's getJointInfo keeps reporting the URDF's value)
        speeds = []
        for scale in (1.0, 50.0):
            robot.set_physics(masses, [d * scale for d in damping])
            robot.set_joints([0.0, 0.0], [2.0, 0.0])
            for _ in range(20):
                client.stepSimulation()
            speeds.append(abs(robot.read_joints()[1][0]))
        assert speeds[1] < 0.5 * speeds[0], speeds
        assert masses[robot.payload_index][0] == pytest.approx(
            2.0 * robot.nominal['masses'][robot.payload_index][0] + 0.25)
    finally:
        client.close()


def test_body_parameters_are_exact():
    nominal = {'masses': {-1: (4.0, (1.0, 2.0, 3.0)), 2: (0.5, (0.1, 0.1, 0.2))},
               'damping': [0.5, 0.0]}
    masses, damping = body_parameters(Task(mass_scale=1.5, payload=0.2, damping_scale=2.0),
                                      nominal, payload_index=2)
    assert masses == {-1: (6.0, [1.5, 3.0, 4.5]),
                      2: (0.5 * 1.5 + 0.2, [0.1 * 1.5, 0.1 * 1.5, 0.2 * 1.5])}
    assert damping == [1.0, 0.0]


def test_motor_gains(reacher):
    task = Task(motor_strength=(0.5, 2.0), motor_direction=(-1, 1),
                dead_joints=(reacher.joint_names[1],))
    assert motor_gains(reacher, task).tolist() == [-0.5, 0.0]
    assert motor_gains(reacher, Task()).tolist() == [1.0, 1.0]


def test_command_delay_is_a_fifo_of_whole_steps():
    delay = CommandDelay(2, 2)
    out = [delay.push([float(k), -float(k)]) for k in range(1, 6)]
    assert out == [[0.0, 0.0], [0.0, 0.0], [1.0, -1.0], [2.0, -2.0], [3.0, -3.0]]
    delay.clear()
    assert delay.push([9.0, 9.0]) == [0.0, 0.0]
    now = CommandDelay(0, 2)
    command = [0.5, 0.25]
    assert now.push(command) is command


def test_sensors_add_offsets_to_positions_and_noise_to_both():
    sensors = Sensors(np.array([0.1, -0.2]), 0.0)
    assert sensors.measure([1.0, 2.0], [3.0, 4.0], None) == ([1.0 + 0.1, 2.0 - 0.2], [3.0, 4.0])
    assert sensors.position_offsets == [0.1, -0.2]
    noisy = Sensors(np.array([0.1, -0.2]), 0.05)
    q, qd = noisy.measure([1.0, 2.0], [3.0, 4.0], np.random.default_rng(7))
    n = np.random.default_rng(7).standard_normal(4).tolist()   # one draw: positions, velocities
    assert q == [(1.0 + 0.1) + 0.05 * n[0], (2.0 - 0.2) + 0.05 * n[1]]
    assert qd == [(3.0 + 0.0) + 0.05 * n[2], (4.0 + 0.0) + 0.05 * n[3]]


def test_goals_come_from_the_scenario(reacher):
    rng = np.random.default_rng(0)
    x0, y0, z0 = reacher.kinematics['origin']
    lo, hi = reacher.goal_radius
    for _ in range(50):
        x, y, z = draw_goal(reacher, rng)
        assert lo <= math.hypot(x - x0, y - y0) <= hi and z == z0
    kuka = load_scenario('kuka_reach')
    region = kuka.goal_region
    for _ in range(20):
        goal = np.array(draw_goal(kuka, rng))
        if region['type'] == 'box':
            assert np.all(goal >= region['low']) and np.all(goal <= region['high'])
        else:
            distance = np.linalg.norm(goal - region['center'])
            assert region['radius'][0] - 1e-9 <= distance <= region['radius'][1] + 1e-9
    assert draw_goal(load_scenario('cheetah'), rng) is None

"""The ROS_DOMAIN_ID allocator (tests/ros_domains.py) and that every ROS test takes from it."""

import ast
import importlib.util
import os
from pathlib import Path
import subprocess
import sys

import pytest
import ros_domains
from ros_domains import domain_id

TESTS = Path(__file__).resolve().parent
NODE_COMMANDS = {'demo', 'sim', 'adapt', 'launch'}
"""``maml-robot`` commands that start ROS nodes."""


def twin_allocator():
    """Load a second, independent copy of ros_domains (its own in-process bookkeeping)."""
    spec = importlib.util.spec_from_file_location('ros_domains_twin', ros_domains.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_domain_is_handed_out_once_and_in_range(monkeypatch):
    domains = [domain_id() for _ in range(6)]
    # in plain ascending order too: the bookkeeping and the lock keep them apart, not the mtimes
    monkeypatch.setattr(ros_domains, '_last_used', lambda domain: 0.0)
    domains += [domain_id() for _ in range(6)]
    assert len(set(domains)) == len(domains), domains
    assert all(1 <= d <= 232 for d in domains), domains
    assert set(domains) <= set(ros_domains._held)


def test_a_held_domain_is_refused_to_another_copy_and_another_process(monkeypatch):
    held = domain_id()
    twin = twin_allocator()
    assert twin._try_hold(held) is None                 # the flock, not the bookkeeping
    monkeypatch.setattr(twin, '_last_used', lambda domain: 0.0)     # plain ascending order
    assert twin.domain_id() not in ros_domains._held
    monkeypatch.setattr(twin, 'DOMAINS', range(held, held + 1))
    with pytest.raises(RuntimeError, match=f'every ROS_DOMAIN_ID {held}..{held} is held'):
        twin.domain_id()
    code = (f'import sys; sys.path.insert(0, {str(TESTS)!r}); import ros_domains; '
            f'print(ros_domains._try_hold({held}) is None)')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.stdout.strip() == 'True', out.stdout + out.stderr


def domain_problems(path, root=TESTS):
    """Return how a test module picks a ROS_DOMAIN_ID other than from ros_domains (empty: ok)."""
    text = path.read_text()
    name = path.relative_to(root)
    problems, starts_nodes = [], False
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef) and 'domain' in node.name and \
                not node.name.startswith('test_'):
            problems.append(f'{name}:{node.lineno} defines {node.name}(); use ros_domains')
        if isinstance(node, ast.Call):
            called = ast.unparse(node.func)
            if called == 'rclpy.init':
                starts_nodes = True
                if 'domain_id' not in [k.arg for k in node.keywords]:
                    problems.append(f'{name}:{node.lineno} rclpy.init() without domain_id=')
            if called == 'NodeProcesses':
                starts_nodes = True
                if not node.args and not node.keywords:
                    problems.append(f'{name}:{node.lineno} NodeProcesses() without a domain')
        if isinstance(node, ast.List):
            items = [ast.unparse(e) for e in node.elts]
            if "'maml_robot.cli'" in items:
                command = node.elts[items.index("'maml_robot.cli'") + 1]
                if not isinstance(command, ast.Constant) or command.value in NODE_COMMANDS:
                    starts_nodes = True
                    if "'--domain-id'" not in items:
                        problems.append(f'{name}:{node.lineno} maml_robot.cli '
                                        f'{ast.unparse(command)} without --domain-id')
    if starts_nodes and 'from ros_domains import domain_id' not in text:
        problems.append(f'{name} starts ROS nodes but takes no domain from ros_domains')
    return problems


def test_no_test_module_picks_its_own_domain():
    mine = ('ros_domains.py', Path(__file__).name)      # the allocator and this check
    paths = sorted(p for p in TESTS.rglob('*.py') if p.name not in mine)
    assert [line for p in paths for line in domain_problems(p)] == []


def test_the_domain_check_catches_a_module_with_its_own_range(tmp_path):
    path = TESTS / 'faults' / 'fault_nodes.py'
    text = path.read_text().replace('from ros_domains import domain_id\n', '')
    text += ('\n\ndef domain_id():\n    return 20 + next(COUNTER) % 80\n\n\n'
             'def start(domain):\n    NodeProcesses()\n    rclpy.init(context=None)\n'
             "    return [sys.executable, '-m', 'maml_robot.cli', 'demo']\n")
    copy = tmp_path / 'fault_nodes.py'
    copy.write_text(text)
    assert domain_problems(path) == []
    problems = {p.split(' ', 1)[1] for p in domain_problems(copy, root=tmp_path)}
    assert problems == {'defines domain_id(); use ros_domains',
                        'NodeProcesses() without a domain', 'rclpy.init() without domain_id=',
                        "maml_robot.cli 'demo' without --domain-id",
                        'starts ROS nodes but takes no domain from ros_domains'}

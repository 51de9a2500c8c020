"""
The ROS_DOMAIN_ID allocator (maml_robot.ros.domains) and that every ROS test takes from it.

The tests take it through tests/ros_domains.py, the benchmarks directly.
"""

import ast
import os
from pathlib import Path
import subprocess
import sys

from maml_robot.ros.domains import DomainAllocator
import pytest
import ros_domains
from ros_domains import domain_id

TESTS = Path(__file__).resolve().parent
BENCHMARKS = TESTS.parent / 'benchmarks'
NODE_COMMANDS = {'demo', 'sim', 'adapt', 'launch'}
"""``maml-robot`` commands that start ROS nodes."""


def test_every_domain_is_handed_out_once_and_in_range(monkeypatch):
    domains = [domain_id() for _ in range(6)]
    # in plain ascending order too: the bookkeeping and the lock keep them apart, not the mtimes
    monkeypatch.setattr(ros_domains.ALLOCATOR, 'last_used', lambda domain: 0.0)
    domains += [domain_id() for _ in range(6)]
    assert len(set(domains)) == len(domains), domains
    assert all(1 <= d <= 232 for d in domains), domains
    assert set(domains) <= set(ros_domains.ALLOCATOR.held)


def test_a_held_domain_is_refused_to_another_allocator_and_another_process(monkeypatch):
    held = domain_id()
    twin = DomainAllocator()                            # its own in-process bookkeeping
    assert twin.try_hold(held) is None                  # the flock, not the bookkeeping
    monkeypatch.setattr(twin, 'last_used', lambda domain: 0.0)      # plain ascending order
    assert twin.domain_id() not in ros_domains.ALLOCATOR.held
    twin = DomainAllocator(domains=range(held, held + 1))
    with pytest.raises(RuntimeError, match=f'every ROS_DOMAIN_ID {held}..{held} is held'):
        twin.domain_id()
    code = ('from maml_robot.ros.domains import DomainAllocator; '
            f'print(DomainAllocator().try_hold({held}) is None)')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.stdout.strip() == 'True', out.stdout + out.stderr


def domain_problems(path, root=TESTS, source='ros_domains', cli_flag=True):
    """
    Return how a module picks a ROS_DOMAIN_ID other than from ``source`` (empty: ok).

    :param cli_flag: a ``maml_robot.cli`` command that starts nodes must be given
        ``--domain-id`` (else it takes its own from the allocator).
    """
    text = path.read_text()
    name = path.relative_to(root)
    problems, starts_nodes = [], False
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef) and 'domain' in node.name and \
                not node.name.startswith('test_'):
            problems.append(f'{name}:{node.lineno} defines {node.name}(); use {source}')
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
                if cli_flag and (not isinstance(command, ast.Constant)
                                 or command.value in NODE_COMMANDS):
                    starts_nodes = True
                    if "'--domain-id'" not in items:
                        problems.append(f'{name}:{node.lineno} maml_robot.cli '
                                        f'{ast.unparse(command)} without --domain-id')
    if starts_nodes and f'from {source} import domain_id' not in text:
        problems.append(f'{name} starts ROS nodes but takes no domain from {source}')
    return problems


def test_no_test_module_picks_its_own_domain():
    mine = ('ros_domains.py', Path(__file__).name)      # the allocator and this check
    paths = sorted(p for p in TESTS.rglob('*.py') if p.name not in mine)
    assert [line for p in paths for line in domain_problems(p)] == []


def test_no_benchmark_picks_its_own_domain():
    # `maml-robot demo` without --domain-id takes one from the allocator itself
    paths = sorted(BENCHMARKS.glob('*.py'))
    assert [line for p in paths for line in domain_problems(
        p, root=BENCHMARKS.parent, source='maml_robot.ros.domains', cli_flag=False)] == []


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

"""
Function-local imports of maml_robot say why they are local (issue 19).

An import inside a function hides a dependency from the top of its module, so one is allowed
only where it buys something: the start-up of a command (``maml-robot COMMAND --help`` imports
its command module, and the tests' ``build_parser()`` every one), an optional dependency (Ray,
ROS 2), a heavy one that few paths need (SB3, matplotlib), a layer kept free of torch
(``sampling/``), an import cycle. The reason is written as ``# lazy: <reason>`` on the import's
own line, or on the line just above the import or just above the run of consecutive imports it
belongs to. A ``# lazy:`` comment that explains no function-local import is stale and fails
too. The rule is stated in docs/ARCHITECTURE.md beside the layer order (tests/test_layers.py).
"""

import ast
from pathlib import Path
import re
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = 'maml_robot'

MARK = re.compile(r'#\s*lazy:(?P<reason>.*)$')
MIN_REASON_WORDS = 3


def _reason(line):
    """Return the reason of a ``# lazy:`` comment on ``line`` (None: no mark)."""
    found = MARK.search(line)
    return None if found is None else found.group('reason').strip()


def _function_nodes(tree):
    """Return the ids of the nodes inside a function (def or async def) of ``tree``."""
    inside = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside.update(id(node) for node in ast.walk(fn) if node is not fn)
    return inside


def check_source(source, where='<source>'):
    """
    Return the problems of one module's source: unexplained local imports, stale marks.

    Each problem is a line ``where:LINE: what is wrong and what to do``.
    """
    lines = source.splitlines()
    tree = ast.parse(source)
    inside = _function_nodes(tree)
    problems, used = [], set()
    for node in ast.walk(tree):
        for value in ast.iter_fields(node):
            statements = value[1]
            if not isinstance(statements, list):
                continue
            run_mark = previous = None
            for stmt in statements:
                if not isinstance(stmt, (ast.Import, ast.ImportFrom)):
                    previous = None
                    continue
                if previous is None:   # the first import of a run: the line above it
                    above = stmt.lineno - 2
                    run_mark = above if above >= 0 and lines[above].lstrip().startswith('#') \
                        and _reason(lines[above]) is not None else None
                previous = stmt
                if id(stmt) not in inside:
                    continue
                own = stmt.lineno - 1
                mark = own if _reason(lines[own]) is not None else run_mark
                text = lines[own].strip()
                if mark is None:
                    problems.append(f'{where}:{stmt.lineno}: function-local import without a '
                                    f'reason: {text!r}; move it to the top of the module, or '
                                    'say why it is local with a "# lazy: <reason>" comment')
                    continue
                used.add(mark)
                if len(_reason(lines[mark]).split()) < MIN_REASON_WORDS:
                    problems.append(f'{where}:{mark + 1}: "# lazy:" needs a reason of at '
                                    f'least {MIN_REASON_WORDS} words (what it saves or why)')
    for index, line in enumerate(lines):
        if _reason(line) is not None and index not in used:
            problems.append(f'{where}:{index + 1}: a "# lazy:" comment that explains no '
                            'function-local import; delete it (or put it on/above the import)')
    return sorted(set(problems))


def package_files(root=ROOT):
    """Return the package's source files (paths relative to ``root``)."""
    return sorted(p.relative_to(root).as_posix() for p in (root / PACKAGE).rglob('*.py'))


def test_every_function_local_import_says_why():
    problems = []
    for rel in package_files():
        problems += check_source((ROOT / rel).read_text(), rel)
    assert not problems, 'function-local imports (docs/ARCHITECTURE.md, "Imports"):\n' + \
        '\n'.join(problems)


GOOD = [
    'import os\n\n\ndef f():\n    # lazy: Ray is an optional extra\n    import ray\n',
    'def f():\n    import ray  # lazy: Ray is an optional extra\n',
    'def f():\n    # lazy: ROS 2 is optional here\n    import rclpy\n    from std_msgs.msg import '
    'Empty\n\n    from maml_robot import ros\n',
    'def f():\n    try:\n        # lazy: Ray is an optional extra\n        import ray\n'
    '    except ImportError:\n        pass\n',
    'def f():\n    from a import (b,  # lazy: b is heavy to import\n                   c)\n',
    'import torch  # not a function-local import: no reason needed\n',
]

BAD = [   # (source, what each problem says, in line order)
    ('def f():\n    import ray\n', ['without a reason']),
    ('class A:\n    def f(self):\n        import ray\n', ['without a reason']),
    ('def f():\n    x = 1\n    import ray\n', ['without a reason']),
    ('def f():\n    # lazy: Ray is an optional extra\n    x = 1\n    import ray\n',
     ['explains no function-local import', 'without a reason']),
    ('def f():\n    # lazy: Ray is an optional extra\n    import ray\n    x = 1\n'
     '    import rclpy\n', ['without a reason']),
    ('def f():\n    # lazy: optional\n    import ray\n', ['at least 3 words']),
    ('# lazy: Ray is an optional extra\nimport ray\n', ['explains no function-local import']),
    ('def f():\n    # lazy: Ray is an optional extra\n    return 1\n',
     ['explains no function-local import']),
]


@pytest.mark.parametrize('source', GOOD)
def test_a_local_import_with_its_reason_passes(source):
    assert check_source(source) == []


@pytest.mark.parametrize('source, expected', BAD)
def test_a_local_import_without_a_reason_or_a_stale_reason_fails(source, expected):
    problems = check_source(source)
    assert len(problems) == len(expected), problems
    assert all(what in problem for what, problem in zip(expected, problems)), problems


IMPORTED_BY = {
    # what a process imports: the heavy or optional modules it must not load. These are the
    # reasons the "# lazy:" comments give. `maml-robot --help` imports no command module (the
    # help lines are in cli.COMMANDS); every command's flags (`maml-robot COMMAND --help`,
    # build_parser()) do load torch and pybullet (train's flags come from TrainConfig, beside
    # the learners; showcase imports the envs), but none of the optional or rarer modules.
    'maml-robot --help': ('import contextlib, io\nfrom maml_robot import cli\n'
                          'with contextlib.redirect_stdout(io.StringIO()), '
                          'contextlib.suppress(SystemExit):\n    cli.main(["--help"])',
                          ('torch', 'pybullet', 'pybullet_data', 'gymnasium', 'numpy', 'yaml',
                           'rclpy', 'ray', 'matplotlib', 'stable_baselines3', 'tensorboard',
                           'maml_robot.commands.train', 'maml_robot.commands.showcase',
                           'maml_robot.commands.demo', 'maml_robot.train_config')),
    "every command's flags": ('from maml_robot import cli\ncli.build_parser()',
                              ('rclpy', 'ray', 'matplotlib', 'stable_baselines3', 'tensorboard',
                               'torch.utils.tensorboard', 'launch_ros', 'maml_robot.online',
                               'maml_robot.plots')),
    'the adapter node': ('import maml_robot.ros.adapter_node',
                         ('pybullet', 'pybullet_data', 'gymnasium', 'stable_baselines3',
                          'matplotlib', 'ray', 'tensorboard', 'maml_robot.sim')),
    'a sampling worker': ('import maml_robot.sampling.worker, maml_robot.sampling.ray_actor\n'
                          'import maml_robot.sampling.backend_choice',
                          ('torch', 'ray')),
}


@pytest.mark.parametrize('what', sorted(IMPORTED_BY))
def test_lazy_imports_keep_heavy_modules_out(what):
    code, banned = IMPORTED_BY[what]
    if what == 'the adapter node':
        pytest.importorskip('rclpy')
    script = f'import sys\n{code}\nprint(*[m for m in {banned!r} if m in sys.modules])\n'
    out = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = out.stdout.split()
    assert not loaded, f'{what} imports {loaded}; keep them behind a "# lazy:" import'

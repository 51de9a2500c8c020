"""
One-way layers: no module of maml_robot imports a module of a higher layer (issue 19).

The import graph is read from the source (``ast``): module-level imports and the imports inside
functions alike (a lazy import is still a dependency). The layer order is written once, in
``LAYERS``; the edges that break it today are listed, each with its reason, in ``KNOWN``, so the
test passes now and fails on any NEW upward import (and on a KNOWN edge that is gone: delete it).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = 'maml_robot'

LAYERS = (
    # lowest first; a module may import its own layer and the layers before it, never after.
    # Each entry is a module or a package prefix; the longest matching prefix wins
    # ('maml_robot' itself names only the package's __init__).
    ('base', ('maml_robot', 'maml_robot.paths', 'maml_robot.urdf', 'maml_robot.stats',
              'maml_robot.results', 'maml_robot.plots', 'maml_robot.actuation',
              'maml_robot.kinematics', 'maml_robot.gravity', 'maml_robot.episodes',
              'maml_robot.stop_signals', 'maml_robot.atomic', 'maml_robot.settings')),
    ('scenario', ('maml_robot.scenario', 'maml_robot.scenario_reader',
                  'maml_robot.scenario_kinematics',
                  'maml_robot.scenario_control', 'maml_robot.scenario_dynamics',
                  'maml_robot.dynamics', 'maml_robot.observation_terms',
                  'maml_robot.observation')),
    ('sim/env', ('maml_robot.sim', 'maml_robot.envs')),
    ('sampler backends', ('maml_robot.sampling',)),
    ('sampler', ('maml_robot.sampler',)),
    ('policy', ('maml_robot.policy',)),
    ('meta-learner', ('maml_robot.meta',)),
    ('checkpoint', ('maml_robot.checkpoint', 'maml_robot.checkpoint_format',
                    'maml_robot.train_state')),
    ('training', ('maml_robot.meta.trainer', 'maml_robot.meta.run_folder',
                  'maml_robot.train_config')),
    ('evaluate', ('maml_robot.evaluate', 'maml_robot.operator_eval', 'maml_robot.baselines',
                  'maml_robot.baseline_store',
                  'maml_robot.sb3_bridge')),
    ('online adapter', ('maml_robot.online',)),
    ('ros nodes', ('maml_robot.ros',)),
    ('commands', ('maml_robot.commands', 'maml_robot.cli')),
)
"""The intended order (docs/ARCHITECTURE.md: scenario -> sim/env -> sampler -> meta-learner ->
checkpoint -> evaluate / node), refined: the Episodes data type (torch only), which the sampler
returns and the meta-learner consumes, at the base; the sampler's worker backends below the sampler
front-end; the policy network between sampler and meta-learner (the sampler runs a policy it is
given and never imports it); the trainer, which drives sampler, learner and checkpoints, above the
checkpoint; the online adapter below the ROS nodes; the CLI commands on top."""

KNOWN = {
    # (importer, imported): why it is upward, and what removes it. Empty since issue 19.
}
"""Known upward imports. Never add to this list: fix the import."""


def modules(root=ROOT):
    """Return ``{module name: source file}`` of every module of the package under ``root``."""
    found = {}
    for path in sorted((root / PACKAGE).rglob('*.py')):
        parts = path.relative_to(root).with_suffix('').parts
        found['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = path
    return found


def imports(name, path, known):
    """
    Return ``[(imported module, line)]`` of one module: top-level and function-level imports.

    ``from a import b`` counts as an import of ``a.b`` when that is a module, else of ``a``.
    """
    tree = ast.parse(path.read_text())
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.split('.')[:len(package.split('.')) - node.level + 1]
                base = '.'.join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f'{base}.{alias.name}'
                found.append((sub if sub in known else base, node.lineno))
    return [(target, line) for target, line in found
            if target == PACKAGE or target.startswith(PACKAGE + '.')]


def layer_of(module):
    """Return the index in LAYERS of the longest prefix naming ``module`` (None: unassigned)."""
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or (prefix != PACKAGE and module.startswith(prefix + '.')):
                if best is None or len(prefix) > len(best[1]):
                    best = (index, prefix)
    return None if best is None else best[0]


def upward_imports(root=ROOT):
    """Return ``{(importer, imported): 'file:line ...'}`` for every import against LAYERS."""
    known = modules(root)
    found = {}
    for name, path in known.items():
        for target, line in imports(name, path, known):
            low, high = layer_of(target), layer_of(name)
            if low is not None and high is not None and low > high:
                where = f'{path.relative_to(root)}:{line} ({LAYERS[high][0]} imports ' \
                        f'{LAYERS[low][0]})'
                found.setdefault((name, target), where)
    return found


def test_every_module_has_a_layer():
    missing = sorted(m for m in modules() if layer_of(m) is None)
    assert not missing, f'give these modules a layer in tests/test_layers.py LAYERS: {missing}'


def test_no_new_upward_import():
    found = upward_imports()
    for edge, where in sorted(found.items()):
        if edge in KNOWN:
            print(f'known layer violation {edge[0]} -> {edge[1]}: {where}; {KNOWN[edge]}')
    new = {edge: where for edge, where in found.items() if edge not in KNOWN}
    assert not new, 'upward imports (a lower layer must not import a higher one):\n' + \
        '\n'.join(f'  {a} -> {b}: {where}' for (a, b), where in sorted(new.items()))


def test_known_violations_still_exist():
    gone = sorted(set(KNOWN) - set(upward_imports()))
    assert not gone, f'these KNOWN edges are fixed: delete them from KNOWN: {gone}'


@pytest.mark.parametrize('source', [
    'from maml_robot.checkpoint import Checkpoint\n',
    'def f():\n    import maml_robot.meta.inner\n',
    'def f():\n    from maml_robot import checkpoint\n',
    'from ..meta import inner\n',
])
def test_an_upward_import_anywhere_in_a_module_is_caught(tmp_path, source):
    for name in ('__init__', 'checkpoint', 'meta/__init__', 'meta/inner', 'sim/__init__'):
        (tmp_path / PACKAGE / name).with_suffix('.py').parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / PACKAGE / name).with_suffix('.py').write_text('"""Stub."""\n')
    (tmp_path / PACKAGE / 'sim' / 'world.py').write_text(source)
    found = upward_imports(tmp_path)
    assert list(found) in ([('maml_robot.sim.world', 'maml_robot.checkpoint')],
                           [('maml_robot.sim.world', 'maml_robot.meta.inner')]), found
    assert 'maml_robot/sim/world.py:' in next(iter(found.values()))

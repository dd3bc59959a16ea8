"""The package layers (README "Layout"), enforced by reading every import with `ast`.

Imports point down the list of layers only. Every sub-package of `training/` is a method
package (expansion, blackbox, encoder, class_conditional, ... found on disk, so a new method fits
without editing this file); the GAN core (`training/*.py`) imports none of them, and a method
imports another method only where METHOD_DEPENDENCIES says so. No library module imports a
top-level script. Imports inside functions count too.
"""

import ast
import dataclasses
import os

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARY_PACKAGES = ('dnnlib', 'torch_utils', 'metrics', 'training', 'viewer_app')
RUN_PLANNING = ('training.launch', 'training.run_options')     # What train.py resolves and starts.
METHOD_DEPENDENCIES = {'encoder': {'expansion'}, 'class_conditional': {'expansion'}}                # Method -> methods it may build on.
# Old import paths kept as thin aliases (class names stored in training_options.json / configs):
# they belong to the method package they forward to.
ALIASES = {'training.expansion_loss': 'training.expansion', 'training.adaptation_tasks': 'training.expansion'}
FORBIDDEN_THIRD_PARTY = {'dnnlib': {'torch', 'torchvision', 'numpy'}}  # dnnlib is plain Python.


@dataclasses.dataclass(frozen=True)
class Layer:
    name: str
    prefixes: tuple     # Dotted module prefixes; the longest matching prefix over all layers decides.


def _method_packages() -> tuple:
    root = os.path.join(REPO_ROOT, 'training')
    return tuple(f'training.{name}' for name in sorted(os.listdir(root))
                 if os.path.isfile(os.path.join(root, name, '__init__.py')))


def _top_level_scripts() -> tuple:
    scripts = tuple(name[:-3] for name in os.listdir(REPO_ROOT) if name.endswith('.py'))
    return scripts + ('scripts',)


def layers() -> list:
    """Lowest first. A module may import its own layer and the ones below it."""
    return [
        Layer('dnnlib (plain Python)', ('dnnlib',)),
        Layer('torch_utils (torch plumbing)', ('torch_utils',)),
        Layer('metrics (metric machinery and registry)', ('metrics',)),
        Layer('training core (GAN: networks, losses, data, loop, snapshot I/O)', ('training',)),
        Layer('training method packages', _method_packages() + tuple(ALIASES)),
        Layer('run planning', RUN_PLANNING),
        Layer('viewer_app (library of the web viewer)', ('viewer_app',)),
        Layer('top-level scripts', _top_level_scripts()),
    ]


def layer_of(module: str, all_layers: list):
    """(layer index, matched prefix) of a dotted module name, or None for third-party modules."""
    best = None
    for index, layer in enumerate(all_layers):
        for prefix in layer.prefixes:
            if (module == prefix or module.startswith(prefix + '.')) and (best is None or len(prefix) > len(best[1])):
                best = (index, prefix)
    return best


def module_name(path: str) -> str:
    rel = os.path.relpath(path, REPO_ROOT)[:-3].replace(os.sep, '.')
    return rel[:-len('.__init__')] if rel.endswith('.__init__') else rel


def _resolve_from(module: str, node: ast.ImportFrom, is_package: bool) -> list:
    """Dotted names an `ImportFrom` brings in: `from a import b` is `a.b` when `a/b(.py)` exists."""
    base = node.module or ''
    if node.level:
        parts = module.split('.')
        parts = parts if is_package else parts[:-1]
        parts = parts[:len(parts) - (node.level - 1)]
        base = '.'.join(parts + ([node.module] if node.module else []))
    names = []
    for alias in node.names:
        candidate = os.path.join(REPO_ROOT, *base.split('.'), alias.name)
        is_module = os.path.isfile(candidate + '.py') or os.path.isfile(os.path.join(candidate, '__init__.py'))
        names.append(f'{base}.{alias.name}' if is_module else base)
    return names


def imports_of(path: str) -> list:
    """(line, imported dotted module) for every import statement in the file."""
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), filename=path)
    module, is_package = module_name(path), path.endswith('__init__.py')
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found += [(node.lineno, name) for name in _resolve_from(module, node, is_package)]
    return found


def library_files() -> list:
    files = []
    for package in LIBRARY_PACKAGES:
        for folder, dirs, names in os.walk(os.path.join(REPO_ROOT, package)):
            dirs[:] = sorted(d for d in dirs if not d.startswith(('.', '__pycache__')))
            files += [os.path.join(folder, name) for name in sorted(names) if name.endswith('.py')]
    return files


def violations(path: str, all_layers: list) -> list:
    """Human-readable rule violations of one library file."""
    module = module_name(path)
    source = layer_of(module, all_layers)
    assert source is not None, f'{module} is in no layer'
    problems = []
    for line, target in imports_of(path):
        where = f'{os.path.relpath(path, REPO_ROOT)}:{line} imports {target}'
        forbidden = FORBIDDEN_THIRD_PARTY.get(source[1].split('.')[0], set())
        if target.split('.')[0] in forbidden:
            problems.append(f'{where}: {all_layers[source[0]].name} may not import {target.split(".")[0]}')
        dest = layer_of(target, all_layers)
        if dest is None:
            continue
        if dest[0] > source[0]:
            problems.append(f'{where}: {all_layers[source[0]].name} may not import {all_layers[dest[0]].name}')
        elif dest[0] == source[0] and all_layers[dest[0]].name == 'training method packages' and dest[1] != source[1]:
            mine, theirs = (ALIASES.get(prefix, prefix).split('.')[1] for prefix in (source[1], dest[1]))
            if mine == theirs:
                continue
            if theirs not in METHOD_DEPENDENCIES.get(mine, set()):
                problems.append(f'{where}: method package {mine} may not import method package {theirs} '
                                f'(allowed: METHOD_DEPENDENCIES)')
    return problems


def test_library_imports_point_down_the_layers():
    all_layers = layers()
    problems = [problem for path in library_files() for problem in violations(path, all_layers)]
    assert not problems, '\n'.join(problems)


@pytest.mark.parametrize('source, target, allowed', [
    ('training.training_loop', 'training.expansion.loss', False),   # core -> method
    ('training.expansion.loss', 'training.loss', True),             # method -> core
    ('training.expansion.loss', 'training.blackbox.loss', False),   # method -> other method
    ('training.encoder.model', 'training.expansion.basis', True),   # the encoder builds on expansion
    ('metrics.metric_main', 'training.networks', False),            # metrics sit below training
    ('torch_utils.misc', 'dnnlib.util', True),
    ('dnnlib.util', 'torch_utils.misc', False),
    ('training.snapshot_io', 'legacy', False),                      # library -> top-level script
    ('viewer_app.model', 'generate', False),
    ('viewer_app.model', 'training.expansion.expanded_generator', True),
])
def test_rules_on_synthetic_imports(tmp_path, monkeypatch, source, target, allowed):
    """The checker itself: a file placed at `source` that imports `target` passes or fails as it should."""
    all_layers = layers()
    if layer_of('training.encoder', all_layers)[1] != 'training.encoder':    # not on disk yet
        all_layers[4] = Layer(all_layers[4].name, all_layers[4].prefixes + ('training.encoder', 'training.blackbox'))
    path = os.path.join(REPO_ROOT, *source.split('.')) + '.py'
    monkeypatch.setitem(globals(), 'imports_of', lambda _path: [(1, target)])
    assert (violations(path, all_layers) == []) == allowed


def test_dnnlib_imports_no_torch(monkeypatch):
    path = os.path.join(REPO_ROOT, 'dnnlib', 'util.py')
    monkeypatch.setitem(globals(), 'imports_of', lambda _path: [(1, 'torch.nn')])
    assert any('may not import torch' in p for p in violations(path, layers()))

"""Every file our library and tools write is written atomically (issue 9, item 4), read from the
sources with `ast`: a call that creates or replaces a file (`open(..., 'w'/'wb'/'x')`,
`torch.save`, `np.save*`, `Path.write_text/bytes`) must write to the temporary path that
`dnnlib.util.atomic_write_path` (or `create_temp_file_beside`) hands out, or go through
`dnnlib.util.write_text_atomic` / `write_json_atomic`. Appends (`'a'`) are only for the
line-by-line logs listed below, each a whole line per write, flushed."""

import ast
import os

import pytest

from conftest import REPO_ROOT

SCANNED = ('dnnlib', 'torch_utils', 'metrics', 'training', 'viewer_app', 'scripts')  # plus top-level *.py
ATOMIC_FACTORIES = ('atomic_write_path', 'create_temp_file_beside', 'create_temp_dir_beside')
# (file, function) -> why a plain append is right there: one whole line per write, then flush.
APPENDS = {
    ('training/logging_sinks.py', '__init__'): 'log.txt (RunLog) and stats.jsonl (JsonlSink): a line per write, flushed',
    ('metrics/metric_main.py', 'report_metric'): 'metric-<name>.jsonl: one JSON line per evaluation',
    ('training/blackbox/pipeline.py', 'train_latent_sampler'): "the sampler's stats.jsonl: one JSON line per report",
    ('dnnlib/util.py', 'append_line'): 'the one helper for such appends: one whole line per write',
}
# (file, function) -> why a non-atomic write is right there.
EXEMPT = {
    ('training/dataset.py', '_write'): 'writes inside a temporary folder that is renamed into place as a whole',
    ('scripts/fuzz.py', '_run_safetensors'): 'a fuzz input written into the fuzzer\'s scratch folder',
    ('scripts/fuzz.py', '_run_config'): 'a fuzz input written into the fuzzer\'s scratch folder',
    ('scripts/fuzz.py', '_run_dataset'): 'a fuzz input written into the fuzzer\'s scratch folder',
    ('scripts/report.py', 'make_report'): 'imports no project module (runs from anywhere): its own temp file + os.replace',
    ('scripts/fuzz.py', '_save_crash'): "the fuzzer's crash corpus (a debugging aid, rewritten at will)",
}


def _sources() -> list:
    paths = [name for name in os.listdir(REPO_ROOT) if name.endswith('.py')]
    for package in SCANNED:
        for root, dirs, files in os.walk(os.path.join(REPO_ROOT, package)):
            dirs[:] = [d for d in dirs if d not in ('__pycache__',)]
            paths += [os.path.relpath(os.path.join(root, f), REPO_ROOT) for f in files if f.endswith('.py')]
    return sorted(paths)


def _callee(node: ast.Call) -> str:
    """'open', 'torch.save', 'np.savez', '.write_text', ... (the last two dotted parts)."""
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        base = func.value.id if isinstance(func.value, ast.Name) else ''
        return f'{base}.{func.attr}'
    return ''


def _open_mode(node: ast.Call) -> str | None:
    mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == 'mode'), None)
    if mode is None:
        return 'r'
    return mode.value if isinstance(mode, ast.Constant) and isinstance(mode.value, str) else None


def _is_factory(node) -> bool:
    return isinstance(node, ast.Call) and _callee(node).rsplit('.', 1)[-1] in ATOMIC_FACTORIES


def _safe_names(function: ast.AST) -> set:
    """Names in `function` that hold an atomic temporary path, a file opened on one, or a memory buffer."""
    safe = set()
    for _ in range(2):  # a file handle opened on a temporary path is found on the second pass
        for node in ast.walk(function):
            if isinstance(node, ast.withitem) and isinstance(node.optional_vars, ast.Name):
                expr = node.context_expr
                opened_on_safe = (isinstance(expr, ast.Call) and _callee(expr) == 'open' and expr.args
                                  and isinstance(expr.args[0], ast.Name) and expr.args[0].id in safe)
                if _is_factory(expr) or opened_on_safe:
                    safe.add(node.optional_vars.id)
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                value = node.value
                if _is_factory(value) or (isinstance(value, ast.Call) and _callee(value) in ('io.BytesIO', 'BytesIO')):
                    safe.add(node.targets[0].id)
    return safe


def _target(node: ast.Call, callee: str):
    if callee == 'torch.save':
        return node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == 'f'), None)
    if callee.endswith('.write_text') or callee.endswith('.write_bytes'):
        return node.func.value
    return node.args[0] if node.args else None


def _violations(path: str) -> list:
    with open(os.path.join(REPO_ROOT, path), encoding='utf-8') as f:
        tree = ast.parse(f.read(), filename=path)
    found = []
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for function in functions:
        safe = _safe_names(function)
        for node in ast.walk(function):
            if not isinstance(node, ast.Call):
                continue
            callee = _callee(node)
            writes = callee in ('torch.save', 'np.save', 'np.savez', 'np.savez_compressed', 'np.savetxt') \
                or callee.endswith('.write_text') or callee.endswith('.write_bytes')
            appends = False
            if callee == 'open':
                mode = _open_mode(node)
                if mode is None or any(c in mode for c in 'wx+'):
                    writes = True
                elif 'a' in mode:
                    appends = True
            if not (writes or appends):
                continue
            key = (path, function.name)
            if appends and key in APPENDS:
                continue
            if key in EXEMPT:
                continue
            target = _target(node, callee)
            if writes and isinstance(target, ast.Name) and target.id in safe:
                continue
            found.append(f'{path}:{node.lineno} {function.name}: {callee}(...)'
                         + (' appends outside the allowed logs' if appends else ' writes in place'))
    return found


def test_every_file_is_written_atomically():
    violations = [v for path in _sources() for v in _violations(path)]
    assert not violations, ('write these through dnnlib.util.write_text_atomic / write_json_atomic / '
                            'atomic_write_path:\n' + '\n'.join(violations))


def test_allow_lists_name_real_places():
    # A renamed function must not leave a stale exemption behind.
    for path, function in list(APPENDS) + list(EXEMPT):
        with open(os.path.join(REPO_ROOT, path), encoding='utf-8') as f:
            names = {n.name for n in ast.walk(ast.parse(f.read())) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        assert function in names, (path, function)


@pytest.mark.parametrize('source, bad', [
    ("def f(p):\n    with open(p, 'w') as f:\n        f.write('x')\n", True),
    ("def f(p):\n    torch.save(1, p)\n", True),
    ("def f(p):\n    with dnnlib.util.atomic_write_path(p) as tmp, open(tmp, 'wb') as f:\n        np.save(f, 1)\n", False),
    ("def f(p):\n    with dnnlib.util.atomic_write_path(p) as tmp:\n        torch.save(1, tmp)\n", False),
    ("def f(p):\n    with open(p, 'a') as f:\n        f.write('x')\n", True),
    ("def f(p):\n    with open(p) as f:\n        return f.read()\n", False),
])
def test_the_scanner_tells_atomic_from_in_place(tmp_path, monkeypatch, source, bad):
    monkeypatch.setattr('test_atomic_writes_everywhere.REPO_ROOT', str(tmp_path))
    (tmp_path / 'x.py').write_text(source)
    assert bool(_violations('x.py')) is bad

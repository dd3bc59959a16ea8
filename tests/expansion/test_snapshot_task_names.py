"""Names stored in a snapshot are never imported (issue 9 item 2): a dotted task type in a
snapshot's expansion_cfg is refused by the tools unless the user passes --allow-task-import."""

import subprocess
import sys

import pytest
import torch

from conftest import REPO_ROOT
from expanded_toy import save_toy_snapshot
from training.expansion.config import TaskImportRefusedError, parse_expansion_config
from training.expansion.evaluation import expansion_inputs
from metrics import metric_utils

HOSTILE_CFG = {'tasks': [{'type': 'this.Task', 'dimension': 7}]}

# Runs a tool's click command in a fresh interpreter, then reports whether `this` was imported.
PROBE = '''
import sys
import dnnlib
import {module} as tool
try:
    dnnlib.util.run_cli(tool.main, sys.argv[1:])
    code = 0
except SystemExit as e:
    code = e.code
print('imported this:', 'this' in sys.modules)
sys.exit(code)
'''


def _probe(module, args):
    proc = subprocess.run([sys.executable, '-c', PROBE.format(module=module), *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout.strip().splitlines(), proc.stderr.strip().splitlines()


@pytest.mark.parametrize('module, extra', [
    ('generate_aligned', ['--seeds', '0', '--outdir', 'OUT']),
    ('traverse', ['--seeds', '0', '--outdir', 'OUT', '--domain', '7']),
    ('calc_metrics', ['--metrics', 'clip_error_tiny', '--tiny-items', '2']),
])
def test_tools_refuse_dotted_task_types_from_snapshots(tmp_path, module, extra):
    pkl = tmp_path / 'hostile.pkl'
    save_toy_snapshot(pkl, expansion_cfg=HOSTILE_CFG)
    out = tmp_path / 'out'
    code, stdout, stderr = _probe(module, ['--network', str(pkl), *[str(out) if a == 'OUT' else a for a in extra]])
    assert code not in (0, None), (stdout, stderr)
    assert stdout[-1] == 'imported this: False'
    assert "'this.Task'" in stderr[-1] and '--allow-task-import' in stderr[-1]
    assert 'Traceback' not in '\n'.join(stderr)
    assert not out.exists()


def test_allow_task_import_is_the_users_explicit_say_so(tmp_path):
    pkl = tmp_path / 'hostile.pkl'
    save_toy_snapshot(pkl, expansion_cfg=HOSTILE_CFG)
    out = tmp_path / 'out'
    code, stdout, stderr = _probe('generate_aligned', ['--network', str(pkl), '--seeds', '0', '--outdir', str(out),
                                                       '--no-grid', '--allow-task-import'])
    # Imported on request; `this` has no Task class, so the domain falls back to its dimension name.
    assert code == 0, (stdout, stderr)
    assert stdout[-1] == 'imported this: True'
    assert (out / 'dim007').is_dir() or any(p.name.startswith('dim007') for p in out.iterdir())


def test_registered_types_and_user_configs_still_resolve():
    # A snapshot's registered type resolves without the flag; a user's config may name a dotted class.
    cfg = parse_expansion_config({'tasks': [{'type': 'Transform', 'args': {'transform': 'negative'}}]}, 8,
                                 allow_task_import=False)
    assert cfg.tasks[0].task_class.__name__ == 'Transform'
    dotted = {'tasks': [{'type': 'training.expansion.tasks.Transform', 'args': {'transform': 'negative'}}]}
    assert parse_expansion_config(dotted, 8).tasks[0].task_class.__name__ == 'Transform'
    with pytest.raises(TaskImportRefusedError, match='tasks_losses key'):
        parse_expansion_config({'tasks_losses': {'x.Y\nZ': {}}}, 8, allow_task_import=False)


def test_metrics_refuse_dotted_task_types(tmp_path):
    info = dict(latent_basis=torch.eye(8), repurposed_dims=torch.tensor([7], dtype=torch.int32),
                subspace_distance=5.0, expansion_cfg=HOSTILE_CFG)
    with pytest.raises(TaskImportRefusedError, match='--allow-task-import'):
        expansion_inputs(metric_utils.MetricOptions(device='cpu', extra=dict(expansion=info)), 'clip_error_tiny')
    assert 'this' not in sys.modules

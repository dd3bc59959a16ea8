"""scripts/report.py: the run directory's HTML page."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from conftest import REPO_ROOT
from scripts import report


def _stat(mean, std=0.0, num=4):
    return {'num': num, 'mean': mean, 'std': std}


def _fake_run(run_dir: Path) -> Path:
    """A run directory as train.py writes it: stats, metrics, grids, configs."""
    run_dir.mkdir()
    ticks = []
    for tick in range(4):
        ticks.append({'Loss/G/loss': _stat(2.0 - 0.25 * tick, 0.1), 'Loss/D/loss': _stat(1.0 + 0.125 * tick),
                      'Loss/domain/sketch': _stat(0.5 / (tick + 1)), 'Loss/domain/pixar': _stat(0.25 / (tick + 1)),
                      'Progress/kimg': _stat(0.004 + 0.08 * tick, num=1), 'Progress/tick': _stat(float(tick), num=1),
                      'timestamp': 1795650000.0 + tick})
    with open(run_dir / 'stats.jsonl', 'w') as f:
        f.write(''.join(json.dumps(t) + '\n' for t in ticks))
        f.write('{"Loss/G/loss": {"num"')                   # a tick being written right now
    with open(run_dir / 'metric-fid50k_full.jsonl', 'w') as f:
        for kimg, fid in [('000000.004', 123.456789), ('000000.244', 45.25)]:
            f.write(json.dumps({'results': {'fid50k_full': fid}, 'metric': 'fid50k_full', 'total_time': 1.0,
                                'snapshot_pkl': f'network-snapshot-{kimg}.pkl', 'timestamp': 1.0}) + '\n')
    cfg = {'tasks': [{'type': 'Transform', 'dimension': 511, 'args': {'transform': 'grayscale'}},
                     {'type': 'NADA', 'dimension': 510, 'args': {'source_text': 'photo', 'target_text': 'sketch'}}]}
    (run_dir / 'expansion_cfg.json').write_text(json.dumps(cfg))
    (run_dir / 'training_options.json').write_text(json.dumps({'batch_size': 8, 'total_kimg': 0.25, 'run_dir': str(run_dir)}))
    for name in ('fakes_init.png', 'reals.png', 'fakes000000.004.png', 'fakes000000.244.png', 'expansion000000.244.png'):
        PIL.Image.fromarray(np.zeros([8, 8, 3], dtype=np.uint8)).save(run_dir / name)
    return run_dir


def test_report_contains_config_metrics_plots_and_grids(tmp_path):
    run_dir = _fake_run(tmp_path / '00000-run')
    path = report.make_report(str(run_dir))
    assert path == str(run_dir / 'report.html')
    page = Path(path).read_text()
    # Expansion config: task table and the raw JSON.
    assert '<td>Transform</td>' in page and '<td>511</td>' in page and '<td>510</td>' in page and 'grayscale' in page
    assert 'expansion_cfg.json' in page
    # Metrics: one row per snapshot, values formatted.
    assert 'network-snapshot-000000.004.pkl' in page and '123.457' in page and '45.25' in page
    # Plots: one per group, referenced relatively, non-empty PNGs.
    for group in ('Loss_D', 'Loss_G', 'Loss_domain', 'Progress'):
        plot = run_dir / 'report_files' / f'stats_{group}.png'
        assert f'src="report_files/stats_{group}.png"' in page
        with PIL.Image.open(plot) as img:
            assert img.format == 'PNG' and img.size[0] > 100
    assert sorted(os.listdir(run_dir / 'report_files')) == sorted(
        f'stats_{g}.png' for g in ('Loss_D', 'Loss_G', 'Loss_domain', 'Progress'))
    # Grids: newest snapshot first, its expansion grid beside it, start-of-training images last.
    order = [page.index(f'src="{name}"') for name in
             ('expansion000000.244.png', 'fakes000000.244.png', 'fakes000000.004.png', 'fakes_init.png', 'reals.png')]
    assert order == sorted(order)
    assert 'kimg 0.244' in page and '4 ticks, last at kimg 0.244' in page


def test_groups_and_training_options_fallback(tmp_path):
    ticks = [{'Loss/G/loss': _stat(1.0), 'Loss/domain/a': _stat(2.0), 'Timing/sec': _stat(3.0), 'timestamp': 1.0,
              'Progress/kimg': _stat(0.0)}]
    assert report.stat_groups(ticks) == {'Loss/G': ['Loss/G/loss'], 'Loss/domain': ['Loss/domain/a'],
                                         'Timing': ['Timing/sec']}
    assert report.tick_x(ticks + [{'Loss/G/loss': _stat(1.0)}]) == ([0.0, 1.0], 'tick')    # kimg missing: tick index
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    cfg = {'tasks': [{'type': 'Transform', 'dimension': 7, 'args': {'transform': 'negative'}}]}
    (run_dir / 'training_options.json').write_text(json.dumps({'loss_kwargs': {'expansion_cfg': cfg}}))
    assert report.read_expansion_config(str(run_dir)) == (cfg, 'training_options.json: loss_kwargs.expansion_cfg')


def test_missing_stats_is_a_clear_error(tmp_path):
    run_dir = tmp_path / 'empty_run'
    run_dir.mkdir()
    with pytest.raises(report.ReportError, match='no stats.jsonl'):
        report.make_report(str(run_dir))
    assert not (run_dir / 'report.html').exists() and not (run_dir / 'report_files').exists()
    with pytest.raises(report.ReportError, match='no such run directory'):
        report.make_report(str(tmp_path / 'nowhere'))
    (run_dir / 'stats.jsonl').write_text('{"a": 1}\nnot json\n{"b": 2}\n')
    with pytest.raises(report.ReportError, match='line 2 is not JSON'):
        report.make_report(str(run_dir))


@pytest.mark.parametrize('form', ['module', 'script'])
def test_command_line_both_forms(tmp_path, form):
    run_dir = _fake_run(tmp_path / 'run')
    command = [sys.executable, '-m', 'scripts.report'] if form == 'module' else [sys.executable, 'scripts/report.py']
    done = subprocess.run(command + [str(run_dir)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str((run_dir / 'report.html').resolve())
    bad = subprocess.run(command + [str(tmp_path / 'missing')], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith('Error: ') and 'Traceback' not in bad.stderr

"""Progress output: tick lines give the time left (ETA); the demo prints a one-line options summary
and keeps the network tables in log.txt."""

import os
import types

import pytest
import torch

from training import training_loop
from training.loop_snapshot import Progress


def _tick_line(cur_nimg: int, total_kimg: float, tick_sec: float, tick_kimg: float) -> str:
    lines = []
    ctx = types.SimpleNamespace(
        progress=Progress(cur_nimg=cur_nimg, cur_tick=3), opts=types.SimpleNamespace(total_kimg=total_kimg),
        start_time=0.0, tick_start_time=100.0, maintenance_time=0.0, fractional_kimg=False,
        device=torch.device('cpu'), augment_pipe=None, log=lines.append)
    training_loop._report_tick(ctx, tick_end_time=100.0 + tick_sec, tick_kimg=tick_kimg)
    return lines[0]


def test_eta_is_remaining_kimg_at_the_tick_pace():
    # 4 kimg took 120 s (30 s/kimg); 100 kimg of 1000 done: 900 kimg left = 27000 s = 7h 30m 00s.
    line = _tick_line(cur_nimg=100_000, total_kimg=1000, tick_sec=120, tick_kimg=4)
    assert 'eta 7h 30m 00s' in line and line.startswith('tick 3 ')
    assert 'eta 0s' in _tick_line(cur_nimg=1_000_000, total_kimg=1000, tick_sec=120, tick_kimg=4)  # the last tick


def test_options_summary_is_one_line_naming_the_key_options(tmp_path):
    """What the demo prints instead of the full options (launch_training(print_options=False))."""
    from training import launch, run_options
    from training.synthetic_data import make_synthetic_dataset
    data = make_synthetic_dataset(str(tmp_path / 'd.zip'), 8, 16, seed=0)
    options = run_options.setup_training_options(outdir=str(tmp_path / 'runs'), data=data, cfg='tiny', batch=4,
                                                 kimg=0.5, metrics='none')
    line = launch.options_summary(options)
    assert '\n' not in line and len(line) < 300
    for part in ('StyleGAN2Loss', '0.5 kimg', 'batch 4', str(data), 'training_options.json'):
        assert part in line, part


@pytest.mark.parametrize('print_options', [False, True])
def test_brief_console_keeps_network_tables_in_the_log_only(tmp_path, capsys, print_options):
    """launch_training(print_options=False) (the demo): no option dump and no G/D tables on the
    console; log.txt has the tables either way."""
    from training import launch, run_options
    from training.synthetic_data import make_synthetic_dataset
    data = make_synthetic_dataset(str(tmp_path / 'd.zip'), 8, 16, seed=0)
    options = run_options.setup_training_options(outdir=str(tmp_path / 'runs'), data=data, cfg='tiny', batch=4,
                                                 kimg=0.004, tick=0.004, snap=1, metrics='none', aug='noaug',
                                                 workers=0)
    options.logging['tensorboard'] = False
    capsys.readouterr()
    summary = launch.launch_training(options, str(tmp_path / 'runs'), print_options=print_options)
    console = capsys.readouterr().out
    with open(os.path.join(summary['run_dir'], 'log.txt')) as f:
        log = f.read()
    table_header = 'Module  '  # first cell of each table's header row
    assert log.count(table_header) == 2 and 'Total' in log  # G_ema and D
    assert console.count(table_header) == (2 if print_options else 0)
    assert ('"G_kwargs"' in console) == print_options  # the full options dump
    assert 'tick 0' in console and 'Exiting...' in console

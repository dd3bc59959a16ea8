"""Training tick lines give the time left (ETA) at the tick's pace."""

import types

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

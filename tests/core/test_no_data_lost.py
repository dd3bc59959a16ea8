"""Nothing a user ran is lost (issue 9, item 4): re-running a finished command keeps every
stats.jsonl line, a matching run without a snapshot is never started over in place, and the
rule that trims records written after the continued snapshot compares exact image counts."""

import json
import os

import numpy as np
import pytest

from torch_utils import training_stats
from training import launch, loop_state, run_options
from training.synthetic_data import make_synthetic_dataset

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def data16(tmp_path_factory):
    return make_synthetic_dataset(str(tmp_path_factory.mktemp('data') / 'shapes16.zip'), num_images=16,
                                  resolution=16, seed=3)


def _options(data, outdir, **flags):
    flags = dict(dict(cfg='tiny', metrics='none', workers=0, snap=1), **flags)
    return run_options.setup_training_options(data=data, outdir=str(outdir), **flags)


def _reported_kimg_record(cur_nimg: int, as_float32: bool) -> dict:
    """A stats.jsonl line as the tick reporting writes it (float64 now; float32 in older runs)."""
    training_stats.reset_all()
    value = np.float32(cur_nimg / 1000) if as_float32 else np.float64(cur_nimg / 1000)
    training_stats.report0('Progress/kimg', value)
    collector = training_stats.Collector(regex='.*')
    collector.update()
    record = json.loads(json.dumps(dict(collector.as_dict(), timestamp=0.0)))
    training_stats.reset_all()
    return record


@pytest.mark.parametrize('as_float32', [False, True])
def test_stats_lines_compare_exact_image_counts(as_float32):
    # 100 images: float32(0.1) > 0.1 + 1e-9, which made the old comparison drop the snapshot's own tick.
    for snapshot_nimg in [100, 4, 12, 2000, 1234567]:
        label = loop_state.kimg_label(snapshot_nimg, fractional=True)
        for nimg, kept in [(snapshot_nimg, True), (snapshot_nimg - 4, True), (snapshot_nimg + 4, False)]:
            record = _reported_kimg_record(nimg, as_float32)
            assert loop_state.stats_record_at_or_before(record, label) is kept, (snapshot_nimg, nimg, as_float32)
    # Whole-kimg names (ticks >= 1 kimg apart): the tick at 4032 images wrote network-snapshot-000004.pkl.
    label = loop_state.kimg_label(4032, fractional=False)
    assert loop_state.stats_record_at_or_before(_reported_kimg_record(4032, as_float32), label)
    assert loop_state.stats_record_at_or_before(_reported_kimg_record(3024, as_float32), label)
    assert not loop_state.stats_record_at_or_before(_reported_kimg_record(5040, as_float32), label)
    assert loop_state.stats_record_at_or_before({'timestamp': 1.0}, label)  # no Progress/kimg: kept


def test_metric_lines_compare_snapshot_names():
    label = loop_state.kimg_label(100, fractional=True)
    line = lambda nimg: dict(metric='fid', snapshot_pkl=f'network-snapshot-{loop_state.kimg_label(nimg, True)}.pkl')
    assert loop_state.metric_record_at_or_before(line(100), label)
    assert loop_state.metric_record_at_or_before(line(96), label)
    assert not loop_state.metric_record_at_or_before(line(104), label)
    assert loop_state.metric_record_at_or_before(dict(metric='fid', snapshot_pkl=None), label)


def _read(path):
    with open(path, 'rb') as f:
        return f.read()


def test_rerunning_a_finished_command_keeps_every_line(tmp_path, data16):
    outdir = tmp_path / 'out'
    # 32 images: float32(0.032) > 0.032 + 1e-9, so the old rule dropped this snapshot's own tick.
    first = launch.launch_training(_options(data16, outdir, kimg=0.032, tick=0.032), str(outdir))
    run_dir = first['run_dir']
    # A metric line for the last snapshot, as metric_main.report_metric writes it.
    metric_line = json.dumps(dict(results=dict(fid_tiny=1.0), metric='fid_tiny',
                                  snapshot_pkl=os.path.basename(first['last_snapshot']), timestamp=0.0))
    with open(os.path.join(run_dir, 'metric-fid_tiny.jsonl'), 'at') as f:
        f.write(metric_line + '\n')
    before = {name: _read(os.path.join(run_dir, name)) for name in ('stats.jsonl', 'metric-fid_tiny.jsonl')}
    assert len(before['stats.jsonl'].splitlines()) == 2  # tick 0 (after the first step) and the end

    again = launch.launch_training(_options(data16, outdir, kimg=0.032, tick=0.032), str(outdir))
    assert again['run_dir'] == run_dir and again['cur_nimg'] == first['cur_nimg'] == 32
    for name, data in before.items():
        assert _read(os.path.join(run_dir, name)) == data, name


def test_restart_without_snapshot_keeps_the_earlier_attempt(tmp_path, data16):
    outdir = tmp_path / 'out'
    options = _options(data16, outdir, kimg=0.004, tick=0.004)
    # An earlier attempt of the same command that stopped before its first snapshot.
    plan = launch.plan_run(options, str(outdir))
    assert plan['mode'] == 'new'
    launch.prepare_run_dir(dict(options, run_dir=plan['run_dir']), plan, command='train.py (first attempt)')
    earlier = {'stats.jsonl': b'{"Progress/kimg": {"num": 1, "mean": 0.004, "std": 0.0}}\n',
               'metric-fid50k_full.jsonl': b'{"metric": "fid50k_full", "snapshot_pkl": null}\n'}
    for name, data in earlier.items():
        with open(os.path.join(plan['run_dir'], name), 'wb') as f:
            f.write(data)

    again = launch.plan_run(options, str(outdir))
    assert again['mode'] == 'new' and again['continue_pkl'] is None
    assert again['run_dir'] == loop_state.next_run_dir(str(outdir), options['desc']) != plan['run_dir']
    result = launch.launch_training(options, str(outdir))
    assert result['run_dir'] == again['run_dir'] and result['cur_nimg'] == 4
    for name, data in earlier.items():
        assert _read(os.path.join(plan['run_dir'], name)) == data, name
    assert [p for _, p in loop_state.list_run_dirs(str(outdir))] == [plan['run_dir'], again['run_dir']]

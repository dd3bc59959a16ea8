"""`demo.py --generator sg3`: the demo on the shipped StyleGAN3 generator, with very few steps."""

import json
import os

import pytest
from click.testing import CliRunner

import demo
from training import networks_stylegan3

pytestmark = pytest.mark.usefixtures('one_thread')


def test_sg3_demo_writes_metrics_without_the_class_conditional_baseline(tmp_path, capsys):
    source = demo.load_source(demo.GENERATORS['sg3']['pkl'])['G_ema']
    assert type(source) is networks_stylegan3.Generator
    path = demo.run_demo(str(tmp_path / 'demo_out'), steps=2, batch=4, num_eval_latents=4,
                         transforms=['negative', 'hflip'], mystyle=False, generator='sg3')
    assert 'Note: class-conditional baseline skipped' in capsys.readouterr().out
    with open(path) as f:
        metrics = json.load(f)
    assert 'StyleGAN3' in metrics['generator'] and metrics['steps'] == 2
    assert metrics['class_conditional'] is None and metrics['class_conditional_snapshot'] is None
    assert 'StyleGAN2 mapping' in metrics['class_conditional_note']
    assert set(metrics['base']) == {'expanded', 'finetune_baseline'}
    assert set(metrics['seconds_by_run']) == {'expanded', 'finetune_baseline'}
    for run in metrics['base'].values():
        assert set(run) == {'l2', 'lpips'} and all(v >= 0 for v in run.values())
    names = ['negative', 'hflip']
    assert list(metrics['domains']) == names
    # The most dormant directions of the StyleGAN3 generator's W, in task order.
    assert [metrics['domains'][n]['dimension'] for n in names] == [source.w_dim - 1 - k for k in range(2)]
    for name in names:
        entry = metrics['domains'][name]
        assert entry['error_before'] > 0 and entry['error_after'] > 0
        assert sorted(entry['on_other_subspaces']) == sorted(set(names) - {name})
        assert entry['r2_before'] <= 1 and entry['r2_after'] <= 1
    with open(os.path.join(os.path.dirname(metrics['expanded_snapshot']), 'training_options.json')) as f:
        assert json.load(f)['resume_pkl'] == demo.GENERATORS['sg3']['pkl']
    table = demo.summary_table(metrics)
    assert '| negative |' in table and table.count('- | - | - |') == len(names)
    assert os.path.getsize(os.path.join(os.path.dirname(path), 'aligned_grid.png')) > 0


def test_generator_flag_is_checked_before_any_work(tmp_path):
    result = CliRunner().invoke(demo.main, ['--outdir', str(tmp_path / 'out'), '--generator', 'sg4'])
    assert result.exit_code != 0 and "'sg4' is not one of 'sg2', 'sg3'" in result.output
    assert not (tmp_path / 'out').exists()

"""demo.py end to end with very few steps: metrics.json follows interfaces.md section 5."""

import json
import os

import pytest

import demo
import dnnlib


def test_demo_writes_metrics_and_grid(tmp_path):
    path = demo.run_demo(str(tmp_path / 'demo_out'), steps=2, batch=4, num_eval_latents=4)
    assert path == str(tmp_path / 'demo_out' / '00000' / 'metrics.json')
    with open(path) as f:
        metrics = json.load(f)
    assert metrics['steps'] == 2 and metrics['batch'] == 4 and metrics['seconds'] > 0
    assert metrics['lpips_backbone'] in ('alex', 'random-init (offline)')
    assert os.path.isabs(metrics['expanded_snapshot']) and os.path.exists(metrics['expanded_snapshot'])
    assert os.path.isabs(metrics['expansion_cfg']) and os.path.exists(metrics['expansion_cfg'])
    for run in ('expanded', 'finetune_baseline', 'class_conditional'):
        assert set(metrics['base'][run]) == {'l2', 'lpips'}
        assert all(isinstance(v, float) and v >= 0 for v in metrics['base'][run].values())
    names = ['grayscale', 'negative', 'hue_shift', 'sepia_person']
    assert list(metrics['domains']) == names
    dims = [metrics['domains'][n]['dimension'] for n in names]
    w_dim = demo.load_source()['G_ema'].w_dim
    assert dims == [w_dim - 1 - k for k in range(4)]  # the most dormant directions of W, in task order
    assert metrics['settings'] == demo.DEMO_SETTINGS
    with open(os.path.join(os.path.dirname(metrics['expanded_snapshot']), 'training_options.json')) as f:
        G_opt = json.load(f)['G_opt_kwargs']             # the demo's settings reached the G optimizer
    assert G_opt['lr'] == demo.DEMO_SETTINGS['glr'] and G_opt['affine_lr_mult'] == demo.DEMO_SETTINGS['affine_lr_mult']
    for run in ('expanded', 'class_conditional'):       # both start from G_ema and replay with shared noise
        pkl = metrics['expanded_snapshot'] if run == 'expanded' else metrics['class_conditional_snapshot']
        with open(os.path.join(os.path.dirname(pkl), 'training_options.json')) as f:
            options = json.load(f)
        assert options['resume_from_ema'] is True and options['loss_kwargs']['replay_noise'] == 'shared', run
    for name in names:
        entry = metrics['domains'][name]
        assert entry['type'] == ('MyStyle' if name == 'sepia_person' else 'Transform')
        assert entry['error_before'] > 0 and entry['error_after'] > 0
        assert sorted(entry['on_other_subspaces']) == sorted(set(names) - {name})
        cc = metrics['class_conditional']['domains'][name]
        assert cc['error_before'] > 0 and cc['error_after'] > 0
        assert sorted(cc['on_other_classes']) == sorted(set(names) - {name})
        transform = name != 'sepia_person'
        for section in (entry, cc):
            assert ('r2_before' in section and 'r2_after' in section) == transform
            if transform:
                assert section['r2_before'] <= 1 and section['r2_after'] <= 1
    # Before training every class of the graft renders the parent's image: far from T(image).
    assert metrics['class_conditional']['domains']['grayscale']['r2_before'] < 0.5
    table = demo.summary_table(metrics)
    assert '| grayscale |' in table and 'class-conditional' in table
    assert os.path.getsize(tmp_path / 'demo_out' / '00000' / 'aligned_grid.png') > 0
    # A second run never touches the first one's results.
    assert demo.next_run_dir(str(tmp_path / 'demo_out')).endswith('00001')



def test_demo_tasks_flag():
    assert demo.parse_transforms('hflip, edges') == ['hflip', 'edges']
    with pytest.raises(dnnlib.util.UserError, match='--tasks.*sepia.*known: .*grayscale'):
        demo.parse_transforms('hflip,sepia')
    cfg = demo.expansion_config(None, None, ['hflip', 'hue_shift'])
    assert cfg == {'tasks': [{'type': 'Transform', 'args': {'transform': 'hflip'}},
                             {'type': 'Transform', 'args': {'transform': 'hue_shift', 'degrees': demo.HUE_DEGREES}}]}

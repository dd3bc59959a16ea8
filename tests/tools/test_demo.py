"""demo.py end to end with very few steps: metrics.json follows interfaces.md section 5."""

import json
import os

import demo


def test_demo_writes_metrics_and_grid(tmp_path):
    path = demo.run_demo(str(tmp_path / 'demo_out'), steps=2, batch=4, num_eval_latents=4)
    assert path == str(tmp_path / 'demo_out' / '00000' / 'metrics.json')
    with open(path) as f:
        metrics = json.load(f)
    assert metrics['steps'] == 2 and metrics['batch'] == 4 and metrics['seconds'] > 0
    assert metrics['lpips_backbone'] in ('alex', 'random-init (offline)')
    for run in ('expanded', 'finetune_baseline'):
        assert set(metrics['base'][run]) == {'l2', 'lpips'}
        assert all(isinstance(v, float) and v >= 0 for v in metrics['base'][run].values())
    names = ['grayscale', 'negative', 'hue_shift', 'sepia_person']
    assert list(metrics['domains']) == names
    dims = [metrics['domains'][n]['dimension'] for n in names]
    assert dims == [31, 30, 29, 28]  # the most dormant directions of the 32-d W space, in task order
    for name in names:
        entry = metrics['domains'][name]
        assert entry['type'] == ('MyStyle' if name == 'sepia_person' else 'Transform')
        assert entry['error_before'] > 0 and entry['error_after'] > 0
        assert sorted(entry['on_other_subspaces']) == sorted(set(names) - {name})
    assert os.path.getsize(tmp_path / 'demo_out' / '00000' / 'aligned_grid.png') > 0
    # A second run never touches the first one's results.
    assert demo.next_run_dir(str(tmp_path / 'demo_out')).endswith('00001')

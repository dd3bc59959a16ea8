"""traverse.py: traversal grids and animations, composition and pair grids, option errors."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch

import dnnlib
import traverse as traverse_cli
from conftest import REPO_ROOT, require_fixtures
from image_compare import assert_images_close
from training.cli_helpers import seed_to_z
from torch_utils import image_utils
from training.expansion.expanded_generator import load_expanded_generator
from traverse import compose, parse_compose, parse_steps, traverse

SEEDS = [0, 1, 2]
PAD = 2


@pytest.fixture(scope='module')
def pkl():
    return str(require_fixtures('stylegan2_tiny', 'tiny32_expanded_snapshot.pkl'))


@pytest.fixture(scope='module')
def eg(pkl):
    return load_expanded_generator(pkl)


def _ws(eg, seeds=SEEDS, psi=1.0):
    return torch.cat([eg.map(torch.from_numpy(seed_to_z(s, 32)), torch.zeros([1, 0]), psi) for s in seeds])


def _read_png(path):
    return np.asarray(PIL.Image.open(path).convert('RGB'))


def _tiles(grid, rows, cols, size=32):
    """Cut a make_grid picture back into its tiles [rows, cols, size, size, 3]; checks the layout."""
    assert grid.shape[0] == rows * (size + PAD) + PAD
    label_width = grid.shape[1] - cols * (size + PAD) - PAD
    assert label_width > 0
    return np.stack([np.stack([grid[PAD + i * (size + PAD):][:size, label_width + PAD + j * (size + PAD):][:, :size]
                               for j in range(cols)]) for i in range(rows)])

# ---------------------------------------------------------------------------------------------


def test_parse_steps_and_compose(eg):
    np.testing.assert_allclose(parse_steps('0:30:4', 20.0), [0, 10, 20, 30])
    np.testing.assert_allclose(parse_steps('-10:10:3', 20.0), [-10, 0, 10])
    np.testing.assert_allclose(parse_steps(None, 20.0), np.linspace(0, 20, 7))
    for bad in ['0:30', 'a:b:c', '0:30:0']:
        with pytest.raises(dnnlib.util.UserError, match='--steps'):
            parse_steps(bad, 20.0)
    assert parse_compose('watercolor painting=20,30=-5.5', eg) == {0: 20.0, 1: -5.5}
    assert parse_compose('marble statue', eg) == {1: 20.0}
    with pytest.raises(dnnlib.util.UserError, match="--compose: weight 'x'"):
        parse_compose('31=x', eg)
    with pytest.raises(dnnlib.util.UserError, match='listed twice'):
        parse_compose('31=1,dim031=2', eg)
    with pytest.raises(dnnlib.util.UserError, match="--compose: 'sketch' is not a domain"):
        parse_compose('sketch=3', eg)


def test_traversal_columns_and_grid(pkl, eg, tmp_path):
    result = traverse(pkl, SEEDS, 'marble statue', str(tmp_path), steps='0:40:3', video=str(tmp_path / 'walk.gif'))
    assert result['steps'] == [0.0, 20.0, 40.0]
    images = result['images']
    assert images.shape == (3, 3, 32, 32, 3)
    base_img, edit_imgs = eg.render_aligned(_ws(eg), [1])
    # Traversal and aligned renders batch the work differently: tolerant comparisons.
    assert_images_close(images[:, 0], image_utils.to_uint8(base_img), msg='step 0 = base render')
    assert_images_close(images[:, 1], image_utils.to_uint8(edit_imgs[0]), msg='step s = the domain')
    assert not np.array_equal(images[:, 2], images[:, 1])                              # beyond s keeps moving
    # Grid: rows seeds, columns steps, tiles in place.
    assert result['grid'] == str(tmp_path / 'traverse_dim030_marble_statue.png')
    np.testing.assert_array_equal(_tiles(_read_png(result['grid']), 3, 3), images)
    # GIF: one frame per step, the seeds side by side.
    with PIL.Image.open(tmp_path / 'walk.gif') as gif:
        assert gif.n_frames == 3 and gif.size == (3 * 32, 32)


def test_traversal_mp4_needs_ffmpeg(pkl, tmp_path):
    out = tmp_path / 'out'
    if importlib.util.find_spec('imageio_ffmpeg') is None:
        with pytest.raises(dnnlib.util.UserError, match=r'--video: writing MP4 needs the imageio-ffmpeg.*walk\.gif'):
            traverse(pkl, [0], 30, str(out), steps='0:20:2', video=str(tmp_path / 'walk.mp4'))
        assert not out.exists()
    else:
        traverse(pkl, [0], 30, str(out), steps='0:20:16', video=str(tmp_path / 'walk.mp4'))
        assert (tmp_path / 'walk.mp4').stat().st_size > 0
    with pytest.raises(dnnlib.util.UserError, match=r"--video: '.*walk\.avi' must end in \.gif or \.mp4"):
        traverse(pkl, [0], 30, str(out), video=str(tmp_path / 'walk.avi'))


def test_compose_single_weight_equals_domain_edit(pkl, eg, tmp_path):
    ws = _ws(eg)
    _, edit_imgs = eg.render_aligned(ws)
    for k in range(2):
        torch.testing.assert_close(eg.render_compose(ws, {k: 20.0}), edit_imgs[k], atol=1e-5, rtol=0)
    torch.testing.assert_close(eg.render_compose(ws, [0.0, 20.0]), edit_imgs[1], atol=1e-5, rtol=0)
    result = compose(pkl, SEEDS, '31=20', str(tmp_path))
    assert result['images'].shape == (3, 3, 32, 32, 3)                       # base, single, composition
    assert_images_close(result['images'][:, 2], image_utils.to_uint8(edit_imgs[0]), msg='compose vs aligned')
    np.testing.assert_array_equal(result['images'][:, 1], result['images'][:, 2])  # the same render_compose call
    assert result['pairs'] == {}
    np.testing.assert_array_equal(_tiles(_read_png(result['grid']), 3, 3), result['images'])


def test_cli_compose_pair_grid(pkl, eg, tmp_path):
    out = tmp_path / 'out'
    proc = subprocess.run([sys.executable, 'traverse.py', '--network', pkl, '--seeds', '0-1',
                           '--compose', 'watercolor painting=20,30=10', '--pair-steps', '3', '--outdir', str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    ws = _ws(eg, [0, 1])
    # The composition, computed independently: base + 20 v_31 + 10 v_30.
    B = eg.subspaces.basis
    base = eg.project_base(ws)
    expected = image_utils.to_uint8(eg.G.synthesis(base + 20 * B[:, 31] + 10 * B[:, 30], noise_mode='const'))
    for n, seed in enumerate([0, 1]):
        assert_images_close(out / 'compose' / f'seed{seed:04d}.png', expected[n], msg=f'compose seed {seed}')
    # Pair grid: rows watercolor 0, 10, 20; columns marble 0, 5, 10. The CLI rendered both seeds in
    # one batch, the expectation renders seed 1 alone (another kernel path): tolerant comparisons.
    folder = out / 'pair_dim031_watercolor_painting__dim030_marble_statue'
    tiles = _tiles(_read_png(folder / 'seed0001.png'), 3, 3)
    for i, wa in enumerate([0.0, 10.0, 20.0]):
        for j, wb in enumerate([0.0, 5.0, 10.0]):
            want = image_utils.to_uint8(eg.render_compose(ws[1:], {0: wa, 1: wb}))[0]
            assert_images_close(tiles[i, j], want, msg=f'pair tile {i},{j}')
    assert_images_close(tiles[2, 2], out / 'compose' / 'seed0001.png', msg='pair grid corner vs composition')
    record = json.loads((out / 'compose.json').read_text())
    assert record['weights'] == {'watercolor painting': 20.0, 'marble statue': 10.0}
    assert record['pair_grids'][0]['columns'] == {'marble statue': [0.0, 5.0, 10.0]}


@pytest.mark.parametrize('args, message', [
    (['--seeds', '0'], 'exactly one of --domain'),
    (['--seeds', '0', '--domain', '30', '--compose', '31=1'], 'exactly one of --domain'),
    (['--seeds', '0', '--compose', '31=1', '--steps', '0:1:2'], '--steps and --video apply to traversals'),
    (['--seeds', '0', '--compose', '31=1', '--pair-steps', '1'], '--pair-steps: must be at least 2'),
    (['--seeds', '0', '--domain', 'sketch'], "--domain: 'sketch' is not a domain"),
    (['--seeds', '0', '--domain', '30', '--fps', '0'], '--fps: must be positive'),
])
def test_cli_errors(pkl, tmp_path, capsys, args, message):
    out = tmp_path / 'out'
    with pytest.raises(SystemExit) as exit_info:
        dnnlib.util.run_cli(traverse_cli.main, ['--network', pkl, '--outdir', str(out), *args])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith('Error: ') and message in last, last
    assert not out.exists()

"""style_mixing.py: the official tool's flags and outputs (pair images, grid.png layout)."""

import numpy as np
import PIL.Image
import pytest
import torch

import style_mixing
import tiny_nets
from conftest import run_cli_inprocess
from torch_utils import image_utils
from training import cli_helpers
from training import snapshot_io

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture
def network(tmp_path):
    G = tiny_nets.tiny_generator(seed=5).eval().requires_grad_(False)
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.randn(16))  # truncation then moves w somewhere visible
    path = tmp_path / 'net.pkl'
    snapshot_io.save_network_pkl(tiny_nets.snapshot_data(G, tiny_nets.tiny_discriminator()), path)
    return G, str(path)


def _png(path) -> np.ndarray:
    return np.asarray(PIL.Image.open(path))


def test_pairs_and_grid(network, tmp_path):
    G, pkl = network
    rows, cols, psi = [1, 2], [3, 4, 5], 0.7
    paths = style_mixing.style_mixing(pkl, rows, cols, styles='0-2', truncation_psi=psi, outdir=str(tmp_path / 'o'))
    names = sorted(p.name for p in (tmp_path / 'o').iterdir())
    expected = {f'{s}-{s}.png' for s in rows + cols} | {f'{r}-{c}.png' for r in rows for c in cols} | {'grid.png'}
    assert names == sorted(expected)

    # The mix of row 2 and column 4 on layers 0-2, rendered here by hand on the same code path.
    with torch.no_grad():
        ws = G.mapping(cli_helpers.seeds_to_z([2, 4], 16), None, truncation_psi=psi)
        w = ws[0].clone()
        w[:3] = ws[1, :3]
        mixed = image_utils.to_uint8(G.synthesis(w[None], noise_mode='const'))[0]
        alone = image_utils.to_uint8(G.synthesis(ws[:1], noise_mode='const'))[0]
    np.testing.assert_array_equal(_png(paths[(2, 4)]), mixed)
    assert np.abs(mixed.astype(int) - alone).max() > 0  # the styles did change the image

    grid = _png(paths[('grid',)])
    H, W = mixed.shape[:2]
    assert grid.shape == (H * (len(rows) + 1), W * (len(cols) + 1), 3)
    assert not grid[:H, :W].any()                                         # top-left cell black
    np.testing.assert_array_equal(grid[:H, 2 * W:3 * W], _png(paths[(4, 4)]))      # column seeds on top
    np.testing.assert_array_equal(grid[2 * H:3 * H, :W], _png(paths[(2, 2)]))      # row seeds on the left
    np.testing.assert_array_equal(grid[2 * H:3 * H, 2 * W:3 * W], mixed)


def test_all_styles_from_the_column_give_the_column_image(network, tmp_path):
    G, pkl = network
    paths = style_mixing.style_mixing(pkl, [7], [8], styles=f'0-{G.num_ws - 1}', outdir=str(tmp_path))
    np.testing.assert_array_equal(_png(paths[(7, 8)]), _png(paths[(8, 8)]))


def test_cli_flags_and_bad_styles(network, tmp_path, capsys):
    G, pkl = network
    out = tmp_path / 'cli'
    code, stdout, err = run_cli_inprocess(style_mixing.main, [
        '--network', pkl, '--rows', '1-2', '--cols', '3', '--styles', '0-1', '--trunc', '1', '--noise-mode', 'const',
        '--outdir', str(out)], capsys)
    assert code == 0, err
    assert (out / 'grid.png').exists() and (out / '2-3.png').exists()

    bad = tmp_path / 'bad'
    code, stdout, err = run_cli_inprocess(style_mixing.main, [
        '--network', pkl, '--rows', '1', '--cols', '3', '--styles', f'0-{G.num_ws}', '--outdir', str(bad)], capsys)
    last_line = (stdout + err).strip().splitlines()[-1]
    assert code != 0 and '--styles' in last_line and str(G.num_ws) in last_line
    assert not bad.exists()

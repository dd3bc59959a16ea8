"""generate_aligned.py and training/expanded_generator.py: parity with the official projection and
renders (fixtures), PNG pixels against an independent computation, domain selection, errors."""

import os
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch

import dnnlib
import generate_aligned as generate_aligned_cli
import legacy
from conftest import REPO_ROOT, require_fixtures
from expanded_toy import save_toy_snapshot
from image_compare import assert_images_close
from generate_aligned import generate_aligned
from training.expansion.expanded_generator import ExpandedGenerator, domain_names, load_expanded_generator

TINY = ('stylegan2_tiny',)
FOLDERS = ['base', 'dim031_watercolor_painting', 'dim030_marble_statue']


def _expanded_pkl():
    return str(require_fixtures(*TINY, 'tiny32_expanded_snapshot.pkl'))


def _npz(name):
    return np.load(require_fixtures(*TINY, name), allow_pickle=False)


def _read_png(path):
    return np.asarray(PIL.Image.open(path).convert('RGB'))

# ---------------------------------------------------------------------------------------------
# Parity with the official project_to_subspaces + synthesis outputs.


def test_projection_and_renders_match_fixture():
    eg = load_expanded_generator(_expanded_pkl())
    ref, exp = _npz('reference_outputs.npz'), _npz('expansion_outputs.npz')
    assert eg.dims == [31, 30] and eg.subspace_distance == 20.0
    assert eg.names == ['watercolor painting', 'marble statue'] and eg.names_note is None
    w = torch.from_numpy(exp['w_input'])                                       # [4, 32]
    base, edits = eg.subspaces.edits_all(w, eg.w_avg)
    np.testing.assert_allclose(base.numpy(), exp['proj_base_w'], atol=1e-5)
    np.testing.assert_allclose(edits.numpy(), exp['proj_edit_w'], atol=1e-5)

    # The fixture rendered W projections broadcast to all 8 ws.
    base_img, edit_imgs = eg.render_aligned(eg.broadcast(w))
    np.testing.assert_allclose(base_img.numpy(), exp['img_base_const'], atol=1e-4, rtol=1e-5)
    for k in range(2):
        np.testing.assert_allclose(edit_imgs[k].numpy(), exp['img_edit_const'][k], atol=1e-4, rtol=1e-5)

    # The official W+ path (mapping output, identical rows) gives the same latents and images.
    ws = eg.map(torch.from_numpy(ref['z']), torch.from_numpy(ref['c']), 1.0)
    np.testing.assert_allclose(ws.numpy(), ref['gema_ws_psi1'], atol=1e-5)
    base_wp, edits_wp = eg.subspaces.edits_all(ws, eg.w_avg)
    np.testing.assert_allclose(base_wp.numpy(), exp['proj_base_wplus'], atol=1e-5)
    np.testing.assert_allclose(edits_wp.numpy(), exp['proj_edit_wplus'], atol=1e-5)
    base_img2, edit_imgs2 = eg.render_aligned(ws)
    np.testing.assert_allclose(base_img2.numpy(), exp['img_base_const'], atol=1e-4, rtol=1e-5)
    for k in range(2):
        np.testing.assert_allclose(edit_imgs2[k].numpy(), exp['img_edit_const'][k], atol=1e-4, rtol=1e-5)
    # w_avg is not moved by mapping for generation.
    np.testing.assert_array_equal(eg.w_avg.numpy(), ref['w_avg_before_update'])


def _expected_pixels(data, seed, psi):
    """Official formula, written out: base = w B_K B_K^T + (m B_R) B_R^T; edit_k = base + s B_R[:, k]."""
    G = data['G_ema'].eval()
    B = data['latent_basis'].float()
    R = [int(d) for d in data['repurposed_dims']]
    K = [d for d in range(B.shape[0]) if d not in R]
    B_R, B_K, m = B[:, R], B[:, K], G.mapping.w_avg
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    with torch.no_grad():
        ws = G.mapping(z, torch.zeros([1, 0]), truncation_psi=psi)
        base = ws @ B_K @ B_K.T + (m @ B_R) @ B_R.T
        latents = [base] + [base + data['subspace_distance'] * B_R[:, k] for k in range(len(R))]
        imgs = [G.synthesis(x, noise_mode='const') for x in latents]
    return [(img[0] * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy() for img in imgs]


def _check_pngs(outdir, pkl, psi, seeds=range(4)):
    data = legacy.load_network_pkl(pkl)
    for seed in seeds:
        expected = _expected_pixels(data, seed, psi)
        for folder, exp_pixels in zip(FOLDERS, expected):
            assert_images_close(_read_png(os.path.join(outdir, folder, f'seed{seed:04d}.png')), exp_pixels,
                                msg=f'{folder} seed {seed}')


def test_pngs_match_independent_projection_psi1(tmp_path):
    pkl = _expanded_pkl()
    paths = generate_aligned(pkl, [0, 1, 2, 3], str(tmp_path), truncation_psi=1.0, progress=False)
    assert sorted(k for k in paths if k != 'grid') == sorted(FOLDERS)
    _check_pngs(str(tmp_path), pkl, 1.0)
    # Grid: 3 rows (base + 2 domains) x 4 seeds of 32 px tiles with 2 px padding, tiles in place.
    grid = _read_png(paths['grid'])
    assert grid.shape[0] == 3 * (32 + 2) + 2
    label_width = grid.shape[1] - 4 * (32 + 2) - 2
    assert label_width > 0
    for i, folder in enumerate(FOLDERS):
        for j in range(4):
            x, y = label_width + 2 + j * 34, 2 + i * 34
            np.testing.assert_array_equal(grid[y:y + 32, x:x + 32], _read_png(paths[folder][j]))


def test_cli_psi07_pngs_match(tmp_path):
    pkl = _expanded_pkl()
    outdir = tmp_path / 'out'
    proc = subprocess.run([sys.executable, 'generate_aligned.py', '--network', pkl, '--seeds', '0-3', '--trunc', '0.7',
                           '--no-grid', '--outdir', str(outdir)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert not (outdir / 'grid.png').exists()
    _check_pngs(str(outdir), pkl, 0.7)


def test_cli_plain_snapshot_error(tmp_path, capsys):
    outdir = tmp_path / 'out'
    with pytest.raises(SystemExit) as exit_info:
        dnnlib.util.run_cli(generate_aligned_cli.main, ['--network', str(require_fixtures(*TINY, 'tiny32_snapshot.pkl')),
                                                        '--seeds', '0', '--outdir', str(outdir)])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith('Error: --network') and 'plain StyleGAN2' in last and 'generate.py' in last
    assert not outdir.exists()

# ---------------------------------------------------------------------------------------------
# Domain selection and naming.


def test_domain_index_forms():
    eg = load_expanded_generator(_expanded_pkl())
    for spec in [31, '31', 'dim031', 'DIM31', 'watercolor painting', 'Watercolor Painting', 'watercolor_painting']:
        assert eg.domain_index(spec) == 0, spec
    assert eg.domain_indices('marble statue,31') == [1, 0]
    assert eg.domain_indices(None) == [0, 1]
    with pytest.raises(dnnlib.util.UserError, match=r"--domains: 'sketch' is not a domain.*31 \(watercolor painting\), 30 \(marble statue\)"):
        eg.domain_indices('sketch')
    with pytest.raises(dnnlib.util.UserError, match='--domain: .5. is not a domain'):
        eg.domain_index(5)
    with pytest.raises(dnnlib.util.UserError, match='listed twice'):
        eg.domain_indices('30,marble statue')


def test_domains_subset_writes_only_those(tmp_path):
    paths = generate_aligned(_expanded_pkl(), [5], str(tmp_path), domains='30', progress=False)
    assert sorted(os.listdir(tmp_path)) == ['base', 'dim030_marble_statue', 'grid.png']
    assert paths['dim030_marble_statue'] == [str(tmp_path / 'dim030_marble_statue' / 'seed0005.png')]


def test_domain_names_fallbacks():
    assert domain_names(None, [7, 6], 8) == (['dim007', 'dim006'], 'the snapshot has no expansion_cfg; domains are named by dimension')
    names, note = domain_names({'tasks': [{'type': 'NoSuchTask'}]}, [7], 8)
    assert names == ['dim007'] and 'does not parse' in note
    # Names are matched by dimension, not position; a dim missing from the config falls back.
    cfg = {'tasks': [{'type': 'Transform', 'dimension': 6, 'args': {'transform': 'negative'}}]}
    names, note = domain_names(cfg, [7, 6], 8)
    assert names == ['dim007', 'negative'] and '[7]' in note

# ---------------------------------------------------------------------------------------------
# Errors and conditional networks.


def test_errors_before_outdir(tmp_path):
    outdir = tmp_path / 'out'
    with pytest.raises(dnnlib.util.UserError, match='plain StyleGAN2 snapshot.*generate.py'):
        generate_aligned(str(require_fixtures(*TINY, 'tiny32_snapshot.pkl')), [0], str(outdir), progress=False)
    with pytest.raises(dnnlib.util.UserError, match="--domains: 'foo'.*valid"):
        generate_aligned(_expanded_pkl(), [0], str(outdir), domains='foo', progress=False)
    with pytest.raises(dnnlib.util.UserError, match='--network: '):
        generate_aligned(str(tmp_path / 'missing.pkl'), [0], str(outdir), progress=False)
    with pytest.raises(dnnlib.util.UserError, match='--seeds'):
        generate_aligned(_expanded_pkl(), [], str(outdir), progress=False)
    assert not outdir.exists()


def test_conditional_network_needs_class(tmp_path):
    pkl = str(tmp_path / 'cond.pkl')
    data = save_toy_snapshot(pkl, c_dim=3, tasks=((7, 'grayscale'), (2, 'negative')))
    with pytest.raises(dnnlib.util.UserError, match='--class is required'):
        generate_aligned(pkl, [0], str(tmp_path / 'out'), progress=False)
    assert not (tmp_path / 'out').exists()
    paths = generate_aligned(pkl, [0, 1], str(tmp_path / 'out'), class_idx=2, progress=False)
    assert list(paths)[:3] == ['base', 'dim007_grayscale', 'dim002_negative']
    # Independent: one-hot class 2, mapping, projection with the stored basis, const noise.
    G, B = data['G_ema'], data['latent_basis']
    c = torch.tensor([[0.0, 0.0, 1.0]])
    z = torch.from_numpy(np.random.RandomState(1).randn(1, 8)).float()
    with torch.no_grad():
        w = G.mapping(z, c)
        B_R, B_K = B[:, [7, 2]], B[:, [0, 1, 3, 4, 5, 6]]
        base = w @ B_K @ B_K.T + (G.mapping.w_avg @ B_R) @ B_R.T
        img = G.synthesis(base + 5.0 * B_R[:, 1], noise_mode='const')
    expected = (img[0] * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    assert_images_close(_read_png(paths['dim002_negative'][1]), expected)
    other = generate_aligned(pkl, [1], str(tmp_path / 'out0'), class_idx=0, progress=False)
    assert not np.array_equal(_read_png(other['base'][0]), _read_png(paths['base'][1]))


def test_from_snapshot_requires_keys():
    data = legacy.load_network_pkl(_expanded_pkl())
    eg = ExpandedGenerator.from_snapshot(data)
    assert 'watercolor painting' in repr(eg)
    data['repurposed_dims'] = torch.tensor([40])
    with pytest.raises(dnnlib.util.UserError, match='stored expansion keys are invalid'):
        ExpandedGenerator.from_snapshot(data)

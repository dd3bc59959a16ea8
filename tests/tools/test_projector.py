"""The projector: training/projection.py and projector.py (W, W+, expanded base subspace)."""

import copy
import math

import numpy as np
import PIL.Image
import pytest
import torch

import projector
from conftest import run_cli_inprocess
from expanded_toy import W_DIM as TOY_W_DIM, save_toy_snapshot
from image_compare import assert_images_close
from tiny_nets import tiny_generator
from torch_utils import image_utils
from training import projection
from training.snapshot_io import save_network_pkl
from training.expansion.subspaces import LatentSubspaces
from training.expansion.tasks.mystyle import load_anchor

pytestmark = pytest.mark.usefixtures('one_thread')


def _tiny_G(w_dim=32, seed=0):
    return tiny_generator(w_dim, seed=seed).eval().requires_grad_(False)


def _target_from_w(G, w):
    """uint8 [C, H, W] image of latent w [w_dim] (constant noise)."""
    return torch.from_numpy(image_utils.to_uint8(projection.render_latent(G.synthesis, w))[0]).permute(2, 0, 1).contiguous()


def _error(G, latent, target_uint8):
    return projection.pixel_l2(projection.render_latent(G.synthesis, latent), target_uint8[None].float() / 127.5 - 1).item()


def _run_cli(args, capsys):
    return run_cli_inprocess(projector.main, args, capsys)


def _save_png(path, uint8_chw):
    PIL.Image.fromarray(np.asarray(uint8_chw).transpose(1, 2, 0)).save(path)

# ---------------------------------------------------------------------------------------------


def test_schedules_follow_the_stylegan2_ada_projector():
    assert projection.learning_rate(0.0) == 0.0                               # ramp-up starts at 0
    assert projection.learning_rate(0.025) == pytest.approx(0.05)              # halfway up the 5% ramp
    assert projection.learning_rate(0.5) == pytest.approx(0.1)                 # plateau
    assert projection.learning_rate(0.875) == pytest.approx(0.1 * (0.5 - 0.5 * math.cos(0.5 * math.pi)))
    assert projection.learning_rate(0.999) < 1e-4                              # cosine ramp-down to 0
    assert projection.latent_noise_scale(0.0, w_std=2.0) == pytest.approx(0.1)
    assert projection.latent_noise_scale(0.375, w_std=2.0) == pytest.approx(0.1 * 0.25)
    assert projection.latent_noise_scale(0.8, w_std=2.0) == 0.0


def test_noise_regularization_and_normalization():
    gen = torch.Generator().manual_seed(0)
    white = torch.randn([32, 32], generator=gen)
    checker = torch.tensor([[(-1.0) ** (i + j) for j in range(32)] for i in range(32)])
    assert projection.noise_regularization([white]).item() < 1e-2
    assert projection.noise_regularization([checker]).item() > 1.0             # shift-1 autocorrelation -1
    buf = 3 * torch.randn([16, 16], generator=gen) + 2
    projection.normalize_noise_([buf])
    assert abs(buf.mean().item()) < 1e-5 and abs(buf.square().mean().item() - 1) < 1e-5


def test_projection_reconstructs_a_generated_image():
    G = _tiny_G()
    G_before = copy.deepcopy(G)
    z = torch.from_numpy(np.random.RandomState(3).randn(1, G.z_dim)).float()
    w_avg, _ = projection.w_statistics(G.mapping, torch.zeros([1, 0]), 1000)
    w_true = w_avg + 0.7 * (G.mapping(z, torch.zeros([1, 0]), skip_w_avg_update=True)[0, 0] - w_avg)
    target = _target_from_w(G, w_true)
    dists = []
    result = projection.project(G, target, num_steps=100, w_avg_samples=1000, seed=1,
                                progress=lambda step, total, dist: dists.append((step, total)))
    assert dists[-1] == (100, 100) and len(result.dist) == 100
    assert result.w_steps.shape == (100, G.num_ws, G.w_dim)
    start_error = _error(G, w_avg, target)
    final_error = _error(G, result.latent, target)
    assert result.latent.shape == (G.w_dim,)
    assert final_error < start_error / 5, (start_error, final_error)
    assert final_error == pytest.approx(result.dist[-1], rel=0.05)     # the last steps add no latent noise
    # The caller's generator (its noise maps included) is untouched.
    for (name, a), (_, b) in zip(G.named_buffers(), G_before.named_buffers()):
        assert torch.equal(a, b), name


def test_w_plus_and_base_subspace_constraint():
    G = _tiny_G(w_dim=16)
    target = _target_from_w(G, projection.w_statistics(G.mapping, torch.zeros([1, 0]), 500)[0] + 0.5)
    result = projection.project(G, target, num_steps=5, w_plus=True, w_avg_samples=500)
    assert result.latent.shape == (G.num_ws, 16)
    assert not torch.equal(result.latent[0], result.latent[-1])                # layers move independently

    basis = torch.linalg.qr(torch.randn([16, 16], dtype=torch.float64))[0].float()
    subspaces = LatentSubspaces(basis, [15, 14])
    mean = torch.randn([16])
    result = projection.project(G, target, num_steps=5, subspaces=subspaces, base_mean=mean, w_avg_samples=500)
    for w in result.w_steps[:, 0]:                                             # every step stays in the base subspace
        torch.testing.assert_close(subspaces.project_base(w[None], mean)[0], w, atol=1e-5, rtol=0)
    torch.testing.assert_close(result.latent @ basis[:, [15, 14]], mean @ basis[:, [15, 14]], atol=1e-5, rtol=0)


def test_target_shape_is_checked():
    G = _tiny_G(w_dim=16)
    with pytest.raises(ValueError, match=r'generator makes \[3, 16, 16\]'):
        projection.project(G, torch.zeros([3, 32, 32], dtype=torch.uint8), num_steps=1)
    with pytest.raises(ValueError, match='uint8'):
        projection.project(G, torch.zeros([3, 16, 16]), num_steps=1)

# ---------------------------------------------------------------------------------------------


def test_cli_writes_mystyle_anchors(tmp_path, capsys):
    data = save_toy_snapshot(tmp_path / 'net.pkl')
    G = data['G_ema']
    photos = tmp_path / 'photos'
    photos.mkdir()
    _save_png(photos / 'alice.png', _target_from_w(G, G.mapping.w_avg + 0.3))
    _save_png(photos / 'bob.png', _target_from_w(G, G.mapping.w_avg - 0.3))
    out = tmp_path / 'anchors'
    code, stdout, err = _run_cli(['--network', str(tmp_path / 'net.pkl'), '--target', str(photos), '--outdir', str(out),
                                  '--num-steps', '3', '--metric', 'l2'], capsys)
    assert code == 0, err
    for stem in ('alice', 'bob'):
        latent = torch.load(out / f'{stem}.pt', weights_only=True)
        assert latent.shape == (TOY_W_DIM,) and latent.dtype == torch.float32
        torch.testing.assert_close(load_anchor(str(out / f'{stem}.pt'), TOY_W_DIM), latent)
        proj = np.asarray(PIL.Image.open(out / f'{stem}_proj.png'))
        expected = image_utils.to_uint8(projection.render_latent(G.synthesis, latent))[0]
        assert np.array_equal(proj, expected)                                  # rendered with G's own noise
        assert np.array_equal(np.asarray(PIL.Image.open(out / f'{stem}_target.png')),
                              np.asarray(PIL.Image.open(photos / f'{stem}.png')))

    out_plus = tmp_path / 'plus'
    code, _, err = _run_cli(['--network', str(tmp_path / 'net.pkl'), '--target', str(photos / 'bob.png'),
                             '--outdir', str(out_plus), '--num-steps', '3', '--metric', 'l2', '--w-plus'], capsys)
    assert code == 0, err
    assert torch.load(out_plus / 'bob.pt', weights_only=True).shape == (G.num_ws, TOY_W_DIM)


def test_cli_expanded_mode_renders_base_and_every_domain(tmp_path, capsys):
    data = save_toy_snapshot(tmp_path / 'exp.pkl', tasks=((7, 'grayscale'), (6, 'negative')))
    G = data['G_ema']
    _save_png(tmp_path / 'face.png', _target_from_w(G, G.mapping.w_avg + 0.5))
    out = tmp_path / 'out'
    code, _, err = _run_cli(['--network', str(tmp_path / 'exp.pkl'), '--target', str(tmp_path / 'face.png'),
                             '--outdir', str(out), '--num-steps', '3', '--metric', 'l2', '--expanded'], capsys)
    assert code == 0, err
    latent = torch.load(out / 'face.pt', weights_only=True)
    subspaces = LatentSubspaces(data['latent_basis'], [7, 6], data['subspace_distance'])
    w_avg = G.mapping.w_avg
    base = subspaces.project_base(latent[None], w_avg)
    torch.testing.assert_close(base[0], latent, atol=1e-5, rtol=0)             # a base-subspace latent
    names = ['base.png', 'dim007_grayscale.png', 'dim006_negative.png']
    assert sorted(p.name for p in (out / 'face').iterdir()) == sorted(names)
    for k, name in enumerate(names):
        w = base if k == 0 else subspaces.edit(base, k - 1)
        expected = image_utils.to_uint8(projection.render_latent(G.synthesis, w[0]))[0]
        assert_images_close(out / 'face' / name, expected, msg=name)          # aligned renders: another path
    with PIL.Image.open(out / 'face_domains.png') as grid:
        assert grid.size[1] > 3 * 16                                           # three labelled rows


def test_cli_errors_are_one_line_and_create_nothing(tmp_path, capsys):
    data = save_toy_snapshot(tmp_path / 'net.pkl')
    big = tmp_path / 'big.png'
    PIL.Image.new('RGB', (40, 30), (10, 200, 30)).save(big)
    out = tmp_path / 'never'
    base = ['--network', str(tmp_path / 'net.pkl'), '--outdir', str(out), '--metric', 'l2', '--num-steps', '2']
    code, _, err = _run_cli(base + ['--target', str(big)], capsys)
    assert code == 2 and '--resize' in err.strip().splitlines()[-1] and '40x30' in err and not out.exists()
    code, _, err = _run_cli(base + ['--target', str(tmp_path / 'nope.png')], capsys)
    assert code == 2 and err.strip().splitlines()[-1].startswith('Error: --target') and not out.exists()
    (tmp_path / 'junk.png').write_bytes(b'not a png')
    code, _, err = _run_cli(base + ['--target', str(tmp_path / 'junk.png')], capsys)
    assert code == 2 and 'cannot be read' in err.strip().splitlines()[-1] and not out.exists()
    code, _, err = _run_cli(base + ['--target', str(big), '--num-steps', '0'], capsys)
    assert code == 2 and '--num-steps' in err.strip().splitlines()[-1] and not out.exists()
    plain = tmp_path / 'plain.pkl'
    save_network_pkl({k: v for k, v in data.items() if k not in ('latent_basis', 'repurposed_dims', 'subspace_distance',
                                                                 'expansion_cfg')}, plain)
    code, _, err = _run_cli(['--network', str(plain), '--outdir', str(out), '--metric', 'l2', '--target', str(big),
                             '--resize', '--expanded'], capsys)
    assert code == 2 and 'not an expanded generator' in err.strip().splitlines()[-1] and not out.exists()
    cond = tmp_path / 'cond.pkl'
    save_toy_snapshot(cond, c_dim=2)
    code, _, err = _run_cli(['--network', str(cond), '--outdir', str(out), '--metric', 'l2', '--target', str(big),
                             '--resize'], capsys)
    assert code == 2 and '--class is required' in err.strip().splitlines()[-1] and not out.exists()
    # --resize accepts the 40x30 image (center crop + Lanczos to 16x16).
    code, _, err = _run_cli(base + ['--target', str(big), '--resize'], capsys)
    assert code == 0, err
    assert PIL.Image.open(out / 'big_target.png').size == (16, 16)

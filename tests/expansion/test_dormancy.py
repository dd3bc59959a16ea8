"""Dormancy analysis (App. C.1, Fig. 12): training/expansion/dormancy.py and analyze_dormancy.py."""

import json

import numpy as np
import PIL.Image
import pytest
import torch

import analyze_dormancy
from conftest import run_cli_inprocess
from tiny_nets import snapshot_data, tiny_discriminator, tiny_generator
from training.expansion import dormancy
from training.expansion.basis import factorize
from training.snapshot_io import save_network_pkl

W_DIM = 16
NULL_DIMS = [3, 9, 14]   # Basis columns the constructed generator ignores exactly.

pytestmark = pytest.mark.usefixtures('one_thread')


def _tiny_G(seed=1):
    return tiny_generator(W_DIM, seed=seed).eval().requires_grad_(False)


def _random_basis(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn([W_DIM, W_DIM], generator=gen, dtype=torch.float64))[0].float()


def _blind_G(basis, dims):
    """A generator whose every style affine ignores the directions basis[:, dims]: W <- W (I - V V^T)."""
    G = _tiny_G()
    V = basis[:, dims]                                                      # [w_dim, k]
    with torch.no_grad():
        for name, param in G.synthesis.named_parameters():
            if 'affine' in name and name.endswith('weight'):
                param -= (param @ V) @ V.mT
    return G


def _save_snapshot(G, path, **extra):
    save_network_pkl(snapshot_data(G, tiny_discriminator(), **extra), path)


def _run_cli(args, capsys):
    """Run analyze_dormancy.main in-process; returns (exit code, stdout, stderr)."""
    return run_cli_inprocess(analyze_dormancy.main, args, capsys)

# ---------------------------------------------------------------------------------------------


def test_ignored_directions_have_zero_effect():
    basis = _random_basis()
    G = _blind_G(basis, NULL_DIMS)
    effects = dormancy.direction_effects(G, basis, num_latents=4, step=20.0, batch_size=4, seed=0)
    assert effects.shape == (W_DIM,) and effects.dtype == np.float64
    others = np.delete(effects, NULL_DIMS)
    assert effects[NULL_DIMS].max() < 1e-9, effects[NULL_DIMS]
    assert others.min() > 1e-4, others
    # SeFA sees the null space too: its last three columns span the ignored directions, and the
    # analysis on the SeFA basis finds them dormant at the end of the index range.
    sefa = factorize(G)
    overlap = torch.linalg.matrix_norm(basis[:, NULL_DIMS].mT @ sefa[:, -3:]) ** 2
    assert abs(overlap.item() - 3) < 1e-4
    sefa_effects = dormancy.direction_effects(G, sefa, num_latents=4, step=20.0, batch_size=4, seed=0)
    assert sefa_effects[-3:].max() < 1e-9 and sefa_effects[:-3].min() > 1e-4
    assert dormancy.suggest_dormant_range(sefa_effects, 0.01) == (W_DIM - 3, W_DIM)


def test_effects_match_a_direct_computation_and_perceptual_is_used():
    G = _tiny_G()
    basis = _random_basis(1)
    calls = []

    def l1(x, y):
        calls.append(x.shape[0])
        return (x - y).abs().flatten(1).mean(dim=1)
    effects = dormancy.direction_effects(G, basis, num_latents=3, step=5.0, perceptual=l1, batch_size=2, seed=7)
    assert sum(calls) == 3 * W_DIM  # every latent x every direction, batched 2 + 1
    w = dormancy.sample_w(G, 3, seed=7)
    ws = w.unsqueeze(1).repeat(1, G.num_ws, 1)
    i = 5
    moved = (w + 5.0 * basis[:, i]).unsqueeze(1).repeat(1, G.num_ws, 1)
    expected = (G.synthesis(ws, noise_mode='const') - G.synthesis(moved, noise_mode='const')).abs().flatten(1).mean(1)
    assert effects[i] == pytest.approx(expected.mean().item(), rel=1e-5)


def test_sefa_order_gives_decreasing_effects_on_a_random_generator():
    G = _tiny_G(seed=2)
    effects = dormancy.direction_effects(G, factorize(G), num_latents=4, step=3.0, batch_size=4, seed=0)
    quarter = W_DIM // 4
    assert effects[:quarter].mean() > 1.5 * effects[-quarter:].mean(), effects
    assert np.corrcoef(np.arange(W_DIM), effects)[0, 1] < -0.3, effects


def test_suggest_dormant_range_definition():
    effects = [5.0, 4.0, 0.6, 0.3, 0.45, 0.2, 0.05]
    # threshold 0.5: walk back from index 6 while effect < 0.5 -> 6, 5, 4, 3; stop at 0.6.
    assert dormancy.suggest_dormant_range(effects, 0.1) == (3, 7)
    assert dormancy.suggest_dormant_range(effects, 0.05) == (5, 7)           # threshold 0.25
    assert dormancy.suggest_dormant_range([1.0, 0.0, 2.0], 0.1) == (3, 3)    # last not dormant: empty
    assert dormancy.dims_from_range(3, 7, 3) == [6, 5, 4]
    with pytest.raises(ValueError, match='holds only 4'):
        dormancy.dims_from_range(3, 7, 5)
    with pytest.raises(ValueError, match=r'\(0, 1\)'):
        dormancy.suggest_dormant_range(effects, 1.5)
    with pytest.raises(ValueError, match='NaN'):
        dormancy.suggest_dormant_range([1.0, float('nan')], 0.1)

# ---------------------------------------------------------------------------------------------


def test_cli_writes_json_and_plot_with_the_computed_values(tmp_path, capsys):
    basis = _random_basis()
    G = _blind_G(basis, [13, 14, 15])              # the last three directions are ignored
    pkl = tmp_path / 'net.pkl'
    _save_snapshot(G, pkl, latent_basis=basis)     # a stored basis wins over SeFA
    out = tmp_path / 'dorm'
    code, stdout, err = _run_cli(['--network', str(pkl), '--num', '3', '--step', '20', '--lpips', 'l2',
                                  '--batch', '3', '--threshold', '0.001', '--out', str(out)], capsys)
    assert code == 0, err
    record = json.loads((out / 'dormancy.json').read_text())
    expected = dormancy.direction_effects(G, basis, num_latents=3, step=20.0, batch_size=3, seed=0)
    assert record['w_dim'] == W_DIM and record['num_latents'] == 3 and record['step'] == 20.0
    assert record['metric'].startswith('l2')
    assert 'stored latent_basis' in record['basis']
    np.testing.assert_allclose(record['effects'], expected, rtol=1e-6, atol=1e-12)
    assert record['suggested_dormant'] == dict(zip(('start', 'stop'), dormancy.suggest_dormant_range(expected, 0.001)))
    with PIL.Image.open(out / 'dormancy.png') as img:
        assert img.format == 'PNG' and img.size[0] > 100 and img.size[1] > 100

    assert record['suggested_dormant'] == {'start': 13, 'stop': 16}
    assert '[13, 16)' in stdout

    # --from-json reuses the file: the most dormant dims first; asking for more than the range is an error.
    code, stdout, err = _run_cli(['--from-json', str(out / 'dormancy.json'), '--write-config-dims', '2'], capsys)
    assert code == 0, err
    assert json.loads(stdout.strip().splitlines()[-1]) == [15, 14]
    code, _, err = _run_cli(['--from-json', str(out / 'dormancy.json'), '--write-config-dims', '4'], capsys)
    assert code == 2 and 'holds only 3' in err.strip().splitlines()[-1]


def test_cli_errors_are_one_line_and_create_nothing(tmp_path, capsys):
    out = tmp_path / 'never'
    code, _, err = _run_cli(['--network', str(tmp_path / 'missing.pkl'), '--out', str(out)], capsys)
    assert code == 2 and err.strip().splitlines()[-1].startswith('Error: --network') and not out.exists()

    G = _tiny_G()
    pkl = tmp_path / 'net.pkl'
    _save_snapshot(G, pkl)
    code, _, err = _run_cli(['--network', str(pkl), '--out', str(out), '--lpips', 'alex', '--random-lpips-backbone'],
                            capsys)
    assert code == 2 and 'at least 32 px' in err.strip().splitlines()[-1] and not out.exists()
    code, _, err = _run_cli(['--network', str(pkl), '--out', str(out), '--write-config-dims', '99'], capsys)
    assert code == 2 and 'w_dim 16' in err.strip().splitlines()[-1] and not out.exists()
    code, _, err = _run_cli(['--network', str(pkl), '--out', str(out), '--num', '0'], capsys)
    assert code == 2 and '--num' in err.strip().splitlines()[-1] and not out.exists()
    bad_json = tmp_path / 'x.json'
    bad_json.write_text('{"effects": 3}')
    code, _, err = _run_cli(['--from-json', str(bad_json), '--write-config-dims', '1'], capsys)
    assert code == 2 and 'not a dormancy.json' in err.strip().splitlines()[-1]


def test_conditional_latents_use_the_given_or_random_classes():
    G = tiny_generator(8, c_dim=3, channel_base=64, channel_max=8, seed=0).eval()
    z = torch.from_numpy(np.random.RandomState(4).randn(5, 8)).float()
    c = torch.nn.functional.one_hot(torch.full([5], 2), 3).float()
    expected = G.mapping(z, c, skip_w_avg_update=True)[:, 0]
    torch.testing.assert_close(dormancy.sample_w(G, 5, seed=4, class_idx=2), expected)
    rnd = np.random.RandomState(4)
    rnd.randn(5, 8)
    classes = torch.as_tensor(rnd.randint(3, size=5))
    expected = G.mapping(z, torch.nn.functional.one_hot(classes, 3).float(), skip_w_avg_update=True)[:, 0]
    torch.testing.assert_close(dormancy.sample_w(G, 5, seed=4), expected)

"""generate_mystyle.py: convex-hull mixtures, the two transports, anchors formats, outputs, errors."""

import json
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch

import dnnlib
from conftest import REPO_ROOT
from expanded_toy import save_toy_snapshot
from image_compare import assert_images_close
from generate_mystyle import generate_mystyle, load_anchors, mystyle_latents, sample_convex_mixtures
from training.expansion.expanded_generator import load_expanded_generator

DIM, S = 5, 5.0


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    """A single-direction toy snapshot and a folder of 4 anchors in every accepted format."""
    root = tmp_path_factory.mktemp('mystyle')
    pkl = str(root / 'toy.pkl')
    data = save_toy_snapshot(pkl, tasks=((DIM, 'grayscale'),), subspace_distance=S, seed=3)
    gen = torch.Generator().manual_seed(7)
    anchors = torch.randn([4, 8], generator=gen)
    num_ws = data['G_ema'].num_ws
    adir = root / 'anchors'
    adir.mkdir()
    np.save(adir / 'a0.npy', anchors[0].numpy())                            # W [w_dim]
    torch.save(anchors[1][None].clone(), adir / 'a1.pt')                    # W [1, w_dim]
    torch.save(anchors[2][None].repeat(num_ws, 1), adir / 'a2.pth')         # constant W+ [num_ws, w_dim]
    np.save(adir / 'a3.npy', anchors[3][None, None].repeat(1, num_ws, 1).numpy())  # [1, num_ws, w_dim]
    (adir / 'notes.txt').write_text('ignored')
    return dict(root=root, pkl=pkl, data=data, anchors=anchors, anchors_dir=str(adir))


def _read_png(path):
    return np.asarray(PIL.Image.open(path).convert('RGB'))


def test_convex_mixtures():
    indices, weights = sample_convex_mixtures(5, 300, seed=3)
    assert indices.shape == weights.shape == (300, 3)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-12)
    assert weights.min() >= 0 and weights.max() <= 1
    assert all(len(set(row)) == 3 for row in indices.tolist())
    assert indices.min() == 0 and indices.max() == 4                        # every anchor gets used
    again = sample_convex_mixtures(5, 300, seed=3)
    assert np.array_equal(again[0], indices) and np.array_equal(again[1], weights)
    assert not np.array_equal(sample_convex_mixtures(5, 300, seed=4)[1], weights)
    with pytest.raises(ValueError, match='at least 3 anchors'):
        sample_convex_mixtures(2, 1, seed=0)


def test_load_anchors_formats(toy):
    stems, anchors = load_anchors(toy['anchors_dir'], 8)
    assert stems == ['a0', 'a1', 'a2', 'a3']
    torch.testing.assert_close(anchors, toy['anchors'], atol=0, rtol=0)


def test_transports_differ_exactly_by_base_projection(toy):
    eg = load_expanded_generator(toy['pkl'])
    B, m = toy['data']['latent_basis'].double(), toy['data']['G_ema'].mapping.w_avg.double()
    v, B_K = B[:, DIM], B[:, [d for d in range(8) if d != DIM]]
    indices, weights = sample_convex_mixtures(4, 6, seed=1)
    default = mystyle_latents(eg, toy['anchors'], indices, weights, 0).double()
    official = mystyle_latents(eg, toy['anchors'], indices, weights, 0, official_transport=True).double()
    A = toy['anchors'].double()
    mixed = torch.stack([sum(w * A[j] for j, w in zip(idx, ws)) for idx, ws in zip(indices, weights)])
    base = mixed @ B_K @ B_K.T + (m @ v)[None, None] * v                   # Eq. 1, single direction
    torch.testing.assert_close(official, mixed + S * v, atol=1e-5, rtol=0)  # official: raw mixture + s v
    torch.testing.assert_close(default, base + S * v, atol=1e-5, rtol=0)    # default: Eq. 3
    torch.testing.assert_close(default - official, base - mixed, atol=1e-5, rtol=0)
    # Base coordinates agree; the repurposed coordinate is w_avg's + s (default) vs the mixture's + s.
    torch.testing.assert_close(default @ B_K, official @ B_K, atol=1e-5, rtol=0)
    torch.testing.assert_close(default @ v, (m @ v + S).expand(6), atol=1e-5, rtol=0)
    torch.testing.assert_close(official @ v, mixed @ v + S, atol=1e-5, rtol=0)
    assert (default - official).abs().max() > 0.1


def test_outputs_match_latents_and_are_deterministic(toy):
    out = toy['root'] / 'out_a'
    result = generate_mystyle(toy['pkl'], toy['anchors_dir'], '5', 5, str(out), seed=2)
    eg = load_expanded_generator(toy['pkl'])
    expected = eg.G.synthesis(eg.broadcast(mystyle_latents(eg, toy['anchors'], result['indices'], result['weights'], 0)),
                              noise_mode='const')
    expected = (expected * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert [p.rsplit('/', 1)[1] for p in result['paths']] == [f'sample{i:04d}.png' for i in range(5)]
    for path, exp in zip(result['paths'], expected):
        assert_images_close(_read_png(path), exp, msg=path)
    record = json.loads((out / 'mixtures.json').read_text())
    assert record['dim'] == DIM and record['domain'] == 'grayscale' and record['transport'] == 'base-projection'
    assert record['samples'][0]['anchors'] == [result['stems'][j] for j in result['indices'][0]]
    # Same seed: same pictures; another seed: different ones; the domain can be named too.
    again = generate_mystyle(toy['pkl'], toy['anchors_dir'], 'grayscale', 5, str(toy['root'] / 'out_b'), seed=2)
    other = generate_mystyle(toy['pkl'], toy['anchors_dir'], 5, 5, str(toy['root'] / 'out_c'), seed=3)
    assert all(np.array_equal(_read_png(a), _read_png(b)) for a, b in zip(result['paths'], again['paths']))
    assert not all(np.array_equal(_read_png(a), _read_png(b)) for a, b in zip(result['paths'], other['paths']))


def test_cli_official_transport(toy):
    out = toy['root'] / 'out_cli'
    proc = subprocess.run([sys.executable, 'generate_mystyle.py', '--network', toy['pkl'], '--anchors', toy['anchors_dir'],
                           '--dim', str(DIM), '--num', '3', '--seed', '4', '--official-transport', '--outdir', str(out)],
                          cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    ref = generate_mystyle(toy['pkl'], toy['anchors_dir'], DIM, 3, str(toy['root'] / 'out_ref'), seed=4,
                           official_transport=True)
    default = generate_mystyle(toy['pkl'], toy['anchors_dir'], DIM, 3, str(toy['root'] / 'out_def'), seed=4)
    for i, (path, dpath) in enumerate(zip(ref['paths'], default['paths'])):
        got = _read_png(out / f'sample{i:04d}.png')
        assert np.array_equal(got, _read_png(path))
        assert not np.array_equal(got, _read_png(dpath))
    assert json.loads((out / 'mixtures.json').read_text())['transport'] == 'official'


def test_errors_before_outdir(toy, tmp_path):
    out = tmp_path / 'out'
    few = tmp_path / 'few'
    few.mkdir()
    for i in range(2):
        np.save(few / f'{i}.npy', np.zeros(8, dtype=np.float32))
    with pytest.raises(dnnlib.util.UserError, match='--anchors: .* 2 anchor file.*at least 3'):
        generate_mystyle(toy['pkl'], str(few), DIM, 2, str(out))
    with pytest.raises(dnnlib.util.UserError, match=r"--dim: '3' is not a domain.*valid.*5 \(grayscale\)"):
        generate_mystyle(toy['pkl'], toy['anchors_dir'], 3, 2, str(out))
    with pytest.raises(dnnlib.util.UserError, match='--anchors: .* is not a folder'):
        generate_mystyle(toy['pkl'], str(tmp_path / 'nope'), DIM, 2, str(out))
    with pytest.raises(dnnlib.util.UserError, match='--num: must be at least 1'):
        generate_mystyle(toy['pkl'], toy['anchors_dir'], DIM, 0, str(out))
    bad = tmp_path / 'bad'
    bad.mkdir()
    for i in range(3):
        np.save(bad / f'{i}.npy', np.random.RandomState(i).randn(4, 8).astype(np.float32))  # W+ with distinct rows
    with pytest.raises(dnnlib.util.UserError, match='--anchors: anchor .*rows that differ'):
        generate_mystyle(toy['pkl'], str(bad), DIM, 2, str(out))
    assert not out.exists()

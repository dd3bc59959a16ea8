"""The domain encoder: identity at initialisation, mean over K references, snapshot round trip
and its errors, the training recipe learning, and the two command lines on a tiny generator."""

import os

import numpy as np
import pytest
import torch

import dnnlib

from conftest import run_cli_inprocess
from tiny_nets import snapshot_data, tiny_discriminator, tiny_generator
from training import cli_helpers, snapshot_io
from training.encoder import domains, fit, pipeline
from training.encoder import training as encoder_training
from training.encoder.encoder import (DomainEncoder, EncoderSnapshotError, load_encoder_snapshot,
                                      save_encoder_snapshot)
from training.encoder.parameterizations import get_parameterization

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def G():
    return tiny_generator(seed=3).eval().requires_grad_(False)


@pytest.fixture(scope='module')
def network_pkl(tmp_path_factory, G):
    path = tmp_path_factory.mktemp('net') / 'tiny.pkl'
    snapshot_io.save_network_pkl(snapshot_data(G, tiny_discriminator()), path)
    return str(path)


def _images(n, seed=0):
    return torch.rand([n, 3, 16, 16], generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_untrained_encoder_is_the_identity_and_averages_references(G):
    param = get_parameterization('rgb_affine', G.synthesis)
    enc = DomainEncoder(param.num_params, param.identity()).eval()
    refs, srcs = _images(3)[None], _images(3, seed=1)[None]
    assert torch.equal(enc(refs, srcs), param.identity()[None])
    torch.nn.init.normal_(enc.head[-1].weight)                       # now a non-trivial map
    together = enc(refs, srcs)
    shuffled = enc(refs[:, [2, 0, 1]], srcs[:, [2, 0, 1]])
    torch.testing.assert_close(together, shuffled, rtol=1e-5, atol=1e-5)
    repeated = enc(refs[:, :1].repeat(1, 4, 1, 1, 1), srcs[:, :1].repeat(1, 4, 1, 1, 1))
    torch.testing.assert_close(repeated, enc(refs[:, :1], srcs[:, :1]), rtol=1e-5, atol=1e-5)
    with pytest.raises(AssertionError):
        enc(refs[0], srcs[0])                                        # missing the K axis


def test_snapshot_round_trip_and_errors(tmp_path, G):
    param = get_parameterization('channel_scale', G.synthesis)
    enc = DomainEncoder(param.num_params, param.identity(), channels=8, hidden=16)
    torch.nn.init.normal_(enc.head[-1].weight)
    path = str(tmp_path / 'enc.pt')
    save_encoder_snapshot(path, enc, 'channel_scale', 'abc', 16, dict(steps=1))
    loaded, info = load_encoder_snapshot(path)
    assert info['parameterization'] == 'channel_scale' and info['source_sha256'] == 'abc'
    refs = _images(2)[None]
    assert torch.equal(loaded(refs, refs), enc.eval()(refs, refs))
    with pytest.raises(EncoderSnapshotError, match='--encoder: file not found'):
        load_encoder_snapshot(str(tmp_path / 'missing.pt'))
    (tmp_path / 'junk.pt').write_bytes(b'not a snapshot')
    with pytest.raises(EncoderSnapshotError, match='is not an encoder snapshot'):
        load_encoder_snapshot(str(tmp_path / 'junk.pt'))
    torch.save(dict(format='something-else'), str(tmp_path / 'other.pt'))
    with pytest.raises(EncoderSnapshotError, match="of format 'domain-encoder/1'"):
        load_encoder_snapshot(str(tmp_path / 'other.pt'))


def test_rgb_affine_training_shortcut_equals_rendering(G):
    param = get_parameterization('rgb_affine', G.synthesis)
    ws = fit.source_latents(G.mapping, 3, 0, param.num_ws)
    theta = param.identity() + 0.3 * torch.randn([3, param.num_params])
    shortcut = encoder_training.render_domains(param, ws, fit.render_source(param, ws), theta)
    torch.testing.assert_close(shortcut, param.render(ws, theta), rtol=1e-5, atol=1e-5)


def test_training_lowers_the_loss_on_unseen_domains(G):
    param = get_parameterization('rgb_affine', G.synthesis)
    opts = encoder_training.EncoderTrainingOptions(steps=150, pool_size=64, lr=3e-3, channels=8, hidden=64)
    enc, losses = encoder_training.train_encoder(param, G.mapping, opts)
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:5])
    ws = fit.source_latents(G.mapping, 16, 7, param.num_ws)
    src = fit.render_source(param, ws)
    domain = domains.compose('grayscale', domains.saturation(0.0))    # held out
    theta = enc(domain(src[:2])[None], src[:2][None])[0]
    before = fit.evaluate_theta(param, param.identity(), ws, src, domain)['error']
    assert fit.evaluate_theta(param, theta, ws, src, domain)['error'] < 0.7 * before


def _write_references(G, folder, seeds, domain):
    os.makedirs(folder, exist_ok=True)
    images = pipeline.render_seeds(G, seeds)
    for seed, image in zip(seeds, domain(images)):
        cli_helpers.save_image(image.clamp(-1, 1), os.path.join(folder, f'seed{seed:04d}.png'))


def test_cli_train_then_encode(tmp_path, capsys, G, network_pkl):
    import encode_domain
    import train_encoder
    outdir = tmp_path / 'enc'
    code, out, err = run_cli_inprocess(train_encoder.main, ['--network', network_pkl, '--outdir', str(outdir), '--steps', '3'], capsys)
    assert code == 0, err
    snapshot = out.strip().splitlines()[-1]
    assert os.path.isabs(snapshot) and os.path.isfile(snapshot)

    refs = tmp_path / 'refs'
    _write_references(G, str(refs), [5, 9], domains.compose('negative', domains.negation()))
    out_images = tmp_path / 'out'
    code, out, err = run_cli_inprocess(encode_domain.main, ['--network', network_pkl, '--encoder', snapshot,
        '--references', str(refs), '--seeds', '0-2', '--outdir', str(out_images)], capsys)
    assert code == 0, err
    for kind in ('base', 'domain'):
        assert sorted(os.listdir(out_images / kind)) == ['seed0000.png', 'seed0001.png', 'seed0002.png']


def test_identity_encoder_renders_the_base(tmp_path, G, network_pkl):
    param = get_parameterization('rgb_affine', G.synthesis)
    path = str(tmp_path / 'identity.pt')
    save_encoder_snapshot(path, DomainEncoder(param.num_params, param.identity()), 'rgb_affine',
                          dnnlib.util.file_sha256(network_pkl), 16, {})
    refs = tmp_path / 'refs'
    _write_references(G, str(refs), [1], domains.compose('negative', domains.negation()))
    result = pipeline.encode(network_pkl, path, str(refs), [0, 3], str(tmp_path / 'out'))
    for base, domain in zip(result['base'], result['domain']):
        assert open(base, 'rb').read() == open(domain, 'rb').read()


@pytest.mark.parametrize('case', ['no-folder', 'bad-name', 'other-network'])
def test_encode_errors_name_the_flag_and_create_nothing(tmp_path, capsys, G, network_pkl, case):
    import encode_domain
    param = get_parameterization('rgb_affine', G.synthesis)
    path = str(tmp_path / 'enc.pt')
    sha = 'f' * 64 if case == 'other-network' else dnnlib.util.file_sha256(network_pkl)
    save_encoder_snapshot(path, DomainEncoder(param.num_params, param.identity()), 'rgb_affine', sha, 16, {})
    refs = tmp_path / 'refs'
    if case != 'no-folder':
        _write_references(G, str(refs), [1], domains.compose('negative', domains.negation()))
    if case == 'bad-name':
        os.rename(refs / 'seed0001.png', refs / 'photo.png')
    out_images = tmp_path / 'out'
    code, out, err = run_cli_inprocess(encode_domain.main, ['--network', network_pkl, '--encoder', path,
        '--references', str(refs), '--seeds', '0', '--outdir', str(out_images)], capsys)
    last = err.strip().splitlines()[-1]
    assert code == 2 and 'Traceback' not in err
    expected = {'no-folder': '--references: no such folder', 'bad-name': 'is not named seedNNNN.png',
                'other-network': '--encoder: the encoder was trained for a different source network'}[case]
    assert expected in last
    assert not out_images.exists()


def test_channel_scale_encoder_trains_through_the_generator(G):
    param = get_parameterization('channel_scale', G.synthesis)
    opts = encoder_training.EncoderTrainingOptions(steps=3, pool_size=16, domains_per_step=2, targets_per_domain=2,
                                                   channels=8, hidden=16)
    enc, losses = encoder_training.train_encoder(param, G.mapping, opts)
    assert all(np.isfinite(losses)) and enc.head[-1].weight.abs().sum() > 0   # gradients reached the zero-init layer
    assert all(p.grad is None for p in G.parameters())


@pytest.mark.parametrize('case', ['missing-network', 'zero-steps'])
def test_train_errors_name_the_flag_and_create_nothing(tmp_path, capsys, network_pkl, case):
    import train_encoder
    network = str(tmp_path / 'missing.pkl') if case == 'missing-network' else network_pkl
    steps = '0' if case == 'zero-steps' else '3'
    outdir = tmp_path / 'enc'
    code, out, err = run_cli_inprocess(train_encoder.main, ['--network', network, '--outdir', str(outdir), '--steps', steps], capsys)
    last = err.strip().splitlines()[-1]
    assert code == 2 and 'Traceback' not in err
    assert {'missing-network': '--network: file not found', 'zero-steps': '--steps: must be at least 1'}[case] in last
    assert not outdir.exists()

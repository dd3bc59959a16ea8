"""The black-box pipeline end to end: batched cached inversion, the adapt/generate functions and
their command lines (adapt_blackbox.py, generate_blackbox.py), snapshots and one-line errors."""

import json
import os

import numpy as np
import PIL.Image
import pytest
import torch

import dnnlib

import adapt_blackbox
import generate_blackbox
from conftest import run_cli_inprocess
from image_compare import assert_images_close
from tiny_nets import snapshot_data, tiny_discriminator, tiny_generator
from training.blackbox import inversion
from training.blackbox import pipeline
from training.blackbox.sampler import SamplerSnapshotError, load_sampler_snapshot
from training.snapshot_io import save_network_pkl
from torch_utils import image_utils

pytestmark = pytest.mark.usefixtures('one_thread')

W_DIM, RES = 8, 16
TINY = ['--steps', '4', '--inversion-steps', '4', '--timesteps', '4', '--batch', '5', '--geom-k', '3',
        '--vgg', 'random']


def _G(seed=0):
    return tiny_generator(W_DIM, resolution=RES, seed=seed).eval().requires_grad_(False)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """A tiny source pickle, a second one, and a folder of 8 target PNGs rendered by the first."""
    root = tmp_path_factory.mktemp('bb')
    torch.manual_seed(0)
    G = _G(0)
    paths = {}
    for name, gen in (('source.pkl', G), ('other.pkl', _G(1))):
        paths[name] = str(root / name)
        save_network_pkl(snapshot_data(gen, tiny_discriminator(resolution=RES)), paths[name])
    targets = root / 'targets'
    targets.mkdir()
    with torch.no_grad():
        images = G(torch.randn(8, W_DIM), None, noise_mode='const')
    for i, image in enumerate(image_utils.to_uint8(images)):
        image_utils.to_pil(image).save(targets / f'{i:02d}.png')
    return dict(root=root, source=paths['source.pkl'], other=paths['other.pkl'], targets=str(targets), G=G)

# ---------------------------------------------------------------------------------------------
# Inversion.


def test_inversion_reconstructs_and_caches(tmp_path, monkeypatch):
    G = _G(0)
    with torch.no_grad():
        ws_true = G.mapping(torch.randn(3, W_DIM), None)
        images = torch.from_numpy(image_utils.to_uint8(G.synthesis(ws_true, noise_mode='const'))).permute(0, 3, 1, 2)
    target = images.float() / 127.5 - 1

    def error(ws):
        with torch.no_grad():
            return float((G.synthesis(ws, noise_mode='const') - target).square().mean())
    cache = str(tmp_path / 'cache')
    ws = inversion.invert_images(G, images, 'sha', cache_dir=cache, num_steps=40, batch_size=2)
    assert ws.shape == (3, G.synthesis.num_ws, W_DIM) and len(os.listdir(cache)) == 3
    start = G.mapping.w_avg if hasattr(G.mapping, 'w_avg') else ws_true.mean(0)
    assert error(ws) < 0.25 * error(start.reshape(1, 1, -1).repeat(3, G.synthesis.num_ws, 1))
    # A re-run reads every latent from the cache: no optimisation at all.
    monkeypatch.setattr(inversion, 'invert_batch', lambda *a, **k: pytest.fail('cached images were re-inverted'))
    torch.testing.assert_close(inversion.invert_images(G, images, 'sha', cache_dir=cache, num_steps=40), ws)
    monkeypatch.undo()
    # An image's latent does not depend on the batch it is inverted in (the key seeds its noise).
    alone = inversion.invert_images(G, images[2:], 'sha', num_steps=40)
    torch.testing.assert_close(alone, ws[2:], atol=1e-4, rtol=1e-4)
    # Other settings (or another generator hash) are other cache entries.
    assert inversion.cache_key(images[0], 'sha', {'num_steps': 60}) != inversion.cache_key(images[0], 'sha', {'num_steps': 61})
    assert inversion.cache_key(images[0], 'sha', {}) != inversion.cache_key(images[0], 'sha2', {})

# ---------------------------------------------------------------------------------------------
# The commands.


def test_adapt_and_generate_end_to_end(setup, tmp_path, capsys):
    outdir = tmp_path / 'run'
    code, out, err = run_cli_inprocess(adapt_blackbox.main, ['--network', setup['source'], '--targets', setup['targets'],
                                                             '--outdir', str(outdir), *TINY], capsys)
    assert code == 0, err
    snapshot = out.strip().splitlines()[-1]
    assert snapshot == os.path.abspath(outdir / 'sampler-snapshot.pt') and os.path.isfile(snapshot)
    options = json.loads((outdir / 'training_options.json').read_text())
    assert options['steps'] == 4 and options['loss'] == 'full' and options['num_targets'] == 8
    assert options['source_sha256'] == dnnlib.util.file_sha256(setup['source'])
    stats = [json.loads(line) for line in (outdir / 'stats.jsonl').read_text().splitlines()]
    assert stats[-1]['step'] == 4 and {'mse', 'kl', 'geom', 'vgg', 'total'} <= set(stats[-1])
    assert len(os.listdir(outdir / 'inversion-cache')) == 8
    sampler, info = load_sampler_snapshot(snapshot)
    assert info['mix_alpha'] == 0.1 and info['unet_kwargs']['num_ws'] == setup['G'].synthesis.num_ws
    assert torch.all(sampler.normalizer.std > 0)

    images_dir = tmp_path / 'images'
    code, out, err = run_cli_inprocess(generate_blackbox.main, ['--network', setup['source'], '--sampler', snapshot,
                                                                '--seeds', '0-5', '--outdir', str(images_dir)], capsys)
    assert code == 0, err
    assert sorted(os.listdir(images_dir)) == [f'seed{s:04d}.png' for s in range(6)]
    # A seed's image does not depend on the other seeds drawn with it (batches of 2 vs one of 6).
    pipeline.generate(setup['source'], snapshot, [4, 1], str(tmp_path / 'again'), batch_size=1)
    for seed in (1, 4):
        assert np.asarray(PIL.Image.open(images_dir / f'seed{seed:04d}.png')).shape == (RES, RES, 3)
        assert_images_close(str(images_dir / f'seed{seed:04d}.png'), str(tmp_path / 'again' / f'seed{seed:04d}.png'))
    a0 = np.asarray(PIL.Image.open(images_dir / 'seed0000.png'), dtype=np.int16)
    assert np.abs(a0 - np.asarray(PIL.Image.open(images_dir / 'seed0001.png'), dtype=np.int16)).max() > 0

    # Re-running the same command reuses the inversion cache and trains the same sampler.
    run_cli_inprocess(adapt_blackbox.main, ['--network', setup['source'], '--targets', setup['targets'],
                                            '--outdir', str(outdir), *TINY], capsys)
    again, _ = load_sampler_snapshot(snapshot)
    for p, q in zip(sampler.parameters(), again.parameters()):
        torch.testing.assert_close(p, q)

    # The sampler refuses another generator, and other files.
    with pytest.raises(SamplerSnapshotError, match='different source network'):
        pipeline.generate(setup['other'], snapshot, [0], str(tmp_path / 'x'))
    with pytest.raises(SamplerSnapshotError, match='not a sampler snapshot'):
        pipeline.generate(setup['source'], setup['source'], [0], str(tmp_path / 'x'))
    assert not (tmp_path / 'x').exists()


@pytest.mark.parametrize('change, flag', [
    (dict(targets='missing'), '--targets'),
    (dict(network='missing.pkl'), '--network'),
    (dict(extra=['--batch', '20']), '--batch'),
    (dict(extra=['--geom-k', '5', '--batch', '4']), '--geom-k'),
    (dict(extra=['--mix-alpha', '2']), '--mix-alpha'),
    (dict(extra=['--steps', '0']), '--steps'),
    (dict(extra=['--ema-decay', '1']), '--ema-decay'),
    (dict(extra=['--step-variance', 'large']), '--step-variance'),
])
def test_adapt_bad_input_is_one_line_and_writes_nothing(setup, tmp_path, capsys, change, flag):
    targets = str(tmp_path / 'missing') if change.get('targets') else setup['targets']
    network = str(tmp_path / 'missing.pkl') if change.get('network') else setup['source']
    outdir = tmp_path / 'out'
    code, out, err = run_cli_inprocess(adapt_blackbox.main, ['--network', network, '--targets', targets,
                                                             '--outdir', str(outdir), *change.get('extra', [])], capsys)
    last = err.strip().splitlines()[-1]
    assert code == 2 and flag in last and 'Traceback' not in err
    assert not outdir.exists()


def test_targets_of_the_wrong_size_are_refused(setup, tmp_path, capsys):
    targets = tmp_path / 'big'
    targets.mkdir()
    PIL.Image.new('RGB', (RES * 2, RES * 2)).save(targets / 'a.png')
    PIL.Image.new('RGB', (RES * 2, RES * 2)).save(targets / 'b.png')
    code, _, err = run_cli_inprocess(adapt_blackbox.main, ['--network', setup['source'], '--targets', str(targets),
                                                           '--outdir', str(tmp_path / 'out'), '--batch', '2', '--loss', 'mse'], capsys)
    assert code == 2 and 'a.png' in err.strip().splitlines()[-1] and f'{RES}x{RES}' in err
    assert not (tmp_path / 'out').exists()

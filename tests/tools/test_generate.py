"""generate.py: seeds -> z (stylegan convention) -> G_ema -> uint8 PNGs, and its one-line errors."""

import os
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch

import dnnlib
import generate
import legacy
from conftest import REPO_ROOT, require_fixtures
from image_compare import assert_images_close
from torch_utils import image_utils
from training import snapshot_io
from training.networks import Discriminator, Generator

FIXTURE = ('stylegan2_tiny', 'tiny32_snapshot.pkl')


def _expected_pixels(G, seed, psi=1.0):
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    with torch.no_grad():
        img = G(z, torch.zeros([1, G.c_dim]), truncation_psi=psi, noise_mode='const')
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].numpy()


def test_pngs_equal_G_ema_const_noise(tmp_path):
    pkl = str(require_fixtures(*FIXTURE))
    paths = generate.generate_images(pkl, [0, 1, 2, 3], str(tmp_path), truncation_psi=0.7)
    assert [os.path.basename(p) for p in paths] == [f'seed{s:04d}.png' for s in range(4)]
    G = legacy.load_network_pkl(pkl)['G_ema']
    for seed, path in zip(range(4), paths):
        np.testing.assert_array_equal(np.array(PIL.Image.open(path)), _expected_pixels(G, seed, psi=0.7))


def test_uint8_conversion_matches_official_pixels():
    # The fixture's reference image (official code, float32) converted the stylegan way equals
    # our conversion of our render within one level.
    ref = np.load(require_fixtures('stylegan2_tiny', 'reference_outputs_extra.npz'))
    inputs = np.load(require_fixtures('stylegan2_tiny', 'reference_outputs.npz'))
    G = legacy.load_network_pkl(str(require_fixtures(*FIXTURE)))['G_ema']
    with torch.no_grad():
        ours = image_utils.to_uint8(G(torch.from_numpy(inputs['z']), torch.from_numpy(inputs['c']), noise_mode='const'))
    official = image_utils.to_uint8(torch.from_numpy(ref['gema_G_forward_const']))
    assert_images_close(ours, official)


def test_conditional_network_needs_class(tmp_path):
    torch.manual_seed(0)
    G = Generator(z_dim=8, c_dim=3, w_dim=8, img_resolution=8, img_channels=3, mapping_kwargs=dict(num_layers=1),
                  synthesis_kwargs=dict(channel_base=32, channel_max=8)).eval()
    pkl = str(tmp_path / 'cond.pkl')
    D = Discriminator(c_dim=3, img_resolution=8, img_channels=3, channel_base=32, channel_max=8)
    snapshot_io.save_network_pkl(dict(G=G, D=D, G_ema=G, augment_pipe=None, training_set_kwargs=None), pkl)
    outdir = tmp_path / 'out'
    with pytest.raises(dnnlib.util.UserError, match='--class is required'):
        generate.generate_images(pkl, [0], str(outdir))
    assert not outdir.exists()  # validated before anything is written
    with pytest.raises(dnnlib.util.UserError, match='out of range'):
        generate.generate_images(pkl, [0], str(outdir), class_idx=3)
    path, = generate.generate_images(pkl, [5], str(outdir), class_idx=2)
    z = torch.from_numpy(np.random.RandomState(5).randn(1, 8)).float()
    with torch.no_grad():
        img = G(z, torch.tensor([[0., 0., 1.]]), noise_mode='const')
    np.testing.assert_array_equal(np.array(PIL.Image.open(path)), image_utils.to_uint8(img)[0])


def test_cli_writes_pngs_and_reports_errors_in_one_line(tmp_path):
    pkl = str(require_fixtures(*FIXTURE))
    run = lambda *args: subprocess.run([sys.executable, 'generate.py', '--network', pkl, *args], cwd=REPO_ROOT,
                                       capture_output=True, text=True, timeout=300)
    result = run('--seeds', '0-3', '--outdir', str(tmp_path / 'out'))
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path / 'out')) == [f'seed{s:04d}.png' for s in range(4)]
    bad = run('--seeds', '5-2', '--outdir', str(tmp_path / 'bad'))
    assert bad.returncode != 0 and 'Traceback' not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith('Error: --seeds')
    assert not (tmp_path / 'bad').exists()
    missing = subprocess.run([sys.executable, 'generate.py', '--network', str(tmp_path / 'nope.pkl'), '--seeds', '0',
                              '--outdir', str(tmp_path / 'bad2')], cwd=REPO_ROOT, capture_output=True, text=True)
    assert missing.returncode != 0 and 'nope.pkl' in missing.stderr.strip().splitlines()[-1]

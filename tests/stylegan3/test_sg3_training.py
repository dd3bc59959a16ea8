"""Training StyleGAN3 from scratch: `train.py --cfg stylegan3-t|stylegan3-r` resolve to the official
stylegan3 settings, the loss follows the StyleGAN3 EMA and blur rules, and a two-step CPU run of
each config (at CPU size) writes a snapshot that loads back and renders finite images."""

import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import legacy
import train
from tests.tiny_nets import tiny_discriminator
from training import launch
from training import loss as loss_module
from training import networks_stylegan3
from training import run_options
from training.synthetic_data import make_synthetic_dataset

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def data16(tmp_path_factory):
    return make_synthetic_dataset(str(tmp_path_factory.mktemp('data') / 'shapes16.zip'), num_images=8,
                                  resolution=16, seed=3, style='shapes')


def _dry_run(tmp_path, data, *args):
    result = CliRunner().invoke(train.main, ['--outdir', str(tmp_path / 'out'), '--data', data, '--metrics', 'none',
                                             '-n', *args], catch_exceptions=False)
    lines = [line for line in result.output.splitlines() if line.strip()]
    return result.exit_code, lines


def test_dry_run_shows_the_official_stylegan3_r_settings(tmp_path, data16):
    code, lines = _dry_run(tmp_path, data16, '--cfg', 'stylegan3-r', '--batch', '32', '--gamma', '2')
    assert code == 0 and 'nothing was created' in lines[-1]
    opts = json.loads('\n'.join(lines[:-1]))
    G, D, loss = opts['G_kwargs'], opts['D_kwargs'], opts['loss_kwargs']
    assert G['class_name'] == 'training.networks_stylegan3.Generator' and 'synthesis_kwargs' not in G
    assert (G['channel_base'], G['channel_max']) == (2 * 32768, 2 * 512)          # R doubles G's channels ...
    assert (D['channel_base'], D['channel_max']) == (32768, 512)                  # ... not D's
    assert G['conv_kernel'] == 1 and G['use_radial_filters'] is True and G['mapping_kwargs'] == {'num_layers': 2}
    assert G['magnitude_ema_beta'] == pytest.approx(0.5 ** (32 / 20000))
    assert D['class_name'] == 'training.networks.Discriminator' and D['architecture'] == 'resnet'
    assert (opts['G_opt_kwargs']['lr'], opts['D_opt_kwargs']['lr']) == (0.0025, 0.002)
    assert opts['G_reg_interval'] is None and opts['ema_kimg'] == 10 and opts['ema_rampup'] == 0.05
    assert loss['pl_weight'] == 0 and loss['style_mixing_prob'] == 0 and loss['r1_gamma'] == 2
    assert loss['update_emas_in_D_fakes'] is True
    assert (loss['blur_init_sigma'], loss['blur_fade_kimg']) == (10, 200)
    assert not (tmp_path / 'out').exists()


def test_stylegan3_t_settings_and_required_flags(tmp_path, data16):
    opts = run_options.setup_training_options(data=data16, cfg='stylegan3-t', batch=16, gamma=8.2, metrics='none',
                                              outdir=str(tmp_path))
    assert opts.G_kwargs['channel_base'] == 32768 and 'conv_kernel' not in opts.G_kwargs
    assert 'blur_init_sigma' not in opts.loss_kwargs and opts.ema_kimg == 5
    with pytest.raises(run_options.OptionError, match=r'--cfg stylegan3-t needs --batch and --gamma'):
        run_options.setup_training_options(data=data16, cfg='stylegan3-t', metrics='none', outdir=str(tmp_path))
    with pytest.raises(run_options.OptionError, match=r'needs --gamma:'):
        run_options.setup_training_options(data=data16, cfg='stylegan3-r', batch=8, metrics='none',
                                           outdir=str(tmp_path))


def test_blur_fades_and_keeps_flat_images():
    G = networks_stylegan3.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                                     channel_base=256, channel_max=8, num_layers=4, num_fp16_res=0)
    loss = loss_module.StyleGAN2Loss('cpu', G.mapping, G.synthesis, tiny_discriminator(), blur_init_sigma=10,
                                     blur_fade_kimg=2)
    assert [loss.blur_sigma(n) for n in (0, 1000, 2000, 5000)] == [10, 5, 0, 0]
    flat = torch.full([2, 3, 16, 16], 0.3)
    interior = loss_module.blur_images(flat, 1.0)[:, :, 3:-3, 3:-3]       # zero padding darkens only the border
    torch.testing.assert_close(interior, torch.full_like(interior, 0.3))  # taps sum to 1
    img = torch.zeros([1, 1, 16, 16])
    img[0, 0, 8, 8] = 1
    blurred = loss_module.blur_images(img, 1.0)                           # radius 3: 7x7 support
    assert blurred.sum() == pytest.approx(1.0) and blurred[0, 0, 8, 8] < 1
    assert torch.count_nonzero(blurred) == 49
    assert torch.equal(loss_module.blur_images(img, 0.3), img)            # radius 0: unchanged


def _tiny_sg3(seed=0):
    torch.manual_seed(seed)
    return networks_stylegan3.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                                        channel_base=256, channel_max=8, num_layers=4, num_fp16_res=0).train()


def _ema_state(G):
    return [G.mapping.w_avg.clone()] + [getattr(G.synthesis, n).magnitude_ema.clone() for n in G.synthesis.layer_names]


@pytest.mark.parametrize('stylegan3_rule', [True, False])
def test_only_D_fakes_move_the_emas_under_the_stylegan3_rule(stylegan3_rule):
    G = _tiny_sg3()
    loss = loss_module.StyleGAN2Loss('cpu', G.mapping, G.synthesis, tiny_discriminator(),
                                     style_mixing_prob=0, pl_weight=0, r1_gamma=0,
                                     update_emas_in_D_fakes=stylegan3_rule)
    z, c, reals = torch.randn([4, 8]), torch.zeros([4, 0]), torch.zeros([4, 3, 16, 16])
    G.requires_grad_(True)
    start = _ema_state(G)
    loss.accumulate_gradients('Gboth', reals, c, z, c, gain=1, cur_nimg=0)
    after_G = _ema_state(G)
    # StyleGAN3 rule: nothing moves in the G phase; StyleGAN2 rule: the W average moves (training mode),
    # the magnitude EMAs never (they need update_emas=True).
    assert torch.equal(after_G[0], start[0]) == stylegan3_rule
    assert all(torch.equal(a, b) for a, b in zip(after_G[1:], start[1:]))
    loss.accumulate_gradients('Dmain', reals, c, z, c, gain=1, cur_nimg=0)
    after_D = _ema_state(G)
    assert not torch.equal(after_D[0], after_G[0])
    moved = [not torch.equal(a, b) for a, b in zip(after_D[1:], after_G[1:])]
    assert all(moved) if stylegan3_rule else not any(moved)


@pytest.mark.parametrize('cfg', ['stylegan3-t-tiny', 'stylegan3-r-tiny'])
def test_two_steps_from_scratch_write_a_snapshot_that_renders(tmp_path, data16, cfg):
    opts = run_options.setup_training_options(data=data16, cfg=cfg, batch=4, kimg=0.008, tick=0.004, snap=1,
                                              metrics='none', workers=0, outdir=str(tmp_path / 'out'))
    opts.grid_size = [2, 2]
    opts.logging['tensorboard'] = False
    result = launch.launch_training(opts, str(tmp_path / 'out'), print_options=False)
    with open(result['last_snapshot'], 'rb') as f:
        snapshot = legacy.load_network_pkl(f)
    G_ema = snapshot['G_ema']
    assert type(G_ema) is networks_stylegan3.Generator
    first = getattr(G_ema.synthesis, G_ema.synthesis.layer_names[0])
    assert first.conv_kernel == (1 if cfg == 'stylegan3-r-tiny' else 3) and first.down_radial == (cfg == 'stylegan3-r-tiny')
    # The D-fake renders moved the magnitude EMAs (copied into G_ema) and the W average.
    assert all(float(getattr(G_ema.synthesis, n).magnitude_ema) != 1 for n in G_ema.synthesis.layer_names)
    assert float(G_ema.mapping.w_avg.abs().sum()) > 0
    z = torch.from_numpy(np.random.RandomState(0).randn(3, G_ema.z_dim)).float()
    with torch.no_grad():
        img = G_ema(z, None, noise_mode='const')
    assert img.shape == (3, 3, 16, 16) and torch.isfinite(img).all() and img.std() > 0
    with open(os.path.join(result['run_dir'], 'training_options.json')) as f:
        assert json.load(f)['loss_kwargs']['update_emas_in_D_fakes'] is True

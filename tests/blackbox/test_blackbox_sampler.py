"""The latent sampler's parts: DDPM schedule and sampling (against closed forms), the 1-D U-Net,
the normaliser, style mixing, the KL term and the VGG-16 perceptual distance."""

import math

import pytest
import torch

from image_compare import assert_images_close

from training.blackbox import loss as loss_module
from training.blackbox import mixing
from training.blackbox import vgg as vgg_module
from training.blackbox.diffusion import DiffusionSchedule, make_betas
from training.blackbox.normalization import LatentNormalizer
from training.blackbox.sampler import LatentSampler
from training.blackbox.unet1d import UNet1D

pytestmark = pytest.mark.usefixtures('one_thread')

# ---------------------------------------------------------------------------------------------
# Schedule.


@pytest.mark.parametrize('schedule', ['cosine', 'linear'])
def test_schedule_coefficients_match_closed_forms(schedule):
    s = DiffusionSchedule(num_timesteps=50, schedule=schedule)
    betas = make_betas(50, schedule)
    assert torch.all(betas > 0) and torch.all(betas < 1)
    abar = torch.tensor([math.prod(1 - float(b) for b in betas[: t + 1]) for t in range(50)], dtype=torch.float64)
    torch.testing.assert_close(s.abar, abar, rtol=1e-10, atol=1e-12)
    assert s.abar[-1] < 1e-2                                    # ends near pure noise
    # The posterior mean is exact for a single point: x0 = x0_hat gives q(x_{t-1} | x_t, x0) and
    # c0 + ct sqrt(abar_t) = sqrt(abar_{t-1}) (the mean of x_{t-1} given x0).
    abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), s.abar[:-1]])
    torch.testing.assert_close(s.coef_x0 + s.coef_xt * s.abar.sqrt(), abar_prev.sqrt())
    # Var(x_{t-1} | x0) = (1 - abar_{t-1}) = ct^2 (1 - abar_t) + posterior var.
    torch.testing.assert_close(s.coef_xt ** 2 * (1 - s.abar) + s.posterior_var, 1 - abar_prev)


def test_add_noise_statistics():
    s = DiffusionSchedule(num_timesteps=20)
    x0 = torch.full([20000, 1], 2.0)
    t = torch.full([20000], 7)
    xt = s.add_noise(x0, torch.randn_like(x0), t)
    torch.testing.assert_close(xt.mean(), 2.0 * s.abar[7].sqrt().float(), atol=0.03, rtol=0)
    torch.testing.assert_close(xt.var(), (1 - s.abar[7]).float(), atol=0.03, rtol=0)


def _gaussian_oracle(s: DiffusionSchedule, m: float, v: float):
    """The exact x0 predictor for data x0 ~ N(m, v): E[x0 | x_t] = m + sqrt(abar) v / (abar v + 1 - abar) (x_t - sqrt(abar) m)."""
    def oracle(x, t):
        a = s.abar[t].float()[:, None]
        return m + a.sqrt() * v / (a * v + 1 - a) * (x - a.sqrt() * m)
    return oracle


@pytest.mark.parametrize('variance', ['beta', 'posterior'])
def test_sampling_with_the_exact_denoiser_recovers_a_gaussian(variance):
    # Both of Ho et al.'s step variances are exact as T -> infinity.
    s = DiffusionSchedule(num_timesteps=1000, variance=variance)
    m, v = 1.5, 0.25
    noise = torch.randn([1000, 20000, 1], generator=torch.Generator().manual_seed(1))
    x = s.sample(_gaussian_oracle(s, m, v), noise)
    assert abs(float(x.mean()) - m) < 0.02 and abs(float(x.var()) - v) < 0.01
    dirac = s.sample(lambda x, t: torch.full_like(x, -3.0), noise[:, :5])       # one point: returned exactly
    torch.testing.assert_close(dirac, torch.full_like(dirac, -3.0))


def test_beta_variance_keeps_standardised_latents_dispersed_at_few_steps():
    # Standardised latents have unit variance per coordinate; at T = 50 sigma^2 = beta_t keeps it
    # (exact for N(0, 1) data), the posterior variance under-disperses (about 0.92): why 'beta' is
    # the default. 40000 draws: the variance's standard error is about 0.007.
    noise = torch.randn([50, 40000, 1], generator=torch.Generator().manual_seed(2))
    var = {}
    for variance in ('beta', 'posterior'):
        s = DiffusionSchedule(num_timesteps=50, variance=variance)
        var[variance] = float(s.sample(_gaussian_oracle(s, 0.0, 1.0), noise).var())
    assert abs(var['beta'] - 1) < 0.03 and var['posterior'] < 0.95, var
    with pytest.raises(ValueError, match='variance'):
        DiffusionSchedule(num_timesteps=50, variance='large')

# ---------------------------------------------------------------------------------------------
# U-Net, normaliser, sampler.


def test_unet_shapes_size_and_errors():
    net = UNet1D(18, 512)
    assert 400_000 < sum(p.numel() for p in net.parameters()) < 480_000     # the paper's ~440K
    small = UNet1D(3, 16, base_channels=8, channel_mults=(1, 2))
    x = torch.randn(4, 3, 16, requires_grad=True)
    y = small(x, torch.tensor([0, 1, 2, 3]))
    assert y.shape == x.shape
    y.square().sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in small.parameters())
    with pytest.raises(ValueError, match='divisible'):
        UNet1D(3, 18, channel_mults=(1, 2, 4))
    with pytest.raises(AssertionError):
        small(torch.randn(4, 2, 16), torch.zeros(4, dtype=torch.int64))


def test_normalizer_round_trip_and_statistics():
    ws = torch.randn(64, 3, 8) * 3 + 5
    ws[:, 0, 0] = 1.0                                                     # constant coordinate: sigma floor
    norm = LatentNormalizer(3, 8).fit(ws)
    hat = norm.normalize(ws)
    torch.testing.assert_close(hat[:, 1:].mean(0), torch.zeros(2, 8), atol=1e-5, rtol=0)
    torch.testing.assert_close(hat[:, 1:].std(0), torch.ones(2, 8), atol=1e-5, rtol=0)
    assert torch.all(torch.isfinite(hat))
    torch.testing.assert_close(norm.denormalize(hat), ws, atol=1e-5, rtol=0)


def test_sampler_samples_depend_only_on_their_seed():
    torch.manual_seed(0)
    sampler = LatentSampler(dict(num_ws=2, w_dim=8, base_channels=8, channel_mults=(1, 2)), dict(num_timesteps=5))
    sampler.normalizer.fit(torch.randn(10, 2, 8))
    together = sampler.sample_seeds([3, 4, 5, 6])
    alone = torch.cat([sampler.sample_seeds([s]) for s in (3, 4, 5, 6)])
    assert_images_close(together, alone)                                   # float latents: the render tolerance
    assert not torch.allclose(together[0], together[1])

# ---------------------------------------------------------------------------------------------
# Mixing, KL, VGG.


def test_style_mixing_touches_only_later_layers():
    ws, w_src = torch.randn(3, 6, 4), torch.randn(3, 4)
    mixed = mixing.mix_styles(ws, w_src, 0.25, 4)
    torch.testing.assert_close(mixed[:, :4], ws[:, :4])
    torch.testing.assert_close(mixed[:, 4:], 0.75 * ws[:, 4:] + 0.25 * w_src[:, None])
    assert mixing.mix_styles(ws, w_src, 0.0, 4) is ws
    with pytest.raises(ValueError, match='alpha'):
        mixing.mix_styles(ws, w_src, 1.5, 4)


def test_kl_is_zero_for_standard_normal_batches_and_grows_otherwise():
    x = torch.randn(20000, 4)
    assert float(loss_module.kl_to_standard_normal(x)) < 1e-3
    # KL(N(m, s^2) || N(0, 1)) = 0.5 (s^2 + m^2 - 1 - log s^2): m = 1, s = 2 -> 0.5 (4 + 1 - 1 - log 4).
    expected = 0.5 * (4 + 1 - 1 - math.log(4))
    assert abs(float(loss_module.kl_to_standard_normal(x * 2 + 1)) - expected) < 0.05


def test_vgg_random_network_and_perceptual_distance():
    vgg = vgg_module.load_vgg16('random', layers=('relu1_2', 'relu2_2'))
    assert vgg.indices == [3, 8] and len(vgg.features) == 9               # cut after the deepest layer
    assert not any(p.requires_grad for p in vgg.parameters())
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).requires_grad_(True)
    assert torch.all(vgg_module.perceptual_distance(vgg, x, x) == 0)
    d = vgg_module.perceptual_distance(vgg, y, x)
    assert d.shape == (2,) and torch.all(d > 0)
    d.sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    again = vgg_module.load_vgg16('random', layers=('relu1_2', 'relu2_2'))   # the same seeded weights
    torch.testing.assert_close(vgg_module.perceptual_distance(again, y.detach(), x), d.detach())


def test_vgg_imagenet_weights_offline_error_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))                       # no cached weights
    import torchvision

    def offline(*args, **kwargs):
        raise OSError('network unreachable')
    monkeypatch.setattr(torchvision.models.VGG16_Weights.IMAGENET1K_V1.__class__, 'get_state_dict', offline)
    with pytest.raises(vgg_module.VggWeightsError) as info:
        vgg_module.load_vgg16('imagenet')
    message = str(info.value)
    assert '\n' not in message and 'vgg16-397923af.pth' in message and '--vgg random' in message


def test_snapshot_keeps_the_step_variance_and_old_snapshots_keep_theirs(tmp_path):
    from training.blackbox.sampler import LEGACY_STEP_VARIANCE, load_sampler_snapshot, save_sampler_snapshot
    sampler = LatentSampler(dict(num_ws=2, w_dim=8, base_channels=8, channel_mults=(1, 2)),
                            dict(num_timesteps=5, variance='beta'))
    path = str(tmp_path / 'new.pt')
    save_sampler_snapshot(path, sampler, 'sha', 0.0, 1, {})
    assert load_sampler_snapshot(path)[0].schedule.variance == 'beta'
    data = torch.load(path, weights_only=True)
    del data['schedule_kwargs']['variance']                                 # written before the option existed
    torch.save(data, tmp_path / 'old.pt')
    assert load_sampler_snapshot(str(tmp_path / 'old.pt'))[0].schedule.variance == LEGACY_STEP_VARIANCE == 'posterior'


def test_train_sampler_ends_with_the_moving_average_of_its_weights():
    from training.blackbox.training import train_sampler
    torch.manual_seed(0)
    net = UNet1D(2, 8, base_channels=8, channel_mults=(1, 2))
    start = [p.detach().clone() for p in net.parameters()]
    iterates = []

    def loss_fn(denoiser, x0, generator):
        t = torch.zeros([len(x0)], dtype=torch.int64)
        loss = (denoiser(x0, t) - x0).square().mean()
        return loss, dict(mse=float(loss))

    def record(step, num_steps, terms):
        iterates.append([p.detach().clone() for p in net.parameters()])      # the live (optimised) weights

    train_sampler(net, loss_fn, torch.randn(6, 2, 8), 5, 3, 1e-2, 0, record, ema_decay=0.5)
    expected = start
    for step, weights in enumerate(iterates):                              # EMA with the warm-up of train_sampler
        decay = min(0.5, (1 + step) / (10 + step))
        expected = [decay * e + (1 - decay) * w for e, w in zip(expected, weights)]
    for got, want in zip(net.parameters(), expected):
        torch.testing.assert_close(got, want)
    assert any(not torch.equal(p, w) for p, w in zip(net.parameters(), iterates[-1]))   # not the last iterate
    with pytest.raises(ValueError, match='ema_decay'):
        train_sampler(net, loss_fn, torch.randn(6, 2, 8), 1, 3, 1e-2, 0, ema_decay=1.0)

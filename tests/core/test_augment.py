"""AugmentPipe (ADA) and the adaptive-p controller: identity at p=0, flip statistics, gradients,
filters against the official pickle, geometric conventions, presets and resume state."""

import io
import math
import pickle

import numpy as np
import pytest
import torch

from conftest import require_fixtures
from torch_utils import persistence
from training import augment
from training.augment import AdaptiveAugment, AugmentPipe


def _images(n=4, c=3, res=16, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand([n, c, res, res], generator=gen) * 2 - 1).to(dtype)


def _smooth_image(res=32):
    """Low-frequency test pattern whose exact shifted/rotated values are known."""
    u = torch.arange(res) + 0.5
    gy, gx = torch.meshgrid(u, u, indexing='ij')
    return torch.stack([torch.sin(2 * math.pi * gx / res + 0.3) * torch.cos(2 * math.pi * gy / res),
                        torch.cos(2 * math.pi * (gx + 2 * gy) / res), gx / res])[None]


def _official_record():
    path = require_fixtures('stylegan2_tiny', 'tiny32_snapshot.pkl')
    with open(path, 'rb') as f:
        return persistence.safe_load(f, str(path))['augment_pipe']

# ---------------------------------------------------------------------------------------------
# Official pickle, filters, persistence.


def test_official_augment_pipe_loads_with_its_p():
    record = _official_record()
    assert record.class_name == 'AugmentPipe'
    pipe = AugmentPipe(**record.state['_init_kwargs'])
    tensors = record.named_tensors()
    assert sorted(tensors) == sorted(pipe.state_dict()) == ['Hz_fbank', 'Hz_geom', 'p']
    # Our filters are derived independently from the published wavelet coefficients.
    torch.testing.assert_close(pipe.Hz_geom, tensors['Hz_geom'], atol=1e-7, rtol=0)
    torch.testing.assert_close(pipe.Hz_fbank, tensors['Hz_fbank'], atol=1e-7, rtol=0)
    persistence.copy_tensors_strict(pipe, tensors, what='augment_pipe')
    assert float(pipe.p) == pytest.approx(0.2)
    # Every stored hyperparameter attribute matches ours (bgc flags on, defaults elsewhere).
    for name, value in record.state.items():
        if not name.startswith('_') and name != 'training':
            assert getattr(pipe, name) == value, name
    assert pipe.rotate == 1.0 and pipe.imgfilter == 0.0


def test_official_snapshot_loads_through_legacy():
    import legacy
    data = legacy.load_network_pkl(str(require_fixtures('stylegan2_tiny', 'tiny32_snapshot.pkl')))
    pipe = data['augment_pipe']
    assert isinstance(pipe, AugmentPipe)  # Not a placeholder: our class, ready to augment.
    assert float(pipe.p) == pytest.approx(0.2) and pipe.hue == 1.0
    x = _images(res=32)
    assert pipe(x).shape == x.shape


def test_pickle_round_trip_keeps_p_and_flags():
    pipe = AugmentPipe(**augment.augpipe_kwargs('bgcfnc'), noise_std=0.3)
    pipe.p.fill_(0.37)
    loaded = persistence.safe_load(io.BytesIO(pickle.dumps(pipe)), 'roundtrip')
    assert isinstance(loaded, AugmentPipe)
    assert float(loaded.p) == pytest.approx(0.37)
    assert loaded.noise_std == 0.3 and loaded.cutout == 1.0


def test_filter_bank_partitions_the_spectrum():
    bank = augment.imgfilter_bank()
    assert bank.shape == (4, 43)
    delta = np.zeros(43)
    delta[21] = 1
    np.testing.assert_allclose(bank.sum(axis=0), delta, atol=1e-12)
    np.testing.assert_allclose(bank, bank[:, ::-1], atol=1e-12)  # Zero phase.
    # Each band passes its octave: band 0 the lowest frequencies, band 3 the highest.
    freqs = np.linspace(0, np.pi, 257)
    response = np.abs(np.exp(-1j * np.outer(freqs, np.arange(43) - 21)) @ bank.T)  # [freq, band]
    peaks = freqs[response.argmax(axis=0)]
    assert list(np.argsort(peaks)) == [0, 1, 2, 3]
    assert response[0, 0] == pytest.approx(1) and np.all(response[0, 1:] < 1e-9)
    assert response[-1, 3] == pytest.approx(1) and np.all(response[-1, :3] < 1e-9)
    lowpass = augment.geom_lowpass()
    assert lowpass.shape == (12,) and lowpass.sum() == pytest.approx(1)


def test_presets_and_unknown_name():
    assert set(augment.AUGPIPE_SPECS) == {'blit', 'geom', 'color', 'filter', 'noise', 'cutout',
                                          'bg', 'bgc', 'bgcf', 'bgcfn', 'bgcfnc'}
    assert augment.AUGPIPE_SPECS['bgc'] == dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1,
                                                brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
    assert set(augment.AUGPIPE_SPECS['bgcfnc']) - set(augment.AUGPIPE_SPECS['bgc']) == {'imgfilter', 'noise', 'cutout'}
    with pytest.raises(ValueError, match='--augpipe.*bgcfnc'):
        augment.augpipe_kwargs('bgcx')

# ---------------------------------------------------------------------------------------------
# Behaviour of the pipeline.


@pytest.mark.parametrize('res', [16, 32])
@pytest.mark.parametrize('preset', list(augment.AUGPIPE_SPECS))
def test_p0_is_identity_and_p1_keeps_shape(preset, res):
    pipe = AugmentPipe(**augment.augpipe_kwargs(preset))
    x = _images(res=res)
    pipe.p.zero_()
    assert torch.equal(pipe(x), x)
    pipe.p.fill_(1)
    y = pipe(x)
    assert y.shape == x.shape and y.dtype == x.dtype and torch.isfinite(y).all()
    assert not torch.equal(y, x)


def test_xflip_flips_half_of_the_samples_exactly():
    torch.manual_seed(123)
    pipe = AugmentPipe(xflip=1)
    x = _images(n=400)
    y = pipe(x)
    same = (y == x).flatten(1).all(dim=1)
    flipped = (y == x.flip(3)).flatten(1).all(dim=1)
    assert bool((same | flipped).all())  # Pixel-exact: blitting never resamples.
    # Binomial(400, 1/2): sd 10, so +-60 is a 6-sigma band.
    assert 140 <= int(flipped.sum()) <= 260


def test_rotate90_is_an_exact_quarter_turn():
    torch.manual_seed(5)
    pipe = AugmentPipe(rotate90=1)
    x = _images(n=64)
    y = pipe(x)
    turns = [torch.stack([(y[i] == torch.rot90(x[i], k, dims=(1, 2))).all() for k in range(4)]) for i in range(64)]
    turns = torch.stack(turns)
    assert bool((turns.sum(dim=1) == 1).all())
    assert bool((turns.sum(dim=0) > 0).all())  # All four rotations occur.


def test_resampling_agrees_with_blitting_and_with_exact_warps():
    pipe = AugmentPipe()
    x = _smooth_image(32)
    interior = (slice(None), slice(None), slice(8, -8), slice(8, -8))  # Away from the reflected borders.
    flip = augment._scale2d(-1.0, 1, 1, 'cpu')
    quarter = augment._rotate2d(torch.tensor([math.pi / 2]), 1, 'cpu')
    for G_inv in [torch.eye(3)[None], flip, quarter, flip @ augment._translate2d(3.0, -2.0, 1, 'cpu')]:
        exact = pipe._apply_affine(x, G_inv)
        resampled = pipe._resample(x, G_inv)
        assert (exact - resampled)[interior].abs().max() < 1e-2
    # Fractional shift by half a pixel: output(x) = input(x - 0.5) for the smooth channel 0.
    u = torch.arange(32) + 0.5
    gy, gx = torch.meshgrid(u, u, indexing='ij')
    shifted = pipe._resample(x, augment._translate2d(-0.5, 0.0, 1, 'cpu'))
    expected = torch.sin(2 * math.pi * (gx - 0.5) / 32 + 0.3) * torch.cos(2 * math.pi * gy / 32)
    assert (shifted[0, 0] - expected)[4:-4, 4:-4].abs().max() < 2e-3


def test_brightness_adds_the_debug_quantile():
    pipe = AugmentPipe(brightness=1)
    x = _images()
    y = pipe(x, debug_percentile=0.9)
    offset = 0.2 * math.sqrt(2) * torch.erfinv(torch.tensor(0.8)).item()
    torch.testing.assert_close(y, x + offset, atol=1e-6, rtol=0)
    pipe.p.fill_(1)
    torch.manual_seed(0)
    y = pipe(_images(n=256))
    shifts = (y - _images(n=256)).mean(dim=[1, 2, 3])
    assert shifts.std() == pytest.approx(0.2, rel=0.2)  # brightness_std


def test_cutout_removes_the_expected_area():
    pipe = AugmentPipe(cutout=1)
    y = pipe(torch.ones([2, 3, 32, 32]), debug_percentile=0.5)
    assert (y == 0).float().mean() == pytest.approx(0.25)  # cutout_size 0.5 squared.


def test_debug_percentile_is_deterministic():
    pipe = AugmentPipe(**augment.augpipe_kwargs('bgcfnc'))
    pipe.p.zero_()  # The debug path ignores p.
    x = _images(res=32)
    a = pipe(x, debug_percentile=0.25)
    torch.manual_seed(99)
    b = pipe(x, debug_percentile=0.25)
    assert torch.equal(a, b)
    assert not torch.equal(a, x)
    assert not torch.equal(a, pipe(x, debug_percentile=0.75))


def test_grayscale_colour_and_channel_error():
    pipe = AugmentPipe(**augment.augpipe_kwargs('color'))
    y = pipe(_images(c=1), debug_percentile=0.8)
    assert y.shape == (4, 1, 16, 16)
    with pytest.raises(ValueError, match='1 or 3 channels'):
        pipe(_images(c=4))


def test_colour_gradcheck():
    pipe = AugmentPipe(**augment.augpipe_kwargs('color'))
    x = _images(n=1, res=4, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: pipe(t, debug_percentile=0.3), (x,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize('preset', ['bg', 'bgcfnc'])
def test_gradients_match_finite_differences(preset):
    # For fixed random parameters (debug path) the pipeline is affine in the images, so a central
    # difference along a random direction must equal the autograd directional derivative.
    pipe = AugmentPipe(**augment.augpipe_kwargs(preset))
    x = _images(n=2, res=16, dtype=torch.float64).requires_grad_(True)
    v = _images(n=2, res=16, seed=1, dtype=torch.float64)
    w = _images(n=2, res=16, seed=2, dtype=torch.float64)
    (grad,) = torch.autograd.grad((pipe(x, debug_percentile=0.3) * w).sum(), x)
    with torch.no_grad():
        eps = 1e-3
        fd = ((pipe(x + eps * v, debug_percentile=0.3) - pipe(x - eps * v, debug_percentile=0.3)) * w).sum() / (2 * eps)
    assert float((grad * v).sum()) == pytest.approx(float(fd), rel=1e-6)
    pipe.p.fill_(1)
    (grad,) = torch.autograd.grad(pipe(x).square().sum(), x)  # Random path, mixed blit/resampled samples.
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_matches_cpu_on_the_debug_path():
    pipe = AugmentPipe(**augment.augpipe_kwargs('bgcf'))
    x = _images(res=32)
    cpu = pipe(x, debug_percentile=0.3)
    gpu = pipe.cuda()(x.cuda(), debug_percentile=0.3)
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)
    pipe.p.fill_(1)
    y = pipe(x.cuda().requires_grad_(True))
    assert y.device.type == 'cuda' and y.shape == x.shape

# ---------------------------------------------------------------------------------------------
# Adaptive p.


def test_adaptive_augment_moves_p_and_resumes():
    pipe = AugmentPipe(xflip=1)
    pipe.p.zero_()
    ada = AdaptiveAugment(pipe, batch_size=32, target=0.6, interval=4, speed_kimg=1)
    step = 32 * 4 / 1000
    for batch_idx in range(1, 9):
        ada.accumulate(torch.ones([32, 1]))  # D is sure every real is real: overfitting.
        assert ada.step(batch_idx) == (batch_idx % 4 == 0)
    assert ada.p == pytest.approx(2 * step)
    assert ada.last_rt == pytest.approx(1.0)

    ada.accumulate(-torch.ones([32, 1]))
    ada.accumulate(torch.ones([16, 1]))
    state = ada.state_dict()
    assert state['count'] == 48 and state['sign_sum'] == -16

    resumed = AdaptiveAugment(AugmentPipe(xflip=1), batch_size=32, target=0.6, interval=4, speed_kimg=1)
    resumed.load_state_dict(pickle.loads(pickle.dumps(state)))
    assert resumed.p == pytest.approx(2 * step)
    for batch_idx in range(9, 13):
        resumed.step(batch_idx)
    assert resumed.p == pytest.approx(step)  # r_t = -1/3 < target: one step down.
    for batch_idx in range(13, 41):
        resumed.accumulate(-torch.ones([8]))
        resumed.step(batch_idx)
    assert resumed.p == 0.0  # Floored at zero.
    with pytest.raises(ValueError, match='--target'):
        AdaptiveAugment(pipe, batch_size=4, target=1.5)

"""The encoder's training family of colour domains (training/encoder/domains.py): the colour-balance
and tint members are the maps they claim, and the sampler never draws a held-out domain or one
within HELD_OUT_RADIUS of it."""

import numpy as np
import pytest
import torch

from training import image_transforms
from training.encoder import domains

pytestmark = pytest.mark.usefixtures('one_thread')


def _images(n=2, seed=0):
    return torch.rand([n, 3, 5, 4], generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_unit_gains_and_zero_offsets_are_the_identity():
    x = _images()
    domain = domains.compose('balance', domains.channel_gains([1, 1, 1], [0, 0, 0]))
    torch.testing.assert_close(domain(x), x, rtol=0, atol=1e-7)


def test_gains_and_offsets_act_per_channel():
    x = _images()
    gains, offsets = [0.7, 1.2, 1.0], [0.1, -0.2, 0.05]
    y = domains.compose('balance', domains.channel_gains(gains, offsets))(x)
    for c in range(3):
        torch.testing.assert_close(y[:, c], gains[c] * x[:, c] + offsets[c], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('gray', list(domains.GRAY_WEIGHTS))
def test_a_tint_of_a_gray_image_is_the_gray_times_the_colour(gray):
    # In [0, 1] terms u' = colour * u for a gray u (r = g = b), whatever the gray conversion.
    u = torch.rand([2, 1, 5, 4], generator=torch.Generator().manual_seed(1), dtype=torch.float64).expand(2, 3, 5, 4)
    colour = torch.tensor([1.3, 0.9, 0.6], dtype=torch.float64)
    y = domains.compose('tint', domains.tint(colour, domains.GRAY_WEIGHTS[gray]))(2 * u - 1)
    torch.testing.assert_close((y + 1) / 2, colour.reshape(1, 3, 1, 1) * u, rtol=1e-6, atol=1e-6)


def test_a_white_tint_with_equal_weights_is_grayscale():
    x = _images()
    domain = domains.compose('white', domains.tint([1, 1, 1]))
    torch.testing.assert_close(domain(x), image_transforms.grayscale(x), rtol=1e-6, atol=1e-6)
    assert domains.is_near_held_out(domain)


def test_tint_weights_must_sum_to_one():
    with pytest.raises(ValueError, match='gray_weights must sum to 1'):
        domains.tint([1, 1, 1], (0.5, 0.5, 0.5))


def test_distance_is_the_largest_difference_of_the_maps():
    a = domains.compose('a', domains.channel_gains([1, 1, 1], [0, 0, 0]))
    b = domains.compose('b', domains.channel_gains([1, 1.1, 1], [0, 0, -0.25]))
    assert domains.distance(a, a) == 0
    assert domains.distance(a, b) == pytest.approx(0.25)


def test_a_luma_tint_of_the_sepia_colour_is_near_sepia_and_excluded():
    # Why the neighbourhood is needed: the 'tint' kind can come within a few hundredths of sepia.
    sepia = domains.compose('sepia', domains.sepia())
    colour = domains.SEPIA_01.sum(dim=1)                          # Sepia's white point in [0, 1].
    near = domains.compose('near-sepia', domains.tint(colour, domains.GRAY_WEIGHTS['rec601']))
    assert domains.distance(near, sepia) < 0.1
    assert domains.is_near_held_out(near)


def test_the_sampler_redraws_members_near_a_held_out_domain(monkeypatch):
    near_sepia = domains.compose('near-sepia', domains.tint(domains.SEPIA_01.sum(dim=1), domains.GRAY_WEIGHTS['rec601']))
    fine = domains.compose('fine', domains.channel_gains([1.2, 1, 0.8], [0, 0, 0]))
    draws = iter([near_sepia, near_sepia, fine])
    monkeypatch.setattr(domains, '_SAMPLERS', {kind: (lambda rng: next(draws)) for kind in domains.TRAINING_KINDS})
    assert domains.sample_training_domain(np.random.default_rng(0)) is fine


def test_the_training_family_keeps_clear_of_every_held_out_domain():
    rng = np.random.default_rng(0)
    held = domains.held_out_domains()
    kinds = set()
    for _ in range(1500):
        d = domains.sample_training_domain(rng)
        kinds.add('tint' if d.name.startswith('tint') else 'balance' if d.name.startswith('gain') else 'hsv')
        for h in held:
            assert domains.distance(d, h) >= domains.HELD_OUT_RADIUS, (d.name, h.name)
    assert kinds == set(domains.TRAINING_KINDS)

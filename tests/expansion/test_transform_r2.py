"""R^2 of Transform domains (interfaces.md section 5), checked on values computed by hand."""

import pytest
import torch

from training.expansion import evaluation
from training.expansion.subspaces import LatentSubspaces
from training.expansion.tasks.base import TaskBatch
from training.image_transforms import get_transform


def test_r2_is_one_for_the_exact_target_and_zero_for_its_colour_means():
    target = torch.randn([3, 3, 8, 8])
    assert evaluation.r_squared(target.clone(), target) == pytest.approx(1.0, abs=1e-12)
    means = target.mean(dim=[2, 3], keepdim=True).expand_as(target)       # per image, per channel
    assert evaluation.r_squared(means, target) == pytest.approx(0.0, abs=1e-12)


def test_r2_by_hand_uses_per_channel_means():
    # One image, two channels, 1x2 pixels. Channel 0: target [0, 2] (mean 1, spread 1 + 1 = 2);
    # channel 1: target [3, 3] (flat, spread 0). Residual: channel 1 is off by 1 in one pixel.
    target = torch.tensor([[[[0.0, 2.0]], [[3.0, 3.0]]]])
    domain = torch.tensor([[[[0.0, 2.0]], [[2.0, 3.0]]]])
    assert evaluation.r_squared(domain, target) == pytest.approx(1 - 1 / 2)   # not 1 - 1/6 (one global mean)
    # Two images: the sums run over every image before the ratio is taken.
    target2 = torch.cat([target, torch.tensor([[[[1.0, 5.0]], [[0.0, 0.0]]]])])   # spread 4 + 4 = 8
    domain2 = torch.cat([domain, torch.tensor([[[[1.0, 5.0]], [[0.0, 3.0]]]])])   # residual 9
    assert evaluation.r_squared(domain2, target2) == pytest.approx(1 - (1 + 9) / (2 + 8))


def test_r2_rejects_mismatched_shapes_and_flat_targets():
    with pytest.raises(ValueError, match='shapes'):
        evaluation.r_squared(torch.zeros([1, 3, 4, 4]), torch.zeros([1, 3, 4, 5]))
    with pytest.raises(ValueError, match='flat'):
        evaluation.r_squared(torch.zeros([1, 3, 4, 4]), torch.ones([1, 3, 4, 4]))


class _ToySynthesis(torch.nn.Module):
    """Images from W: three channels of the first coordinates times a ramp, negated when the
    last coordinate (the repurposed one) is past half the subspace distance."""
    num_ws = 2

    def __init__(self, distance):
        super().__init__()
        self.distance = distance

    def forward(self, ws, noise_mode='const'):
        w = ws[:, 0]
        ramp = torch.linspace(-1, 1, 4).reshape(1, 1, 1, 4).expand(1, 1, 4, 4)   # along the width
        img = w[:, :3].reshape(-1, 3, 1, 1) * ramp + 0.1 * w[:, 3:6].reshape(-1, 3, 1, 1)
        sign = torch.where(w[:, -1] > self.distance / 2, -1.0, 1.0).reshape(-1, 1, 1, 1)
        return img * sign


class _FakeTask:
    def __init__(self, name, transform):
        self.name, self.T = name, get_transform(transform)

    def eval_latents(self, n, seed=0):
        return TaskBatch(w=torch.randn([n, 8], generator=torch.Generator().manual_seed(seed)))


def test_transform_r2_of_a_domain_that_is_exactly_the_negative():
    distance = 4.0
    subspaces = LatentSubspaces(torch.eye(8), [7, 6], distance)
    G_synthesis = _ToySynthesis(distance)
    tasks = [_FakeTask('negative', 'negative'), _FakeTask('hflip', 'hflip')]
    r2 = evaluation.transform_r2(G_synthesis, None, subspaces, tasks, torch.zeros([8]), n=5, seed=1)
    assert list(r2) == ['negative', 'hflip']
    assert r2['negative'] == pytest.approx(1.0, abs=1e-6)     # the domain is -base: exactly T(base)
    # Domain 'hflip' moves along dim 6, which the toy ignores: the domain is the base image
    # a * ramp + b, its target the mirror image -a * ramp + b. By hand: R^2 = 1 - sum (2 a ramp)^2 /
    # sum (a ramp)^2 = 1 - 4 = -3 (the constant b is each image's per-channel mean).
    assert r2['hflip'] == pytest.approx(-3.0, abs=1e-5)

"""L_geom (training/blackbox/geometry.py, paper Eq. 3-5): invariant to orthogonal maps from
latents to images, positive under distorting ones, stable, and its gradients reach only the
sampler (the generator is frozen)."""

import pytest
import torch

from tiny_nets import tiny_generator
from training.blackbox import geometry
from training.blackbox.diffusion import DiffusionSchedule
from training.blackbox.loss import BlackboxLoss, LOSS_WEIGHTS
from training.blackbox.normalization import LatentNormalizer
from training.blackbox.unet1d import UNet1D
from training.blackbox import vgg as vgg_module

pytestmark = pytest.mark.usefixtures('one_thread')


def _orthogonal(n: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q.float()


def test_tangent_bases_are_orthonormal_and_span_the_top_directions():
    points = torch.randn(8, 20)
    T = geometry.tangent_subspaces(points, k=4)
    assert T.shape == (8, 20, 4)
    torch.testing.assert_close(T.transpose(1, 2) @ T, torch.eye(4).expand(8, 4, 4), atol=1e-4, rtol=0)
    S = geometry.subspace_similarity(T)
    torch.testing.assert_close(S.diagonal(), torch.full([8], 2.0), atol=1e-4, rtol=0)   # sqrt(k)
    assert torch.all(S <= 2.0 + 1e-4)


def test_zero_under_orthogonal_map_and_scaling():
    latents = torch.randn(10, 3, 4)                                      # flattened: 12-d
    Q = _orthogonal(12, seed=1)
    images = (latents.flatten(1) @ Q.T * 2.5).reshape(10, 3, 2, 2)     # a rotation and a uniform scale
    assert float(geometry.geometry_loss(latents, images, k=3)) < 1e-8


def test_positive_under_a_distorting_map():
    # The cosine of Eq. 4 compares rows of positive similarities, so distortions give small values
    # (1e-6 .. 1e-5 here), still eight orders of magnitude above an orthogonal map's rounding error.
    latents = torch.randn(10, 12)
    stretch = torch.ones(12)
    stretch[:2] = 30.0
    rotated = latents @ _orthogonal(12, seed=2).T
    baseline = float(geometry.geometry_loss(latents, rotated, k=3))
    assert baseline < 1e-10
    for images in (latents * stretch, torch.tanh(latents * stretch), latents ** 3):
        assert float(geometry.geometry_loss(latents, images, k=3)) > max(1e-7, 1e4 * baseline)


def test_errors_and_finite_gradients_for_close_points():
    with pytest.raises(ValueError, match='k=8'):
        geometry.tangent_subspaces(torch.randn(8, 5), k=8)
    with pytest.raises(ValueError, match='latents but'):
        geometry.geometry_loss(torch.randn(4, 3), torch.randn(5, 3))
    latents = (torch.randn(8, 6) * 1e-3).requires_grad_(True)           # nearly coincident points
    loss = geometry.geometry_loss(latents, torch.tanh(latents * 50) ** 3, k=5)
    loss.backward()
    assert torch.isfinite(loss) and torch.all(torch.isfinite(latents.grad))


def test_full_loss_gradients_reach_only_the_sampler():
    torch.manual_seed(0)
    G = tiny_generator(w_dim=8, resolution=16, seed=0).eval()
    num_ws = G.synthesis.num_ws
    ws = G.mapping(torch.randn(16, 8), None).detach() + 0.1 * torch.randn(16, num_ws, 8)
    norm = LatentNormalizer(num_ws, 8).fit(ws)
    denoiser = UNet1D(num_ws, 8, base_channels=8, channel_mults=(1, 2))
    vgg = vgg_module.VGGFeatures(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU()), layers=(1,))
    loss_fn = BlackboxLoss(G, norm, DiffusionSchedule(10), vgg=vgg, weights=LOSS_WEIGHTS, mix_alpha=0.2)
    total, terms = loss_fn(denoiser, norm.normalize(ws[:8]), torch.Generator().manual_seed(0))
    assert set(terms) == {'mse', 'kl', 'geom', 'vgg'} and all(v > 0 for v in terms.values())
    total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in denoiser.parameters())
    assert all(p.grad is None for p in G.parameters()) and all(p.grad is None for p in vgg.parameters())
    # Each image-space term alone still reaches the sampler (through the frozen generator).
    for name in ('geom', 'vgg'):
        denoiser.zero_grad(set_to_none=True)
        only = {**dict(mse=0.0, kl=0.0, geom=0.0, vgg=0.0), name: 1.0}
        total, _ = BlackboxLoss(G, norm, DiffusionSchedule(10), vgg=vgg, weights=only, mix_alpha=0.2)(
            denoiser, norm.normalize(ws[:8]), torch.Generator().manual_seed(0))
        total.backward()
        assert denoiser.input.weight.grad.abs().sum() > 0, name

"""Domain parameterisations on a frozen tiny synthesis network: identity renders the source,
theta acts as its equation says, gradients reach theta only, per-sample theta, the fit, R^2."""

import pytest
import torch

from tiny_nets import tiny_generator
from training import image_transforms
from training.encoder import domains, fit
from training.encoder.parameterizations import PARAMETERIZATIONS, ParameterizationError, get_parameterization

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def G():
    return tiny_generator(seed=1).eval().requires_grad_(False)


def _ws(G, n, seed=0):
    z = torch.randn([n, G.z_dim], generator=torch.Generator().manual_seed(seed))
    return G.mapping(z, None)


@pytest.mark.parametrize('name', list(PARAMETERIZATIONS))
def test_identity_renders_the_source_bitwise(G, name):
    p = get_parameterization(name, G.synthesis)
    ws = _ws(G, 3)
    source = G.synthesis(ws, noise_mode='const')
    assert torch.equal(p.render(ws, p.identity()), source)
    assert torch.equal(p.render(ws, p.identity().expand(3, -1)), source)     # per-sample identity
    assert torch.equal(G.synthesis(ws, noise_mode='const'), source)         # hooks removed afterwards


@pytest.mark.parametrize('name', list(PARAMETERIZATIONS))
def test_gradients_reach_theta_only_and_change_the_render(G, name):
    p = get_parameterization(name, G.synthesis)
    ws = _ws(G, 2)
    theta = (p.identity() + 0.1 * torch.randn([p.num_params])).requires_grad_(True)
    img = p.render(ws, theta)
    assert (img - G.synthesis(ws, noise_mode='const')).abs().max() > 1e-3
    img.square().mean().backward()
    assert theta.grad is not None and theta.grad.abs().sum() > 0
    assert all(param.grad is None for param in G.parameters())


@pytest.mark.parametrize('name', list(PARAMETERIZATIONS))
def test_per_sample_theta_matches_separate_renders(G, name):
    p = get_parameterization(name, G.synthesis)
    ws = _ws(G, 2)
    thetas = p.identity() + 0.2 * torch.randn([2, p.num_params])
    together = p.render(ws, thetas)
    apart = torch.cat([p.render(ws[i:i + 1], thetas[i]) for i in range(2)])
    torch.testing.assert_close(together, apart, rtol=1e-4, atol=1e-5)


def test_sizes_follow_the_layers(G):
    convs = [m for m in G.synthesis.modules() if type(m).__name__ == 'SynthesisLayer']
    torgbs = [m for m in G.synthesis.modules() if type(m).__name__ == 'ToRGBLayer']
    in_channels = sum(m.weight.shape[1] for m in convs + torgbs)
    assert get_parameterization('channel_scale', G.synthesis).num_params == in_channels
    assert get_parameterization('style_offset', G.synthesis).num_params == in_channels
    assert get_parameterization('rgb_affine', G.synthesis).num_params == 12


def test_rgb_affine_is_a_colour_map_of_the_source(G):
    p = get_parameterization('rgb_affine', G.synthesis)
    ws = _ws(G, 2)
    domain = domains.compose('sepia', domains.sepia())
    M, b = domain.tensors()
    theta = torch.cat([M.flatten(), b])
    torch.testing.assert_close(p.render(ws, theta), domain(G.synthesis(ws, noise_mode='const')), rtol=1e-5, atol=1e-5)


def test_channel_scale_equals_scaling_the_weight_input_channels(G):
    # Eq. 10: w'_ijk = d_i w_ijk. Scaling one conv's weight along its input channels by d must
    # render what theta = d on that conv (ones elsewhere) renders.
    import copy
    p = get_parameterization('channel_scale', G.synthesis)
    layer, (start, stop) = next(iter(p.slices.items()))
    d = 1 + 0.3 * torch.randn([stop - start])
    theta = p.identity().clone()
    theta[start:stop] = d
    ws = _ws(G, 2)
    G2 = copy.deepcopy(G)
    conv = [m for m in G2.synthesis.modules() if type(m).__name__ == 'SynthesisLayer'][0]
    assert conv.weight.shape[1] == stop - start
    conv.weight.mul_(d.reshape(1, -1, 1, 1))
    torch.testing.assert_close(p.render(ws, theta), G2.synthesis(ws, noise_mode='const'), rtol=1e-4, atol=1e-5)


def test_bad_theta_and_unknown_name_are_clear_errors(G):
    p = get_parameterization('rgb_affine', G.synthesis)
    with pytest.raises(ValueError, match=r'theta must be \[P\] or \[N, P\] with P = 12'):
        p.render(_ws(G, 1), torch.zeros([5]))
    with pytest.raises(ParameterizationError, match='unknown parameterization .*channel_scale, style_offset, rgb_affine'):
        get_parameterization('scales', G.synthesis)


def test_fit_recovers_a_colour_domain_and_r2_measures_it(G):
    p = get_parameterization('rgb_affine', G.synthesis)
    ws_train, ws_eval = _ws(G, 16, seed=1), _ws(G, 8, seed=2)
    src_train, src_eval = fit.render_source(p, ws_train), fit.render_source(p, ws_eval)
    T = image_transforms.grayscale
    before = fit.evaluate_theta(p, p.identity(), ws_eval, src_eval, T)
    result = fit.fit_domain(p, ws_train, src_train, T, steps=120, batch_size=8, lr=0.05)
    after = fit.evaluate_theta(p, result.theta, ws_eval, src_eval, T)
    assert result.losses[-1] < 0.05 * result.losses[0]
    assert after['r2'] > 0.98 and after['error'] < 0.05 * before['error']
    assert before['r2'] < 0.9


def test_r_squared_values():
    target = torch.randn([2, 3, 4, 4])
    assert domains.r_squared(target, target) == 1.0
    per_channel_mean = target.mean(dim=[2, 3], keepdim=True).expand_as(target)
    assert abs(domains.r_squared(per_channel_mean, target)) < 1e-9


def test_training_family_never_samples_a_held_out_domain():
    import numpy as np
    rng = np.random.default_rng(0)
    held = {d.name: torch.tensor(d.matrix) for d in domains.held_out_domains()}
    for _ in range(300):
        d = domains.sample_training_domain(rng)
        M = torch.tensor(d.matrix)
        for name, H in held.items():
            assert (M - H).abs().max() > 0.02, (d.name, name)

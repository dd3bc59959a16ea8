"""training/networks_stylegan3.py (and the StyleGAN2 D of StyleGAN3 pickles) against the official
StyleGAN3 outputs in tests/fixtures/stylegan3_tiny (config T and conditional config R).

Networks are built from the fixture's constructor arguments and filled from `state_dicts.npz`
strictly by name; tolerances are the fixture README's ("Measured differences").
"""

import copy

import numpy as np
import pytest
import torch

import sg3_fixture
from training import networks_stylegan3

pytestmark = pytest.mark.usefixtures('one_thread')

WS_TOL = dict(atol=1e-5, rtol=0)
IMG_TOL = dict(atol=1e-4, rtol=1e-5)
EMA_TOL = dict(atol=1e-5, rtol=0)
FILTER_TOL = dict(atol=1e-6, rtol=0)
# float64 stage by stage: measured max |diff| 7e-15 for the batch of 4, 1.3e-11 for one sample of it
# (the batch-wide style normalisation, cancelled exactly only in exact arithmetic, rounds differently);
# 1e-9 stays three orders below the float32 error (1e-6).
F64_TOL = dict(atol=1e-9, rtol=0)


def t(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array))


@pytest.fixture(scope='module', params=sg3_fixture.CONFIGS)
def fx(request):
    cfg = request.param
    return dict(cfg=cfg, ref=sg3_fixture.arrays(cfg, 'reference_outputs'),
                act=sg3_fixture.arrays(cfg, 'activations'),
                G=sg3_fixture.fill(sg3_fixture.build_G(cfg), cfg, 'G'),
                G_ema=sg3_fixture.fill(sg3_fixture.build_G(cfg), cfg, 'G_ema'),
                D=sg3_fixture.fill(sg3_fixture.build_D(cfg), cfg, 'D'))

# ---------------------------------------------------------------------------------------------


def test_state_dict_names_order_shapes_and_kinds(fx):
    listing = sg3_fixture.read_listing(fx['cfg'])
    for net in ('G', 'G_ema', 'D'):
        module = fx[net]
        params = dict(module.named_parameters())
        ours = [('param' if name in params else 'buffer', name, list(v.shape)) for name, v in module.state_dict().items()]
        assert ours == listing[net], f'{net}: state_dict differs from the official listing'


def test_designed_filters(fx):
    """Our constructor's filter design (firwin / radial jinc) equals the official one."""
    G = sg3_fixture.build_G(fx['cfg'])
    designed = {k: v for k, v in fx['ref'].items() if k.startswith('designed.')}
    assert len(designed) == 2 * (len(G.synthesis.layer_names) - 1)  # ToRGB has no filters
    state = G.state_dict()
    for key, value in designed.items():
        _, layer, name = key.split('.')
        torch.testing.assert_close(state[f'synthesis.{layer}.{name}'], t(value), **FILTER_TOL, msg=key)
    torgb = getattr(G.synthesis, G.synthesis.layer_names[-1])
    assert torgb.up_filter is None and torgb.down_filter is None


def test_layer_schedule_matches_readme(fx):
    synthesis = fx['G_ema'].synthesis
    expected_t = [[9, 8, 9, 8]] * 5 + [[-6, -9, -6, -9]] + [[9, 8, 9, 8]] * 7 + [[-11, -12, -11, -12], [0, 0, 0, 0]]
    expected_r = [[11, 10, 11, 10]] * 5 + [[-2, -5, -2, -5]] + [[11, 10, 11, 10]] * 7 + [[-9, -10, -9, -10], [0, 0, 0, 0]]
    paddings = [getattr(synthesis, name).padding for name in synthesis.layer_names]
    assert paddings == (expected_t if fx['cfg'] == 't' else expected_r)
    radial = [getattr(synthesis, name).down_radial for name in synthesis.layer_names]
    assert radial == ([False] * 15 if fx['cfg'] == 't' else [True] * 12 + [False] * 3)
    assert synthesis.num_ws == 16


def test_mapping(fx):
    ref, z, c = fx['ref'], t(fx['ref']['z']), t(fx['ref']['c'])
    torch.testing.assert_close(fx['G_ema'].mapping(z, c), t(ref['gema_ws_psi1']), **WS_TOL)
    torch.testing.assert_close(fx['G_ema'].mapping(z, c, truncation_psi=0.7), t(ref['gema_ws_psi07']), **WS_TOL)
    torch.testing.assert_close(fx['G'].mapping(z, c), t(ref['g_ws_psi1']), **WS_TOL)


def test_input_and_first_layers(fx):
    """Activations of SynthesisInput and L0..L2 for sample 0."""
    synthesis, act = fx['G_ema'].synthesis, fx['act']
    ws = t(fx['ref']['gema_ws_psi1'])[:1]
    assert list(act['act_layer_names'][1:]) == synthesis.layer_names[:3]
    x = synthesis.input(ws[:, 0])
    torch.testing.assert_close(x, t(act['act_input']), **IMG_TOL)
    for idx in range(3):
        x = getattr(synthesis, synthesis.layer_names[idx])(x, ws[:, idx + 1])
        torch.testing.assert_close(x, t(act[f'act_layer{idx}']), **IMG_TOL, msg=synthesis.layer_names[idx])


def test_images(fx):
    ref, z, c = fx['ref'], t(fx['ref']['z']), t(fx['ref']['c'])
    G, G_ema = fx['G'], fx['G_ema']
    torch.testing.assert_close(G_ema.synthesis(t(ref['gema_ws_psi1'])), t(ref['gema_img_psi1']), **IMG_TOL)
    torch.testing.assert_close(G_ema(z, c, truncation_psi=0.7), t(ref['gema_G_forward_psi07']), **IMG_TOL)
    assert np.array_equal(ref['gema_G_forward_psi07'], ref['gema_img_psi07'])  # README: G(z) = synthesis(ws)
    torch.testing.assert_close(G(z, c), t(ref['g_G_forward']), **IMG_TOL)


def test_noise_mode_is_accepted_and_ignored(fx):
    ws = t(fx['ref']['gema_ws_psi1'])[:2]
    synthesis = fx['G_ema'].synthesis
    const = synthesis(ws, noise_mode='const')
    assert torch.equal(synthesis(ws, noise_mode='random'), const)
    assert torch.equal(synthesis(ws, noise_mode='none'), const)
    with pytest.raises(ValueError, match='noise_mode'):
        synthesis(ws, noise_mode='constant')


def test_discriminator_logits(fx):
    ref, c = fx['ref'], t(fx['ref']['c'])
    torch.testing.assert_close(fx['D'](t(ref['gema_img_psi1']), c), t(ref['d_logits_gema_img']), **IMG_TOL)
    images8 = torch.cat([t(ref['gema_img_psi1']), t(ref['g_G_forward'])])
    torch.testing.assert_close(fx['D'](images8, torch.cat([c, c])), t(ref['d_logits_batch8']), **IMG_TOL)


def test_ema_updates(fx):
    """One G(z, c, update_emas=True) on a training-mode copy updates w_avg and every magnitude EMA."""
    ref = fx['ref']
    G = copy.deepcopy(fx['G_ema']).train()
    names = G.synthesis.layer_names
    before = torch.stack([getattr(G.synthesis, n).magnitude_ema for n in names])
    torch.testing.assert_close(before, t(ref['magnitude_ema_before_update']), atol=0, rtol=0)
    torch.testing.assert_close(G.mapping.w_avg, t(ref['w_avg_before_update']), atol=0, rtol=0)
    with torch.no_grad():
        G(t(ref['z']), t(ref['c']), update_emas=True)
    after = torch.stack([getattr(G.synthesis, n).magnitude_ema for n in names])
    torch.testing.assert_close(after, t(ref['magnitude_ema_after_update']), **EMA_TOL)
    torch.testing.assert_close(G.mapping.w_avg, t(ref['w_avg_after_update']), **EMA_TOL)
    # update_emas=False leaves them alone, even in training mode.
    G(t(ref['z']), t(ref['c']), update_emas=False)
    torch.testing.assert_close(G.mapping.w_avg, t(ref['w_avg_after_update']), **EMA_TOL)
    # Default (None) in training mode: the W average moves (StyleGAN2 rule), the magnitude EMAs stay.
    magnitudes = [getattr(G.synthesis, n).magnitude_ema.clone() for n in names]
    w_avg = G.mapping.w_avg.clone()
    G(t(ref['z']), t(ref['c']))
    assert not torch.equal(G.mapping.w_avg, w_avg)
    assert all(torch.equal(getattr(G.synthesis, n).magnitude_ema, m) for n, m in zip(names, magnitudes))


def test_float64_references(fx):
    """Cast with .double(), each stage matches the official float64 run from the stored float32 inputs."""
    ref, f64 = fx['ref'], sg3_fixture.arrays(fx['cfg'], 'reference_outputs_f64')
    G64 = copy.deepcopy(fx['G_ema']).double()
    z, c = t(ref['z']).float().double(), t(ref['c']).double()
    torch.testing.assert_close(G64.mapping(z, c), t(f64['gema_ws_psi1']), **F64_TOL)
    torch.testing.assert_close(G64.mapping(z, c, truncation_psi=0.7), t(f64['gema_ws_psi07']), **F64_TOL)
    image = G64.synthesis(t(ref['gema_ws_psi07'][:1]).double())  # one sample: float64 convolutions are slow
    assert image.dtype == torch.float64
    torch.testing.assert_close(image, t(f64['gema_img_psi07'][:1]), **F64_TOL)
    D64 = copy.deepcopy(fx['D']).double()
    torch.testing.assert_close(D64(t(ref['gema_img_psi1']).double(), c), t(f64['d_logits_gema_img']), **F64_TOL)


def test_set_input_transform_writes_the_fixture_transform(fx):
    """The fixture's transform is the inverse of a 10-degree rotation with translation (0.1, -0.05)."""
    G = copy.deepcopy(fx['G_ema'])
    networks_stylegan3.set_input_transform(G, translate=(0.1, -0.05), rotate_deg=10)
    torch.testing.assert_close(G.synthesis.input.transform, t(fx['ref']['input_transform']), atol=1e-7, rtol=0)

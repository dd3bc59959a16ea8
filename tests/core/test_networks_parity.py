"""training/networks.py against the official stylegan2-ada-pytorch outputs stored in the tiny32 fixtures.

The networks are built from the fixture's configuration, filled from `state_dicts.npz` by state_dict
name (strict: same names, shapes and parameter/buffer kinds), and must reproduce
`reference_outputs*.npz` (README "Reference arrays"; tolerances from its "Determinism" table).
"""

import numpy as np
import pytest
import torch

from conftest import require_fixtures
from training import networks

FIXTURE = 'stylegan2_tiny'

# float32 tolerances (fixture README): the official run and ours may differ in thread count.
WS_TOL = dict(atol=1e-5, rtol=0)
IMG_TOL = dict(atol=1e-4, rtol=1e-5)
PROBE_TOL = dict(atol=1e-3, rtol=1e-5)
# float64: measured max |diff| is 0 (same op order); 1e-12 / 1e-11 leaves room for float64 rounding
# from other thread counts (values up to ~12) while staying 5 orders below the float32 error.
WS64_TOL = dict(atol=1e-12, rtol=0)
IMG64_TOL = dict(atol=1e-11, rtol=0)

# ---------------------------------------------------------------------------------------------


def build_generator() -> networks.Generator:
    """The fixture's G / G_ema configuration (README "Configuration")."""
    return networks.Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
                              mapping_kwargs=dict(num_layers=2),
                              synthesis_kwargs=dict(channel_base=192, channel_max=24, num_fp16_res=0,
                                                    conv_clamp=None))


def build_discriminator() -> networks.Discriminator:
    """The fixture's D configuration."""
    return networks.Discriminator(c_dim=0, img_resolution=32, img_channels=3, architecture='resnet',
                                  channel_base=192, channel_max=24, num_fp16_res=0, conv_clamp=None,
                                  block_kwargs={}, mapping_kwargs={}, epilogue_kwargs=dict(mbstd_group_size=4))


def read_listing(path) -> dict:
    """state_dict_listing.txt -> {network: [(kind, name, shape), ...]} in file order."""
    listing: dict = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith('#'):
            continue
        net, kind, name, shape, _dtype = line.split('\t')
        shape = [int(s) for s in shape.strip('[]').split(',') if s.strip()]
        listing.setdefault(net, []).append((kind, name, shape))
    return listing


def load_from_npz(module: torch.nn.Module, state_dicts, net: str, listing: dict) -> torch.nn.Module:
    """Copy the `<net>.<name>` tensors into `module`; every name must exist on both sides with equal
    shape and parameter/buffer kind."""
    params = dict(module.named_parameters())
    buffers = dict(module.named_buffers())
    ours = {**params, **buffers}
    theirs = {k[len(net) + 1:]: k for k in state_dicts.files if k.startswith(net + '.')}
    assert set(ours) == set(theirs), (f'{net}: missing in ours {sorted(set(theirs) - set(ours))}, '
                                      f'extra in ours {sorted(set(ours) - set(theirs))}')
    kinds = {name: kind for kind, name, _ in listing[net]}
    with torch.no_grad():
        for name, tensor in ours.items():
            value = torch.from_numpy(state_dicts[theirs[name]])
            assert list(tensor.shape) == list(value.shape), f'{net}.{name}: {list(tensor.shape)} vs {list(value.shape)}'
            assert kinds[name] == ('param' if name in params else 'buffer'), f'{net}.{name}: wrong kind'
            tensor.copy_(value)
    return module.eval().requires_grad_(False)


@pytest.fixture(scope='module')
def fx():
    """Networks filled from the fixture plus the reference arrays."""
    root = require_fixtures(FIXTURE)
    state_dicts = np.load(root / 'state_dicts.npz')
    listing = read_listing(root / 'state_dict_listing.txt')
    torch.manual_seed(0)
    arrays = {}
    for fname in ('reference_outputs', 'reference_outputs_extra', 'reference_outputs_probes'):
        with np.load(root / f'{fname}.npz') as data:
            arrays.update({k: torch.from_numpy(data[k]) for k in data.files})
    with np.load(root / 'reference_outputs_f64.npz') as data:
        f64 = {k: torch.from_numpy(data[k]) for k in data.files}
    return dict(
        G=load_from_npz(build_generator(), state_dicts, 'G', listing),
        G_ema=load_from_npz(build_generator(), state_dicts, 'G_ema', listing),
        D=load_from_npz(build_discriminator(), state_dicts, 'D', listing),
        ref=arrays, f64=f64)


def assert_close(actual, expected, tol, what):
    diff = (actual.double() - expected.double()).abs().max().item()
    assert torch.allclose(actual.double(), expected.double(), **tol), f'{what}: max |diff| {diff:.3g} exceeds {tol}'

# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def test_mapping_and_truncation(fx):
    ref = fx['ref']
    mapping = fx['G_ema'].mapping
    assert_close(mapping(ref['z'], ref['c']), ref['gema_ws_psi1'], WS_TOL, 'ws psi=1')
    assert_close(mapping(ref['z'], ref['c'], truncation_psi=0.7), ref['gema_ws_psi07'], WS_TOL, 'ws psi=0.7')
    assert torch.equal(mapping.w_avg, ref['w_avg_before_update']), 'eval-mode mapping must not touch w_avg'


@torch.no_grad()
def test_synthesis_noise_modes_and_fusing(fx):
    ref = fx['ref']
    synthesis = fx['G_ema'].synthesis
    assert_close(synthesis(ref['gema_ws_psi1'], noise_mode='const'), ref['gema_img_psi1_const'], IMG_TOL,
                 'image psi=1 const')
    assert_close(synthesis(ref['gema_ws_psi07'], noise_mode='const'), ref['gema_img_psi07_const'], IMG_TOL,
                 'image psi=0.7 const')
    assert_close(synthesis(ref['gema_ws_psi1'], noise_mode='const', fused_modconv=False),
                 ref['gema_img_psi1_const_unfused'], IMG_TOL, 'image unfused')
    assert_close(synthesis(ref['gema_ws_psi1'], noise_mode='none'), ref['gema_img_psi1_none'], IMG_TOL,
                 'image noise none')


@torch.no_grad()
def test_full_generator_forward(fx):
    ref = fx['ref']
    assert_close(fx['G_ema'](ref['z'], ref['c'], noise_mode='const'), ref['gema_G_forward_const'], IMG_TOL, 'G_ema')
    assert_close(fx['G'](ref['z'], ref['c'], noise_mode='const'), ref['g_G_forward_const'], IMG_TOL, 'G')


@torch.no_grad()
def test_discriminator_logits(fx):
    ref = fx['ref']
    D = fx['D']
    assert_close(D(ref['gema_G_forward_const'], ref['c']), ref['d_logits_gema_img'], IMG_TOL, 'D batch 4')
    # Batch 8 with group size 4: two minibatch-std groups {0,2,4,6} and {1,3,5,7}.
    img8 = torch.cat([ref['gema_G_forward_const'], ref['g_G_forward_const']])
    c8 = torch.cat([ref['c'], ref['c']])
    assert_close(D(img8, c8), ref['d_logits_batch8'], IMG_TOL, 'D batch 8')


@torch.no_grad()
def test_large_activation_probes(fx):
    ref = fx['ref']
    assert_close(fx['G_ema'].synthesis(30 * ref['gema_ws_psi1'], noise_mode='const'), ref['gema_img_ws_x30_const'],
                 PROBE_TOL, 'x30 image probe')
    assert_close(fx['D'](30 * ref['gema_G_forward_const'], ref['c']), ref['d_logits_img_x30'], PROBE_TOL,
                 'x30 D probe')


@torch.no_grad()
def test_w_avg_update_in_training_mode(fx):
    ref = fx['ref']
    mapping = build_generator().mapping
    mapping.load_state_dict(fx['G_ema'].mapping.state_dict())
    mapping.train()
    mapping(ref['z'], ref['c'], skip_w_avg_update=True)
    assert torch.equal(mapping.w_avg, ref['w_avg_before_update']), 'skip_w_avg_update must leave w_avg alone'
    mapping(ref['z'], ref['c'])
    assert_close(mapping.w_avg, ref['w_avg_after_update'], WS_TOL, 'w_avg after one training-mode call')


@torch.no_grad()
def test_float64_references(fx):
    """Each stage in float64 from the stored float32 input (README "Float64 references")."""
    ref, f64 = fx['ref'], fx['f64']
    G_ema = build_generator().double()
    G_ema.load_state_dict(fx['G_ema'].state_dict())
    G_ema.eval()
    D = build_discriminator().double()
    D.load_state_dict(fx['D'].state_dict())
    D.eval()
    z, c = ref['z'].double(), ref['c'].double()
    assert_close(G_ema.mapping(z, c), f64['gema_ws_psi1'], WS64_TOL, 'float64 ws psi=1')
    assert_close(G_ema.mapping(z, c, truncation_psi=0.7), f64['gema_ws_psi07'], WS64_TOL, 'float64 ws psi=0.7')
    img = G_ema.synthesis(ref['gema_ws_psi1'].double(), noise_mode='const')
    assert img.dtype == torch.float64
    assert_close(img, f64['gema_img_psi1_const'], IMG64_TOL, 'float64 image')
    logits = D(ref['gema_G_forward_const'].double(), c)
    assert logits.dtype == torch.float64
    assert_close(logits, f64['d_logits_gema_img'], IMG64_TOL, 'float64 D logits')

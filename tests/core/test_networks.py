"""training/networks.py on tiny random networks: architectures, labels, mapping, noise, precision,
clamping, Freeze-D, gradients (incl. double backward and gradcheck) and state_dict layout."""

import copy
import pickle

import numpy as np
import pytest
import torch

from conftest import require_fixtures
from torch_utils import persistence
from torch_utils.ops import upfirdn2d
from training import networks

# ---------------------------------------------------------------------------------------------


def tiny_G(resolution=16, c_dim=0, architecture='skip', mapping_kwargs=None, **synthesis_kwargs):
    """A small generator: w_dim 8, channels min(64 // r, 8)."""
    synthesis_kwargs = dict(dict(channel_base=64, channel_max=8, architecture=architecture), **synthesis_kwargs)
    return networks.Generator(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=resolution, img_channels=3,
                              mapping_kwargs=mapping_kwargs or dict(num_layers=2), synthesis_kwargs=synthesis_kwargs)


def tiny_D(resolution=16, c_dim=0, architecture='resnet', **kwargs):
    """A small discriminator: channels min(64 // r, 8), minibatch-std groups of 2."""
    kwargs = dict(dict(channel_base=64, channel_max=8, epilogue_kwargs=dict(mbstd_group_size=2)), **kwargs)
    return networks.Discriminator(c_dim=c_dim, img_resolution=resolution, img_channels=3, architecture=architecture,
                                  **kwargs)


def randomize_buffers_and_noise(G):
    """Non-zero noise strengths and w_avg, so noise and truncation matter."""
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith('noise_strength'):
                p.copy_(0.5 + torch.rand([]))
        G.mapping.w_avg.copy_(torch.randn_like(G.mapping.w_avg))
    return G


def read_listing_names(path) -> dict:
    """state_dict_listing.txt -> {network: [(kind, name, shape), ...]} in file order."""
    out: dict = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith('#'):
            net, kind, name, shape, _ = line.split('\t')
            out.setdefault(net, []).append((kind, name, [int(s) for s in shape.strip('[]').split(',') if s.strip()]))
    return out


def state_dict_entries(module):
    params = {id(p) for p in module.parameters()}
    return [('param' if id(t) in params else 'buffer', name, list(t.shape))
            for name, t in module.state_dict(keep_vars=True).items()]

# ---------------------------------------------------------------------------------------------
# Architectures and shapes.


@pytest.mark.parametrize('resolution', [16, 32])
@pytest.mark.parametrize('architecture', ['orig', 'skip', 'resnet'])
def test_generator_architectures(architecture, resolution):
    G = tiny_G(resolution, architecture=architecture).eval()
    z = torch.randn([2, 8])
    img = G(z, None)
    assert img.shape == (2, 3, resolution, resolution) and img.dtype == torch.float32
    assert torch.isfinite(img).all()
    log2 = int(np.log2(resolution))
    assert G.num_ws == 2 * log2 - 2
    names = set(G.state_dict())
    blocks = [2 ** i for i in range(2, log2 + 1)]
    torgbs = {r for r in blocks if f'synthesis.b{r}.torgb.weight' in names}
    assert torgbs == (set(blocks) if architecture == 'skip' else {resolution})
    skips = {r for r in blocks if f'synthesis.b{r}.skip.weight' in names}
    assert skips == (set(blocks[1:]) if architecture == 'resnet' else set())


@pytest.mark.parametrize('resolution', [16, 32])
@pytest.mark.parametrize('architecture', ['orig', 'skip', 'resnet'])
def test_discriminator_architectures(architecture, resolution):
    D = tiny_D(resolution, architecture=architecture).eval()
    logits = D(torch.randn([4, 3, resolution, resolution]), None)
    assert logits.shape == (4, 1) and torch.isfinite(logits).all()
    names = set(D.state_dict())
    assert ('b4.fromrgb.weight' in names) == (architecture == 'skip')
    fromrgb = {r for r in D.block_resolutions if f'b{r}.fromrgb.weight' in names}
    assert fromrgb == (set(D.block_resolutions) if architecture == 'skip' else {resolution})
    assert all((f'b{r}.skip.weight' in names) == (architecture == 'resnet') for r in D.block_resolutions)


def test_bad_constructor_arguments_raise():
    with pytest.raises(ValueError, match='architecture'):
        tiny_G(architecture='stylegan1')
    with pytest.raises(ValueError, match='img_resolution'):
        tiny_G(resolution=24)
    with pytest.raises(ValueError, match='architecture'):
        tiny_D(architecture='bogus')
    with pytest.raises(ValueError, match='noise_mode'):
        tiny_G().eval()(torch.randn([1, 8]), None, noise_mode='fixed')

# ---------------------------------------------------------------------------------------------
# Labels and the mapping network.


def test_conditional_generator_and_discriminator_use_the_label():
    G = tiny_G(c_dim=3).eval()
    D = tiny_D(c_dim=3).eval()
    assert 'mapping.embed.weight' in G.state_dict() and 'mapping.embed.weight' in D.state_dict()
    assert D.b4.cmap_dim == 8 and D.mapping.num_layers == 8          # defaults: C(4) and 8 layers
    z = torch.randn([2, 8])
    c1 = torch.eye(3)[[0, 1]]
    c2 = torch.eye(3)[[2, 2]]
    img1 = G(z, c1, noise_mode='const')
    img2 = G(z, c2, noise_mode='const')
    assert (img1 - img2).abs().max() > 1e-3
    assert (D(img1, c1) - D(img1, c2)).abs().max() > 1e-6


def test_mapping_with_embed_only():
    mapping = networks.MappingNetwork(z_dim=0, c_dim=3, w_dim=8, num_ws=None, num_layers=0, w_avg_beta=None)
    assert list(mapping.state_dict()) == ['embed.weight', 'embed.bias']
    c = torch.randn([5, 3])
    out = mapping(None, c)
    assert out.shape == (5, 8)
    expected = networks.normalize_2nd_moment(mapping.embed(c))
    assert torch.equal(out, expected)
    # The converted-D case: a conditional D whose label mapping has only the embed layer.
    D = tiny_D(c_dim=3, mapping_kwargs=dict(num_layers=0)).eval()
    mapping_names = sorted(k for k in D.state_dict() if k.startswith('mapping.'))
    assert mapping_names == ['mapping.embed.bias', 'mapping.embed.weight']
    assert D(torch.randn([2, 3, 16, 16]), torch.eye(3)[:2]).shape == (2, 1)
    with pytest.raises(ValueError, match='num_layers=0'):
        networks.MappingNetwork(z_dim=4, c_dim=3, w_dim=8, num_ws=None, num_layers=0)


def test_truncation_cutoff_only_touches_first_rows():
    G = randomize_buffers_and_noise(tiny_G()).eval()
    z = torch.randn([3, 8])
    ws = G.mapping(z, None)
    ws_cut = G.mapping(z, None, truncation_psi=0.5, truncation_cutoff=3)
    ws_all = G.mapping(z, None, truncation_psi=0.5)
    w_avg = G.mapping.w_avg
    assert torch.equal(ws_cut[:, 3:], ws[:, 3:])
    assert torch.allclose(ws_cut[:, :3], w_avg + 0.5 * (ws[:, :3] - w_avg), atol=1e-6)
    assert torch.allclose(ws_all, w_avg + 0.5 * (ws - w_avg), atol=1e-6)
    assert torch.equal(G.mapping(z, None, truncation_psi=0), w_avg.expand_as(ws))


def test_w_avg_tracking_rules():
    G = randomize_buffers_and_noise(tiny_G())
    z = torch.randn([4, 8])
    before = G.mapping.w_avg.clone()
    G.eval()
    G(z, None)
    assert torch.equal(G.mapping.w_avg, before), 'eval mode: no update'
    G.train()
    G.mapping(z, None, skip_w_avg_update=True)
    G(z, None, update_emas=False)
    assert torch.equal(G.mapping.w_avg, before), 'skip_w_avg_update / update_emas=False: no update'
    with torch.no_grad():
        w = G.mapping.fc1(G.mapping.fc0(networks.normalize_2nd_moment(z)))
    G(z, None)                                                              # training mode updates
    expected = before * 0.995 + w.mean(0) * 0.005
    assert torch.allclose(G.mapping.w_avg, expected, atol=1e-6)
    G.eval()
    after_train = G.mapping.w_avg.clone()
    G(z, None, update_emas=True)                                            # stylegan3 switch: explicit
    assert not torch.equal(G.mapping.w_avg, after_train)
    with pytest.raises(ValueError, match='update_emas'):
        G.mapping(z, None, skip_w_avg_update=True, update_emas=True)

# ---------------------------------------------------------------------------------------------
# Noise, modulated convolution paths.


def test_noise_modes():
    G = randomize_buffers_and_noise(tiny_G()).eval()
    ws = G.mapping(torch.randn([2, 8]), None)
    const1 = G.synthesis(ws, noise_mode='const')
    const2 = G.synthesis(ws, noise_mode='const')
    assert torch.equal(const1, const2)
    rand1 = G.synthesis(ws, noise_mode='random')
    rand2 = G.synthesis(ws, noise_mode='random')
    assert (rand1 - rand2).abs().max() > 1e-3
    none1 = G.synthesis(ws, noise_mode='none')
    assert (none1 - const1).abs().max() > 1e-3
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith('noise_strength'):
                p.mul_(10)
    assert torch.equal(G.synthesis(ws, noise_mode='none'), none1), "'none' must ignore noise_strength"
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith('noise_strength'):
                p.zero_()
    assert torch.equal(G.synthesis(ws, noise_mode='const'), none1)


@pytest.mark.parametrize('architecture', ['skip', 'resnet'])
def test_fused_and_unfused_modconv_agree(architecture):
    G = randomize_buffers_and_noise(tiny_G(32, architecture=architecture)).eval()
    ws = G.mapping(torch.randn([3, 8]), None)
    fused = G.synthesis(ws, noise_mode='const', fused_modconv=True)
    unfused = G.synthesis(ws, noise_mode='const', fused_modconv=False)
    assert torch.allclose(fused, unfused, atol=1e-5), (fused - unfused).abs().max()


def test_fused_modconv_default_rule():
    block = tiny_G().synthesis.b8
    seen = []
    block.conv1.forward = (lambda orig: (lambda *a, **kw: seen.append(kw['fused_modconv']) or orig(*a, **kw)))(
        block.conv1.forward)
    x, ws = torch.randn([2, 8, 4, 4]), torch.randn([2, 3, 8])
    block.eval()(x, None, ws)
    block.train()(x, None, ws)
    assert seen == [True, False]

# ---------------------------------------------------------------------------------------------
# Precision and clamping.


def test_fp16_blocks_run_float32_on_cpu_and_match_force_fp32():
    G = tiny_G(32, num_fp16_res=2, conv_clamp=256, fp16_channels_last=True)
    D = tiny_D(32, num_fp16_res=2, conv_clamp=256, block_kwargs=dict(fp16_channels_last=True))
    assert [G.synthesis.b32.use_fp16, G.synthesis.b16.use_fp16, G.synthesis.b8.use_fp16] == [True, True, False]
    assert [D.b32.use_fp16, D.b16.use_fp16, D.b8.use_fp16] == [True, True, False]
    dtypes = []
    hook = G.synthesis.b32.conv1.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    z = torch.randn([2, 8])
    for mode in ('eval', 'train'):
        getattr(G, mode)()
        getattr(D, mode)()
        img = G(z, None, noise_mode='const')
        assert torch.equal(img, G(z, None, noise_mode='const', force_fp32=True))
        assert torch.equal(D(img, None), D(img, None, force_fp32=True))
    hook.remove()
    assert dtypes and all(d == torch.float32 for d in dtypes)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='float16 blocks only run in float16 on CUDA')
def test_fp16_blocks_use_float16_on_cuda():
    G = tiny_G(32, num_fp16_res=2, conv_clamp=256).cuda().eval()
    dtypes = []
    G.synthesis.b32.conv1.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    z = torch.randn([2, 8], device='cuda')
    img = G(z, None, noise_mode='const')
    ref = G(z, None, noise_mode='const', force_fp32=True)
    assert dtypes[0] == torch.float16 and img.dtype == torch.float32
    assert (img - ref).abs().max() < 0.1 * ref.abs().max() + 1e-2


def test_conv_clamp_bounds_layer_outputs():
    z = torch.randn([2, 8])
    outputs = {'clamped': [], 'free': []}
    for key, clamp in (('clamped', 256), ('free', None)):
        torch.manual_seed(5)
        G = tiny_G(conv_clamp=clamp).eval()
        for name, module in G.named_modules():
            if isinstance(module, (networks.ToRGBLayer, networks.SynthesisLayer)):
                module.register_forward_hook(lambda m, i, o, key=key: outputs[key].append(o.abs().max().item()))
        ws = G.mapping(z, None)
        G.synthesis(300 * ws, noise_mode='const')
    assert max(outputs['free']) > 256, 'probe too weak: nothing would be clamped'
    assert max(outputs['clamped']) <= 256
    D_free = tiny_D(conv_clamp=None).eval()
    D_clamped = tiny_D(conv_clamp=256).eval()
    D_clamped.load_state_dict(D_free.state_dict())
    x = 1000 * torch.randn([2, 3, 16, 16])
    assert D_free.b16.fromrgb(x).abs().max() > 256 and D_clamped.b16.fromrgb(x).abs().max() <= 256


def test_float64_module_computes_in_float64():
    G = tiny_G().double().eval()
    D = tiny_D().double().eval()
    img = G(torch.randn([2, 8], dtype=torch.float64), None, noise_mode='const')
    assert img.dtype == torch.float64 and D(img, None).dtype == torch.float64

# ---------------------------------------------------------------------------------------------
# Freeze-D.


def test_freeze_layers_turns_first_layers_into_buffers():
    D_free = tiny_D(32)
    D = tiny_D(32, block_kwargs=dict(freeze_layers=5))
    assert list(D.state_dict()) != list(D_free.state_dict())                # buffers precede children params
    assert set(D.state_dict()) == set(D_free.state_dict())
    buffers = dict(D.named_buffers())
    params = dict(D.named_parameters())
    # Layer indices: b32 fromrgb 0, conv0 1, conv1 2, skip 3; b16 conv0 4, conv1 5, ...
    for name in ['b32.fromrgb', 'b32.conv0', 'b32.conv1', 'b16.conv0']:
        assert f'{name}.weight' in buffers and f'{name}.weight' not in params
    assert 'b32.skip.weight' in buffers
    for name in ['b16.conv1', 'b8.conv0', 'b4.conv']:
        assert f'{name}.weight' in params
    assert [D.b32.first_layer_idx, D.b16.first_layer_idx, D.b8.first_layer_idx] == [0, 4, 7]
    D.load_state_dict(D_free.state_dict())
    x = torch.randn([2, 3, 32, 32])
    assert torch.equal(D.eval()(x, None), D_free.eval()(x, None))

# ---------------------------------------------------------------------------------------------
# Minibatch standard deviation.


def test_minibatch_std_groups_samples_by_stride():
    layer = networks.MinibatchStdLayer(group_size=2, num_channels=1)
    x = torch.randn([4, 3, 2, 2])
    out = layer(x)
    assert out.shape == (4, 4, 2, 2) and torch.equal(out[:, :3], x)
    # n = N / G = 2 groups: {0, 2} and {1, 3}.
    for group in ([0, 2], [1, 3]):
        std = (x[group].var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        assert torch.allclose(out[group, 3], std.expand(2, 2, 2), atol=1e-6)
    with pytest.raises(ValueError, match='divisible'):
        networks.MinibatchStdLayer(group_size=4)(torch.randn([6, 3, 2, 2]))

# ---------------------------------------------------------------------------------------------
# Gradients.


def test_r1_double_backward_through_discriminator():
    D = tiny_D(16, num_fp16_res=2, conv_clamp=256).train()
    img = torch.randn([4, 3, 16, 16], requires_grad=True)
    logits = D(img, None)
    (grad,) = torch.autograd.grad(logits.sum(), img, create_graph=True)
    penalty = grad.square().sum([1, 2, 3]).mean()
    penalty.backward()
    # Every parameter but the output bias (a constant offset of the logits) feeds the penalty.
    grads = {name: p.grad for name, p in D.named_parameters()}
    assert grads.pop('b4.out.bias') is None
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert D.b16.fromrgb.weight.grad.abs().sum() > 0 and D.b4.fc.weight.grad.abs().sum() > 0


@pytest.mark.parametrize('fused_modconv', [False, True])
def test_path_length_double_backward_through_synthesis(fused_modconv):
    G = randomize_buffers_and_noise(tiny_G(16, architecture='resnet')).train()
    ws = G.mapping(torch.randn([2, 8]), None).detach().requires_grad_(True)
    img = G.synthesis(ws, noise_mode='const', fused_modconv=fused_modconv)
    pl_noise = torch.randn_like(img) / np.sqrt(img.shape[2] * img.shape[3])
    (pl_grads,) = torch.autograd.grad((img * pl_noise).sum(), ws, create_graph=True)
    lengths = pl_grads.square().sum(2).mean(1).sqrt()
    lengths.mean().backward()
    # Every synthesis parameter but the ToRGB bias (a constant image offset) feeds the penalty.
    grads = {name: p.grad for name, p in G.synthesis.named_parameters()}
    assert grads.pop('b16.torgb.bias') is None
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert G.synthesis.b16.conv0.weight.grad.abs().sum() > 0


@pytest.mark.parametrize('up,down,fused,demodulate', [(1, 1, True, True), (1, 1, False, True), (2, 1, True, True),
                                                      (2, 1, False, True), (1, 2, False, True), (1, 1, True, False)])
def test_modulated_conv2d_gradcheck(up, down, fused, demodulate):
    torch.manual_seed(1)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    x = torch.randn([2, 2, 3, 3], dtype=torch.float64, requires_grad=True)
    weight = torch.randn([2, 2, 3, 3], dtype=torch.float64, requires_grad=True)
    styles = torch.randn([2, 2], dtype=torch.float64, requires_grad=True)

    def fn(x, weight, styles):
        return networks.modulated_conv2d(x, weight, styles, up=up, down=down, padding=1, resample_filter=f,
                                         demodulate=demodulate, flip_weight=(up == 1), fused_modconv=fused)
    # fast_mode checks random projections of the Jacobians: the full ones take minutes on 2 cores.
    assert torch.autograd.gradcheck(fn, (x, weight, styles), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x, weight, styles), fast_mode=True)


def test_synthesis_layer_gradcheck():
    torch.manual_seed(2)
    layer = networks.SynthesisLayer(2, 3, w_dim=3, resolution=8, up=2).double()
    with torch.no_grad():
        layer.noise_strength.fill_(0.7)
        layer.bias.normal_()
    x = torch.randn([2, 2, 4, 4], dtype=torch.float64, requires_grad=True)
    w = torch.randn([2, 3], dtype=torch.float64, requires_grad=True)

    def fn(x, w):
        return layer(x, w, noise_mode='const', fused_modconv=False)
    assert torch.autograd.gradcheck(fn, (x, w), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x, w), fast_mode=True)

# ---------------------------------------------------------------------------------------------
# Copying, pickling and state_dict layout.


def test_deepcopy_and_pickle_round_trip():
    G = randomize_buffers_and_noise(tiny_G(c_dim=2)).eval()
    D = tiny_D(c_dim=2).eval()
    z, c = torch.randn([2, 8]), torch.eye(2)
    img = G(z, c, noise_mode='const')
    copies = [(copy.deepcopy(G), copy.deepcopy(D)), (pickle.loads(pickle.dumps(G)), pickle.loads(pickle.dumps(D)))]
    for G2, D2 in copies:
        assert torch.equal(G2(z, c, noise_mode='const'), img)
        assert torch.equal(D2(img, c), D(img, c))
    # Our persistence: every class is registered and pickles as (constructor arguments, tensors).
    assert all(persistence.is_persistent(m) for m in list(G.modules()) + list(D.modules())
               if type(m).__module__ == 'training.networks')
    G2 = pickle.loads(pickle.dumps(G))
    assert G2.init_kwargs == G.init_kwargs and G2.init_kwargs['c_dim'] == 2
    D_frozen = tiny_D(block_kwargs=dict(freeze_layers=2)).eval()
    D_frozen2 = pickle.loads(pickle.dumps(D_frozen))
    assert 'b16.conv0.weight' in dict(D_frozen2.named_buffers())
    assert torch.equal(D_frozen2(img, None), D_frozen(img, None))


def test_extra_repr_shows_shapes():
    G = tiny_G()
    text = repr(G)
    assert 'num_ws=6' in text and 'in_channels=8, out_channels=4, kernel_size=3' in text


def test_state_dict_layout_matches_official_listing():
    listing = read_listing_names(require_fixtures('stylegan2_tiny', 'state_dict_listing.txt'))
    G = networks.Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
                           mapping_kwargs=dict(num_layers=2),
                           synthesis_kwargs=dict(channel_base=192, channel_max=24, num_fp16_res=0, conv_clamp=None))
    D = networks.Discriminator(c_dim=0, img_resolution=32, img_channels=3, channel_base=192, channel_max=24,
                               num_fp16_res=0, conv_clamp=None, epilogue_kwargs=dict(mbstd_group_size=4))
    assert state_dict_entries(G) == listing['G']
    assert state_dict_entries(G) == listing['G_ema']
    assert state_dict_entries(D) == listing['D']

"""training/networks.py and torch_utils/ops against the spec's formulas, on the code paths the
official fixtures do not reach (they hold an unconditional 'skip' G, a 'resnet' D, no fp16, one
minibatch-std channel): minibatch std with 2 channels, conditional mapping and projection D,
truncation cutoff, G 'orig'/'resnet' and D 'orig'/'skip', conv_clamp, Freeze-D, the fp16 block
rule, equalized-lr gains and every bias_act activation.

Expected values are computed here from ../shared/specs/stylegan2-network-format.md sections 2-5
with numpy/scipy (float64), never with the library's own helpers: `np_upfirdn` below is the
four-step definition of spec 2.4 built on scipy.signal.convolve2d, and the resampling
convolutions follow the bookkeeping of spec 2.5.
"""

import numpy as np
import pytest
import scipy.signal
import torch

from torch_utils.ops import bias_act
from torch_utils.ops import upfirdn2d
from training import networks

SQRT2 = np.sqrt(2)
SQRT_HALF = np.sqrt(0.5)

# ---------------------------------------------------------------------------------------------
# Independent float64 reference primitives (spec 2.1-2.6).


def np_lrelu(x, alpha=0.2):
    return np.where(x >= 0, x, alpha * x)


def np_upfirdn(x, f, up=1, down=1, pad=(0, 0, 0, 0), gain=1.0):
    """Spec 2.4: zero-insert, pad [x0, x1, y0, y1] (negative crops), true 'valid' convolution, decimate."""
    N, C, H, W = x.shape
    x0, x1, y0, y1 = pad
    u = np.zeros([N, C, H * up, W * up])
    u[:, :, ::up, ::up] = x
    u = np.pad(u, ((0, 0), (0, 0), (max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0))))
    u = u[:, :, max(-y0, 0): u.shape[2] - max(-y1, 0), max(-x0, 0): u.shape[3] - max(-x1, 0)]
    out = np.array([[scipy.signal.convolve2d(u[n, c], f * gain, mode='valid') for c in range(C)] for n in range(N)])
    return out[:, :, ::down, ::down]


def np_conv(x, w, pad=0, stride=1):
    """Correlation like F.conv2d: x [N, I, H, W], w [O, I, kh, kw]."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.array([[sum(scipy.signal.correlate2d(xp[n, i], w[o, i], mode='valid') for i in range(w.shape[1]))
                     for o in range(w.shape[0])] for n in range(x.shape[0])])
    return out[:, :, ::stride, ::stride]


def np_conv_transpose_stride2(x, w):
    """F.conv_transpose2d(x, w^T, stride=2) of spec 2.5 case 4: a true full convolution of the
    zero-interleaved input (2H-1 samples) with the unflipped kernel -> 2H+1 samples."""
    N, I, H, W = x.shape
    u = np.zeros([N, I, 2 * H - 1, 2 * W - 1])
    u[:, :, ::2, ::2] = x
    return np.array([[sum(scipy.signal.convolve2d(u[n, i], w[o, i], mode='full') for i in range(I))
                      for o in range(w.shape[0])] for n in range(N)])


def np_norm2(x):
    """Spec 2.3."""
    return x / np.sqrt(np.mean(x ** 2, axis=1, keepdims=True) + 1e-8)


def np_fc(x, P, prefix, lr=1.0, act='linear'):
    """Spec 2.1 / 3.1: x @ (W * lr / sqrt(in))^T + b * lr, then the activation with its default gain."""
    W = P[prefix + 'weight']
    y = x @ (W * (lr / np.sqrt(W.shape[1]))).T + P[prefix + 'bias'] * lr
    return np_lrelu(y) * SQRT2 if act == 'lrelu' else y


def np_clamp(x, limit):
    return x if limit is None else np.clip(x, -limit, limit)


def params_np(module):
    """state_dict (parameters and buffers) as float64 numpy arrays."""
    return {k: v.detach().double().numpy() for k, v in module.state_dict().items()}


def randomize_(module, seed):
    """Random values in every tensor (biases, noise strengths, w_avg included) and a random,
    non-symmetric, non-separable 4x4 filter in every resample_filter buffer, so that flips,
    transposes and the choice of filter copy all show. Filters hold float32-exact values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict(keep_vars=True).items():
            if name.endswith('resample_filter'):
                f = torch.rand([4, 4], generator=gen) + 0.1
                t.copy_((f / f.sum()).float())
            else:
                t.copy_(torch.randn(t.shape, generator=gen, dtype=torch.float64))
    return module

# ---------------------------------------------------------------------------------------------
# Reference layers (spec 3.2, 3.4, 3.5, 3.6, 3.9).


def ref_synthesis_layer(x, w, P, prefix, up, gain=1.0, clamp=None):
    """Modulated 3x3 conv (spec 2.6) + const noise + bias + lrelu * sqrt(2) * gain, clamp * gain."""
    styles = np_fc(w, P, prefix + 'affine.')
    W = P[prefix + 'weight']
    outs = []
    for n in range(x.shape[0]):
        wm = W * styles[n][None, :, None, None]
        wm = wm / np.sqrt((wm ** 2).sum(axis=(1, 2, 3), keepdims=True) + 1e-8)
        if up == 1:
            outs.append(np_conv(x[n:n + 1], wm, pad=1))
        else:   # conv0: transposed conv (2H+1), then the layer's filter with padding 1 and gain 4.
            outs.append(np_upfirdn(np_conv_transpose_stride2(x[n:n + 1], wm), P[prefix + 'resample_filter'],
                                   pad=(1, 1, 1, 1), gain=4))
    h = np.concatenate(outs) + P[prefix + 'noise_const'] * P[prefix + 'noise_strength']
    h = np_lrelu(h + P[prefix + 'bias'][None, :, None, None]) * SQRT2 * gain
    return np_clamp(h, None if clamp is None else clamp * gain)


def ref_torgb(x, w, P, prefix, clamp=None):
    """Styles scaled by 1/sqrt(in), no demodulation, 1x1 conv, bias, clamp at conv_clamp."""
    W = P[prefix + 'weight'][:, :, 0, 0]
    styles = np_fc(w, P, prefix + 'affine.') / np.sqrt(W.shape[1])
    y = np.einsum('oi,ni,nihw->nohw', W, styles, x) + P[prefix + 'bias'][None, :, None, None]
    return np_clamp(y, clamp)


def ref_synthesis_block(block, x, img, ws, clamp=None):
    """Non-first SynthesisBlock, any architecture, noise_mode='const'."""
    P = params_np(block)
    resnet = block.architecture == 'resnet'
    if resnet:  # 1x1 conv with weight gain 1/sqrt(in), then up 2 with padding [2, 1], gain 4; never clamped.
        Wsk = P['skip.weight'] / np.sqrt(P['skip.weight'].shape[1])
        y = np_upfirdn(np_conv(x, Wsk), P['skip.resample_filter'], up=2, pad=(2, 1, 2, 1), gain=4) * SQRT_HALF
    h = ref_synthesis_layer(x, ws[:, 0], P, 'conv0.', up=2, clamp=clamp)
    h = ref_synthesis_layer(h, ws[:, 1], P, 'conv1.', up=1, gain=SQRT_HALF if resnet else 1.0, clamp=clamp)
    if resnet:
        h = y + h
    if img is not None:  # upsample2d with the block's own filter: padding [2, 1], gain 4.
        img = np_upfirdn(img, P['resample_filter'], up=2, pad=(2, 1, 2, 1), gain=4)
    if block.is_last or block.architecture == 'skip':
        rgb = ref_torgb(h, ws[:, 2], P, 'torgb.', clamp=clamp)
        img = rgb if img is None else img + rgb
    return h, img


def ref_d_conv(x, P, prefix, k, down=1, gain=1.0, clamp=None, act='lrelu'):
    """Conv2dLayer (spec 3.2): weight gain 1/sqrt(in*k*k); down 2 per spec 2.5 (3x3: filter with
    padding 2 then stride 2; 1x1: filter with padding 1, decimate, then the 1x1 conv)."""
    W = P[prefix + 'weight']
    W = W / np.sqrt(W.shape[1] * k * k)
    if down == 1:
        h = np_conv(x, W, pad=k // 2)
    elif k == 3:
        h = np_conv(np_upfirdn(x, P[prefix + 'resample_filter'], pad=(2, 2, 2, 2)), W, stride=2)
    else:
        h = np_conv(np_upfirdn(x, P[prefix + 'resample_filter'], down=2, pad=(1, 1, 1, 1)), W)
    if prefix + 'bias' in P:
        h = h + P[prefix + 'bias'][None, :, None, None]
    h = (np_lrelu(h) * SQRT2 if act == 'lrelu' else h) * gain
    return np_clamp(h, None if clamp is None else clamp * gain)


def ref_disc_block(block, x, img, clamp=None):
    """DiscriminatorBlock (spec 3.9), any architecture."""
    P = params_np(block)
    if 'fromrgb.weight' in P:
        y = ref_d_conv(img, P, 'fromrgb.', 1, clamp=clamp)
        x = y if x is None else x + y
        # 'skip': downsample2d (padding 1, 1) with the block's own filter buffer.
        img = np_upfirdn(img, P['resample_filter'], down=2, pad=(1, 1, 1, 1)) if block.architecture == 'skip' else None
    if block.architecture == 'resnet':
        y = ref_d_conv(x, P, 'skip.', 1, down=2, gain=SQRT_HALF, act='linear')      # no clamp on skip
        h = ref_d_conv(x, P, 'conv0.', 3, clamp=clamp)
        h = ref_d_conv(h, P, 'conv1.', 3, down=2, gain=SQRT_HALF, clamp=clamp)
        return y + h, img
    h = ref_d_conv(x, P, 'conv0.', 3, clamp=clamp)
    return ref_d_conv(h, P, 'conv1.', 3, down=2, clamp=clamp), img


def ref_mbstd(x, group_size, F):
    """Spec 3.10 with explicit loops: sample i belongs to group i % n, n = N / G."""
    N, C, H, W = x.shape
    G = N if group_size is None else min(group_size, N)
    n = N // G
    c = C // F
    out = np.zeros([N, F, H, W])
    for i in range(N):
        members = [i % n + g * n for g in range(G)]
        for f in range(F):
            xs = x[members, f * c:(f + 1) * c]                                  # [G, c, H, W]
            std = np.sqrt(((xs - xs.mean(axis=0)) ** 2).mean(axis=0) + 1e-8)
            out[i, f] = std.mean()
    return np.concatenate([x, out], axis=1)

# ---------------------------------------------------------------------------------------------
# 1. Minibatch standard deviation with several channels.


@pytest.mark.parametrize('group_size', [2, 4, None, 16])
def test_minibatch_std_two_channels(group_size):
    x = torch.randn([8, 6, 3, 3], dtype=torch.float64)
    layer = networks.MinibatchStdLayer(group_size=group_size, num_channels=2)
    out = layer(x)
    assert out.shape == (8, 8, 3, 3)
    np.testing.assert_allclose(out.numpy(), ref_mbstd(x.numpy(), group_size, 2), rtol=1e-12, atol=1e-14)


def test_epilogue_with_two_mbstd_channels():
    ep = randomize_(networks.DiscriminatorEpilogue(6, cmap_dim=0, resolution=4, img_channels=3,
                                                   mbstd_group_size=2, mbstd_num_channels=2), 1).double()
    assert ep.conv.weight.shape == (6, 8, 3, 3) and ep.out.weight.shape == (1, 6)
    x = torch.randn([8, 6, 4, 4], dtype=torch.float64)
    P = params_np(ep)
    h = ref_d_conv(ref_mbstd(x.numpy(), 2, 2), P, 'conv.', 3)
    h = np_fc(h.reshape(8, -1), P, 'fc.', act='lrelu')                         # NCHW flattening
    expected = np_fc(h, P, 'out.')
    np.testing.assert_allclose(ep(x, None, None).detach().numpy(), expected, rtol=1e-10, atol=1e-12)

# ---------------------------------------------------------------------------------------------
# 2. Conditional mapping and the projection discriminator.


def test_conditional_mapping_concatenates_z_first():
    mapping = randomize_(networks.MappingNetwork(z_dim=4, c_dim=3, w_dim=6, num_ws=2, num_layers=2,
                                                 embed_features=5, layer_features=7), 2).double()
    assert mapping.embed.weight.shape == (5, 3) and mapping.fc0.weight.shape == (7, 9)
    assert mapping.fc1.weight.shape == (6, 7)
    assert mapping.embed.weight_gain == pytest.approx(1 / np.sqrt(3)) and mapping.embed.bias_gain == 1
    assert mapping.fc0.weight_gain == pytest.approx(0.01 / np.sqrt(9)) and mapping.fc0.bias_gain == 0.01
    z = torch.randn([3, 4], dtype=torch.float64)
    c = torch.randn([3, 3], dtype=torch.float64)
    P = params_np(mapping)
    x = np.concatenate([np_norm2(z.numpy()), np_norm2(np_fc(c.numpy(), P, 'embed.'))], axis=1)
    for idx in range(2):
        x = np_fc(x, P, f'fc{idx}.', lr=0.01, act='lrelu')
    ws = mapping.eval()(z, c)
    assert ws.shape == (3, 2, 6)
    np.testing.assert_allclose(ws.detach().numpy(), np.repeat(x[:, None], 2, axis=1), rtol=1e-10, atol=1e-12)
    # num_layers=1: fc0 maps the concatenation straight to w_dim.
    assert networks.MappingNetwork(4, 3, 6, None, num_layers=1, embed_features=5).fc0.weight.shape == (6, 9)


@pytest.mark.parametrize('mapping_layers', [None, 0])
def test_conditional_discriminator_projection(mapping_layers):
    mapping_kwargs = {} if mapping_layers is None else dict(num_layers=mapping_layers)
    D = networks.Discriminator(c_dim=3, img_resolution=8, img_channels=2, channel_base=32, channel_max=8, cmap_dim=5,
                               mapping_kwargs=mapping_kwargs, epilogue_kwargs=dict(mbstd_group_size=2))
    D = randomize_(D, 3).double().eval()
    m = D.mapping
    num_layers = 8 if mapping_layers is None else 0
    assert (m.z_dim, m.c_dim, m.w_dim, m.num_ws, m.num_layers, m.w_avg_beta) == (0, 3, 5, None, num_layers, None)
    assert not hasattr(m, 'w_avg') and 'mapping.w_avg' not in D.state_dict()
    expected_names = {'mapping.embed.weight': [5, 3], 'mapping.embed.bias': [5]}
    for idx in range(num_layers):
        expected_names.update({f'mapping.fc{idx}.weight': [5, 5], f'mapping.fc{idx}.bias': [5]})
    assert {k: list(v.shape) for k, v in D.state_dict().items() if k.startswith('mapping.')} == expected_names
    assert D.b4.out.weight.shape == (5, 8)

    img = torch.randn([4, 2, 8, 8], dtype=torch.float64)
    c = torch.randn([4, 3], dtype=torch.float64)
    captured = []
    D.b4.out.register_forward_hook(lambda mod, inp, out: captured.append(out.detach().numpy()))
    logits = D(img, c)
    P = params_np(D)
    cmap = np_norm2(np_fc(c.numpy(), P, 'mapping.embed.'))                    # z_dim 0: only the label part
    for idx in range(num_layers):
        cmap = np_fc(cmap, P, f'mapping.fc{idx}.', lr=0.01, act='lrelu')
    expected = (captured[0] * cmap).sum(axis=1, keepdims=True) / np.sqrt(5)
    assert logits.shape == (4, 1)
    np.testing.assert_allclose(logits.detach().numpy(), expected, rtol=1e-10, atol=1e-12)

# ---------------------------------------------------------------------------------------------
# 3. Truncation.


@pytest.mark.parametrize('cutoff', [None, 2, 5])
def test_truncation_cutoff(cutoff):
    mapping = randomize_(networks.MappingNetwork(z_dim=4, c_dim=0, w_dim=6, num_ws=5, num_layers=2), 4).double().eval()
    z = torch.randn([3, 4], dtype=torch.float64)
    w = mapping(z, None).detach().numpy()
    w_avg = mapping.w_avg.numpy()
    out = mapping(z, None, truncation_psi=0.7, truncation_cutoff=cutoff).detach().numpy()
    rows = 5 if cutoff is None else min(cutoff, 5)
    expected = w.copy()
    expected[:, :rows] = w_avg + 0.7 * (w[:, :rows] - w_avg)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-14)
    if rows < 5:
        assert np.array_equal(out[:, rows:], w[:, rows:])

# ---------------------------------------------------------------------------------------------
# 4. Architectures: structure (spec 3.6, 3.9, 3.11, section 4) and forward composition.


def synthesis_names(arch, w_dim=5, C={4: 16, 8: 8, 16: 4}, R=16, img_channels=3):
    """Spec section 4, G table, for a non-'skip' architecture (torgb only in the last block)."""
    names = {'b4.const': [C[4], 4, 4], 'b4.resample_filter': [4, 4]}
    for r in [4, 8, 16]:
        convs = ['conv1'] if r == 4 else ['conv0', 'conv1']
        for conv in convs:
            cin = C[r // 2] if conv == 'conv0' else C[r]
            names.update({f'b{r}.{conv}.weight': [C[r], cin, 3, 3], f'b{r}.{conv}.affine.weight': [cin, w_dim],
                          f'b{r}.{conv}.affine.bias': [cin], f'b{r}.{conv}.noise_strength': [],
                          f'b{r}.{conv}.bias': [C[r]], f'b{r}.{conv}.resample_filter': [4, 4],
                          f'b{r}.{conv}.noise_const': [r, r]})
        names[f'b{r}.resample_filter'] = [4, 4]
        if r > 4 and arch == 'resnet':
            names.update({f'b{r}.skip.weight': [C[r], C[r // 2], 1, 1], f'b{r}.skip.resample_filter': [4, 4]})
    names.update({f'b{R}.torgb.weight': [img_channels, C[R], 1, 1], f'b{R}.torgb.bias': [img_channels],
                  f'b{R}.torgb.affine.weight': [C[R], w_dim], f'b{R}.torgb.affine.bias': [C[R]]})
    return names


@pytest.mark.parametrize('arch', ['orig', 'resnet'])
def test_generator_orig_resnet_structure(arch):
    G = networks.Generator(z_dim=4, c_dim=0, w_dim=5, img_resolution=16, img_channels=3,
                           mapping_kwargs=dict(num_layers=1),
                           synthesis_kwargs=dict(channel_base=64, channel_max=32, architecture=arch))
    shapes = {k[len('synthesis.'):]: list(v.shape) for k, v in G.state_dict().items() if k.startswith('synthesis.')}
    assert shapes == synthesis_names(arch)
    assert G.num_ws == 6 == G.mapping.num_ws                                  # 2 * log2(16) - 2
    assert [G.synthesis.b4.num_torgb, G.synthesis.b8.num_torgb, G.synthesis.b16.num_torgb] == [0, 0, 1]
    if arch == 'resnet':
        assert G.synthesis.b8.skip.bias is None and G.synthesis.b8.skip.conv_clamp is None
        assert G.synthesis.b8.skip.up == 2 and G.synthesis.b8.skip.weight_gain == pytest.approx(1 / np.sqrt(16))
    assert list(G.state_dict())[-3:] == ['mapping.w_avg', 'mapping.fc0.weight', 'mapping.fc0.bias']


@pytest.mark.parametrize('arch', ['orig', 'resnet', 'skip'])
@pytest.mark.parametrize('fused', [True, False])
def test_synthesis_block_composition(arch, fused):
    block = networks.SynthesisBlock(3, 4, w_dim=5, resolution=8, img_channels=2, is_last=True,
                                    architecture=arch, conv_clamp=0.8)
    block = randomize_(block, 5).double().eval()
    assert hasattr(block, 'skip') == (arch == 'resnet')
    peaks = {}
    for name in ('conv0', 'conv1', 'torgb'):
        getattr(block, name).register_forward_hook(
            lambda mod, inp, out, name=name: peaks.update({name: out.abs().max().item()}))
    x = torch.randn([2, 3, 4, 4], dtype=torch.float64)
    img = torch.randn([2, 2, 4, 4], dtype=torch.float64) if arch == 'skip' else None
    ws = torch.randn([2, 3, 5], dtype=torch.float64)
    x_out, img_out = block(x, img, ws, noise_mode='const', fused_modconv=fused)
    x_ref, img_ref = ref_synthesis_block(block, x.numpy(), None if img is None else img.numpy(), ws.numpy(), clamp=0.8)
    np.testing.assert_allclose(x_out.detach().numpy(), x_ref, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(img_out.detach().numpy(), img_ref, rtol=1e-9, atol=1e-11)
    # The clamp must have bitten (at 0.8 * gain), or this test would not see it.
    conv1_gain = SQRT_HALF if arch == 'resnet' else 1.0
    assert peaks['conv0'] == pytest.approx(0.8) and peaks['torgb'] == pytest.approx(0.8)
    assert peaks['conv1'] == pytest.approx(0.8 * conv1_gain)


@pytest.mark.parametrize('arch', ['orig', 'resnet'])
def test_orig_resnet_image_comes_from_last_torgb_only(arch):
    G = networks.Generator(z_dim=4, c_dim=0, w_dim=5, img_resolution=16, img_channels=3,
                           mapping_kwargs=dict(num_layers=1),
                           synthesis_kwargs=dict(channel_base=64, channel_max=32, architecture=arch))
    G = randomize_(G, 6).double().eval()
    ws = torch.randn([2, 6, 5], dtype=torch.float64)
    seen = {}
    G.synthesis.b16.register_forward_pre_hook(lambda mod, args: seen.update(x=args[0].detach().numpy(),
                                                                            img=args[1]))
    img = G.synthesis(ws, noise_mode='const')
    assert seen['img'] is None                                                # b4, b8 have no torgb
    # b16 alone, recomputed by hand from its input x and w rows 3..5 (torgb uses row 5 = num_ws - 1).
    _, img_ref = ref_synthesis_block(G.synthesis.b16, seen['x'], None, ws[:, 3:6].numpy())
    np.testing.assert_allclose(img.detach().numpy(), img_ref, rtol=1e-9, atol=1e-11)


def discriminator_names(arch, C={16: 4, 8: 8, 4: 16}, img_channels=3):
    """Spec section 4, D table, for 'orig' / 'skip' (no 'skip' convolutions)."""
    names = {}
    for r in [16, 8]:
        names[f'b{r}.resample_filter'] = [4, 4]
        if r == 16 or arch == 'skip':
            names.update({f'b{r}.fromrgb.weight': [C[r], img_channels, 1, 1], f'b{r}.fromrgb.bias': [C[r]],
                          f'b{r}.fromrgb.resample_filter': [4, 4]})
        names.update({f'b{r}.conv0.weight': [C[r], C[r], 3, 3], f'b{r}.conv0.bias': [C[r]],
                      f'b{r}.conv0.resample_filter': [4, 4], f'b{r}.conv1.weight': [C[r // 2], C[r], 3, 3],
                      f'b{r}.conv1.bias': [C[r // 2]], f'b{r}.conv1.resample_filter': [4, 4]})
    if arch == 'skip':
        names.update({'b4.fromrgb.weight': [C[4], img_channels, 1, 1], 'b4.fromrgb.bias': [C[4]],
                      'b4.fromrgb.resample_filter': [4, 4]})
    names.update({'b4.conv.weight': [C[4], C[4] + 1, 3, 3], 'b4.conv.bias': [C[4]], 'b4.conv.resample_filter': [4, 4],
                  'b4.fc.weight': [C[4], C[4] * 16], 'b4.fc.bias': [C[4]], 'b4.out.weight': [1, C[4]],
                  'b4.out.bias': [1]})
    return names


@pytest.mark.parametrize('arch', ['orig', 'skip'])
def test_discriminator_orig_skip_structure_and_forward(arch):
    D = networks.Discriminator(c_dim=0, img_resolution=16, img_channels=3, architecture=arch, channel_base=64,
                               channel_max=32, conv_clamp=0.5, epilogue_kwargs=dict(mbstd_group_size=2))
    assert {k: list(v.shape) for k, v in D.state_dict().items()} == discriminator_names(arch)
    assert [D.b16.first_layer_idx, D.b8.first_layer_idx] == [0, 3]
    assert D.b16.num_layers == 3 and D.b8.num_layers == (2 if arch == 'orig' else 3)
    D = randomize_(D, 7).double().eval()
    img = torch.randn([2, 3, 16, 16], dtype=torch.float64)
    # Whole network by hand: blocks, then the epilogue ('skip': + fromrgb(img), unclamped).
    x, im = None, img.numpy()
    for r in [16, 8]:
        x, im = ref_disc_block(getattr(D, f'b{r}'), x, im, clamp=0.5)
    assert (im is None) == (arch == 'orig')
    P = params_np(D.b4)
    if arch == 'skip':
        x = x + ref_d_conv(im, P, 'fromrgb.', 1)
    h = ref_d_conv(ref_mbstd(x, 2, 1), P, 'conv.', 3, clamp=0.5)
    h = np_fc(h.reshape(2, -1), P, 'fc.', act='lrelu')
    np.testing.assert_allclose(D(img, None).detach().numpy(), np_fc(h, P, 'out.'), rtol=1e-9, atol=1e-11)


def test_discriminator_skip_block_uses_its_own_filter_for_the_image():
    block = networks.DiscriminatorBlock(4, 4, 6, resolution=8, img_channels=2, first_layer_idx=0, architecture='skip')
    block = randomize_(block, 8).double().eval()
    assert not torch.equal(block.resample_filter, block.conv1.resample_filter)
    x = torch.randn([2, 4, 8, 8], dtype=torch.float64)
    img = torch.randn([2, 2, 8, 8], dtype=torch.float64)
    x_out, img_out = block(x, img)
    x_ref, img_ref = ref_disc_block(block, x.numpy(), img.numpy())
    np.testing.assert_allclose(x_out.detach().numpy(), x_ref, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(img_out.detach().numpy(), img_ref, rtol=1e-12, atol=1e-13)


def test_discriminator_resnet_block_composition():
    block = networks.DiscriminatorBlock(0, 4, 6, resolution=8, img_channels=2, first_layer_idx=0,
                                        architecture='resnet', conv_clamp=0.3)
    block = randomize_(block, 9).double().eval()
    img = torch.randn([2, 2, 8, 8], dtype=torch.float64)
    x_out, img_out = block(None, img)
    x_ref, _ = ref_disc_block(block, None, img.numpy(), clamp=0.3)
    assert img_out is None
    np.testing.assert_allclose(x_out.detach().numpy(), x_ref, rtol=1e-9, atol=1e-11)

# ---------------------------------------------------------------------------------------------
# 5. conv_clamp: which layers clamp, at conv_clamp * gain.


def test_conv_clamp_placement():
    G = networks.Generator(z_dim=4, c_dim=0, w_dim=5, img_resolution=16, img_channels=3,
                           synthesis_kwargs=dict(channel_base=64, channel_max=32, architecture='resnet', conv_clamp=7))
    for name, mod in G.named_modules():
        if isinstance(mod, (networks.SynthesisLayer, networks.ToRGBLayer)):
            assert mod.conv_clamp == 7, name
        if isinstance(mod, networks.Conv2dLayer):
            assert name.endswith('skip') and mod.conv_clamp is None, name
        if isinstance(mod, networks.FullyConnectedLayer):
            assert not hasattr(mod, 'conv_clamp'), name
    for arch in ('resnet', 'skip'):
        D = networks.Discriminator(c_dim=2, img_resolution=16, img_channels=3, architecture=arch, channel_base=64,
                                   channel_max=32, conv_clamp=7)
        for name, mod in D.named_modules():
            if isinstance(mod, networks.Conv2dLayer):
                unclamped = name.endswith('.skip') or name == 'b4.fromrgb'
                assert mod.conv_clamp == (None if unclamped else 7), name


def test_conv_clamp_scales_with_gain_and_spares_skip_and_fc():
    # SynthesisLayer with a residual gain: clamp at conv_clamp * gain.
    layer = randomize_(networks.SynthesisLayer(3, 4, w_dim=5, resolution=4, conv_clamp=0.4), 10).double().eval()
    x = 10 * torch.randn([2, 3, 4, 4], dtype=torch.float64)
    w = torch.randn([2, 5], dtype=torch.float64)
    out = layer(x, w, noise_mode='const', gain=SQRT_HALF).detach().numpy()
    ref = ref_synthesis_layer(x.numpy(), w.numpy(), params_np(layer), '', up=1, gain=SQRT_HALF, clamp=0.4)
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)
    assert np.isclose(np.abs(out).max(), 0.4 * SQRT_HALF)
    # Conv2dLayer: same rule (a gain whose product with sqrt(2) is not 1, so clamp-before-gain shows);
    # a 1x1 skip built without conv_clamp is not clamped.
    conv = randomize_(networks.Conv2dLayer(3, 4, 3, activation='lrelu', conv_clamp=0.4), 11).double()
    out = conv(x, gain=0.5).detach().numpy()
    np.testing.assert_allclose(out, ref_d_conv(x.numpy(), params_np(conv), '', 3, gain=0.5, clamp=0.4),
                               rtol=1e-10, atol=1e-12)
    assert np.isclose(np.abs(out).max(), 0.4 * 0.5)
    block = randomize_(networks.DiscriminatorBlock(3, 3, 4, resolution=4, img_channels=3, first_layer_idx=0,
                                                   conv_clamp=1e-3), 12).double()
    assert np.abs(block.skip(x, gain=SQRT_HALF).detach().numpy()).max() > 1
    # FC layers never clamp.
    fc = networks.FullyConnectedLayer(5, 3, activation='lrelu').double()
    assert fc(1e4 * torch.ones([1, 5], dtype=torch.float64)).abs().max() > 1e3

# ---------------------------------------------------------------------------------------------
# 6. Freeze-D.


@pytest.mark.parametrize('arch, freeze, frozen', [
    # resnet layer indices: b32 fromrgb 0, conv0 1, conv1 2, skip 3; b16 conv0 4, conv1 5, skip 6; b8 7..9.
    ('resnet', 5, ['b32.fromrgb', 'b32.conv0', 'b32.conv1', 'b32.skip', 'b16.conv0']),
    # skip: b32 fromrgb 0, conv0 1, conv1 2; b16 fromrgb 3, conv0 4, conv1 5; b8 fromrgb 6, ...
    ('skip', 4, ['b32.fromrgb', 'b32.conv0', 'b32.conv1', 'b16.fromrgb']),
    ('orig', 3, ['b32.fromrgb', 'b32.conv0', 'b32.conv1']),
    ('resnet', 100, None),                                                   # every block layer, not the epilogue
])
def test_freeze_layers(arch, freeze, frozen):
    D = networks.Discriminator(c_dim=0, img_resolution=32, img_channels=3, architecture=arch, channel_base=64,
                               channel_max=8, block_kwargs=dict(freeze_layers=freeze))
    layers = [f'b{r}.{n}' for r in (32, 16, 8) for n in ('fromrgb', 'conv0', 'conv1', 'skip')
              if hasattr(getattr(D, f'b{r}'), n)]
    if frozen is None:
        frozen = layers
    params = dict(D.named_parameters())
    buffers = dict(D.named_buffers())
    for name in layers:
        for t in ('weight', 'bias'):
            key = f'{name}.{t}'
            if name.endswith('skip') and t == 'bias':
                assert key not in params and key not in buffers                 # skip has no bias at all
            elif name in frozen:
                assert key in buffers and key not in params, key
            else:
                assert key in params and key not in buffers, key
    assert all(f'b4.{n}.weight' in params for n in ('conv', 'fc', 'out'))
    idx = 0
    for r in (32, 16, 8):
        assert getattr(D, f'b{r}').first_layer_idx == idx
        idx += getattr(D, f'b{r}').num_layers
    # Frozen layers still compute the same function.
    D = randomize_(D, 13).double().eval()
    img = torch.randn([2, 3, 32, 32], dtype=torch.float64)
    x_out, _ = D.b32(None, img)
    np.testing.assert_allclose(x_out.detach().numpy(), ref_disc_block(D.b32, None, img.numpy())[0],
                               rtol=1e-9, atol=1e-11)

# ---------------------------------------------------------------------------------------------
# 7. fp16 configuration.


@pytest.mark.parametrize('R, num_fp16_res', [(32, 0), (32, 1), (32, 2), (32, 4), (64, 3), (16, 10)])
def test_fp16_resolution_rule(R, num_fp16_res):
    log2R = int(np.log2(R))
    fp16_res = max(2 ** (log2R + 1 - num_fp16_res), 8)
    G = networks.Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=R, img_channels=3,
                           mapping_kwargs=dict(num_layers=1),
                           synthesis_kwargs=dict(channel_base=256, channel_max=4, num_fp16_res=num_fp16_res))
    D = networks.Discriminator(c_dim=0, img_resolution=R, img_channels=3, channel_base=256, channel_max=4,
                               num_fp16_res=num_fp16_res, epilogue_kwargs=dict(mbstd_group_size=2))
    for r in G.synthesis.block_resolutions:
        assert getattr(G.synthesis, f'b{r}').use_fp16 == (r >= fp16_res), r
    assert not G.synthesis.b4.use_fp16
    for r in D.block_resolutions:
        assert getattr(D, f'b{r}').use_fp16 == (r >= fp16_res), r


def test_fp16_config_on_cpu_equals_force_fp32_exactly():
    kwargs = dict(z_dim=4, c_dim=2, w_dim=4, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=1))
    G = networks.Generator(**kwargs, synthesis_kwargs=dict(channel_base=32, channel_max=4, num_fp16_res=4,
                                                           conv_clamp=256, architecture='resnet'))
    D = networks.Discriminator(c_dim=2, img_resolution=16, img_channels=3, channel_base=32, channel_max=4,
                               num_fp16_res=4, conv_clamp=256, epilogue_kwargs=dict(mbstd_group_size=2))
    G_fp32 = networks.Generator(**kwargs, synthesis_kwargs=dict(channel_base=32, channel_max=4, conv_clamp=256,
                                                                architecture='resnet'))
    G_fp32.load_state_dict(G.state_dict())
    assert G.synthesis.b8.use_fp16 and not G_fp32.synthesis.b8.use_fp16
    z, c = torch.randn([4, 4]), torch.randn([4, 2])
    for mode in ('eval', 'train'):
        for net in (G, D, G_fp32):
            getattr(net, mode)()
        img = G(z, c, noise_mode='const', update_emas=False)
        assert img.dtype == torch.float32
        assert torch.equal(img, G(z, c, noise_mode='const', update_emas=False, force_fp32=True))
        assert torch.equal(img, G_fp32(z, c, noise_mode='const', update_emas=False))
        assert torch.equal(D(img, c), D(img, c, force_fp32=True))

# ---------------------------------------------------------------------------------------------
# 8. Equalized learning rate.


def test_fully_connected_gains_and_init():
    fc = networks.FullyConnectedLayer(400, 300, activation='lrelu', lr_multiplier=0.1, bias_init=2)
    assert fc.weight_gain == pytest.approx(0.1 / np.sqrt(400)) and fc.bias_gain == pytest.approx(0.1)
    assert torch.all(fc.bias == 2)                                            # stored unscaled
    assert abs(fc.weight.std().item() - 10) < 0.3                             # N(0, 1) / lr_multiplier
    fc = randomize_(networks.FullyConnectedLayer(5, 3, activation='lrelu', lr_multiplier=0.1), 14).double()
    x = torch.randn([4, 5], dtype=torch.float64)
    np.testing.assert_allclose(fc(x).detach().numpy(), np_fc(x.numpy(), params_np(fc), '', lr=0.1, act='lrelu'),
                               rtol=1e-12, atol=1e-14)
    lin = randomize_(networks.FullyConnectedLayer(5, 3, lr_multiplier=0.3), 15).double()
    np.testing.assert_allclose(lin(x).detach().numpy(), np_fc(x.numpy(), params_np(lin), '', lr=0.3),
                               rtol=1e-12, atol=1e-14)
    nobias = networks.FullyConnectedLayer(5, 3, bias=False).double()
    assert nobias.bias is None and 'bias' not in nobias.state_dict()
    np.testing.assert_allclose(nobias(x).detach().numpy(),
                               x.numpy() @ (nobias.weight.detach().numpy() / np.sqrt(5)).T, rtol=1e-12)


def test_conv_and_torgb_weight_gains():
    conv = randomize_(networks.Conv2dLayer(3, 4, 3), 16).double()
    assert conv.weight_gain == pytest.approx(1 / np.sqrt(27)) and conv.act_gain == 1
    x = torch.randn([2, 3, 5, 5], dtype=torch.float64)
    np.testing.assert_allclose(conv(x).detach().numpy(), ref_d_conv(x.numpy(), params_np(conv), '', 3, act='linear'),
                               rtol=1e-12, atol=1e-13)
    assert networks.Conv2dLayer(3, 4, 1, activation='lrelu').act_gain == pytest.approx(SQRT2)
    torgb = randomize_(networks.ToRGBLayer(6, 3, w_dim=5), 17).double()
    assert torgb.weight_gain == pytest.approx(1 / np.sqrt(6))
    assert torch.all(networks.ToRGBLayer(6, 3, w_dim=5).affine.bias == 1)    # affine bias starts at 1
    assert torch.all(networks.SynthesisLayer(6, 3, w_dim=5, resolution=4).affine.bias == 1)
    h = torch.randn([2, 6, 4, 4], dtype=torch.float64)
    w = torch.randn([2, 5], dtype=torch.float64)
    for fused in (True, False):
        np.testing.assert_allclose(torgb(h, w, fused_modconv=fused).detach().numpy(),
                                   ref_torgb(h.numpy(), w.numpy(), params_np(torgb), ''), rtol=1e-12, atol=1e-13)


def test_mapping_embed_has_unit_lr_multiplier():
    G = networks.Generator(z_dim=4, c_dim=3, w_dim=6, img_resolution=8, img_channels=3,
                           mapping_kwargs=dict(num_layers=2, lr_multiplier=0.05),
                           synthesis_kwargs=dict(channel_base=32, channel_max=4))
    assert G.mapping.embed.bias_gain == 1 and G.mapping.embed.weight_gain == pytest.approx(1 / np.sqrt(3))
    assert G.mapping.embed.activation == 'linear'
    assert G.mapping.fc1.bias_gain == 0.05 and G.mapping.fc1.weight_gain == pytest.approx(0.05 / np.sqrt(6))
    assert G.mapping.fc0.weight.shape == (6, 10)                              # z_dim + embed_features (= w_dim)

# ---------------------------------------------------------------------------------------------
# 9. bias_act: every activation, default alpha/gain, clamp after gain.

SELU_SCALE, SELU_ALPHA = 1.0507009873554804934193349852946, 1.6732632423543772848170429916717
REF_ACTS = {
    'linear': (lambda x: x, 1.0),
    'relu': (lambda x: np.maximum(x, 0), SQRT2),
    'lrelu': (lambda x: np.where(x >= 0, x, 0.2 * x), SQRT2),
    'tanh': (np.tanh, 1.0),
    'sigmoid': (lambda x: 1 / (1 + np.exp(-x)), 1.0),
    'elu': (lambda x: np.where(x > 0, x, np.expm1(x)), 1.0),
    'selu': (lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(x)), 1.0),
    'softplus': (lambda x: np.log1p(np.exp(x)), 1.0),
    'swish': (lambda x: x / (1 + np.exp(-x)), SQRT2),
}


@pytest.mark.parametrize('act', sorted(REF_ACTS))
def test_bias_act_activation_table(act):
    func, def_gain = REF_ACTS[act]
    assert bias_act.activation_funcs[act].def_gain == pytest.approx(def_gain)
    assert bias_act.activation_funcs[act].def_alpha == (0.2 if act == 'lrelu' else 0)
    x = 3 * torch.randn([3, 4, 5], dtype=torch.float64)
    b = torch.randn([4], dtype=torch.float64)
    xb = x.numpy() + b.numpy()[None, :, None]
    for impl in ('ref', 'cuda'):                                              # 'cuda' means ref on CPU tensors
        y = bias_act.bias_act(x, b, act=act, impl=impl).numpy()
        np.testing.assert_allclose(y, func(xb) * def_gain, rtol=1e-12, atol=1e-14)
    # A caller's gain replaces the default; the clamp comes after the gain.
    y = bias_act.bias_act(x, b, act=act, gain=3.0, clamp=1.5).numpy()
    np.testing.assert_allclose(y, np.clip(func(xb) * 3.0, -1.5, 1.5), rtol=1e-12, atol=1e-14)
    # Bias along another dim.
    b2 = torch.randn([5], dtype=torch.float64)
    y = bias_act.bias_act(x, b2, dim=2, act=act).numpy()
    np.testing.assert_allclose(y, func(x.numpy() + b2.numpy()) * def_gain, rtol=1e-12, atol=1e-14)


def test_bias_act_alpha_and_zero_clamp():
    x = torch.randn([2, 3, 4], dtype=torch.float64)
    y = bias_act.bias_act(x, act='lrelu', alpha=0.1).numpy()
    np.testing.assert_allclose(y, np.where(x.numpy() >= 0, x.numpy(), 0.1 * x.numpy()) * SQRT2, rtol=1e-14)
    assert torch.equal(bias_act.bias_act(x, act='relu', clamp=0), torch.zeros_like(x))

# ---------------------------------------------------------------------------------------------
# Ops: upfirdn2d against the four-step definition, incl. a separable (8-tap) filter.


@pytest.mark.parametrize('up, down, pad', [(1, 1, (1, 2, 0, 3)), (2, 1, (2, 1, 1, 2)), (1, 2, (1, 1, 2, 0)),
                                           (3, 2, (-1, 2, 1, -2))])
def test_upfirdn2d_definition(up, down, pad):
    x = torch.randn([2, 3, 7, 6], dtype=torch.float64)
    f = torch.rand([4, 5]) + 0.1                                              # non-square, asymmetric
    y = upfirdn2d.upfirdn2d(x, f, up=up, down=down, padding=list(pad), gain=1.5).numpy()
    np.testing.assert_allclose(y, np_upfirdn(x.numpy(), f.double().numpy(), up, down, pad, gain=1.5),
                               rtol=1e-12, atol=1e-13)
    # Separable 8-tap filter: stays 1-D, equals the 2-D outer product.
    taps = np.arange(1, 9, dtype=np.float64) ** 1.3
    fs = upfirdn2d.setup_filter(taps.tolist())
    assert fs.ndim == 1
    f2 = np.outer(taps, taps) / taps.sum() ** 2
    y = upfirdn2d.upfirdn2d(x, fs, up=up, down=down, padding=[p + 2 for p in pad], gain=2.0).numpy()
    np.testing.assert_allclose(y, np_upfirdn(x.numpy(), f2, up, down, tuple(p + 2 for p in pad), gain=2.0),
                               rtol=1e-6, atol=1e-7)                           # float32 taps

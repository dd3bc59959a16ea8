"""conv2d_resample (spec section 2.5): every fast path against a direct definition (FIR upsampling,
'valid' convolution, FIR downsampling, with the spec's padding bookkeeping), the equivalent
compositions of public ops that the layers rely on, grouped convolution as used by the fused
modulated convolution, both weight-flip conventions, and first/second-order gradients."""

import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F

from torch_utils.ops import conv2d_resample as cr
from torch_utils.ops import upfirdn2d

# ---------------------------------------------------------------------------------------------
# Direct definitions (numpy/scipy, float64), independent of torch_utils.


def _pad4(p):
    if isinstance(p, int):
        return [p, p, p, p]
    return [p[0], p[0], p[1], p[1]] if len(p) == 2 else list(p)


def direct_upfirdn2d(x, f, up=1, down=1, padding=(0, 0, 0, 0), flip_filter=False, gain=1.0):
    """Zero insertion, zero pad / crop, scipy 'valid' true convolution (or correlation), decimation."""
    f = np.asarray(f, np.float64)
    f = (np.outer(f, f) if f.ndim == 1 else f) * gain
    px0, px1, py0, py1 = padding
    n, c, h, w = x.shape
    u = np.zeros([n, c, h * up, w * up])
    u[:, :, ::up, ::up] = x
    u = np.pad(u, [(0, 0), (0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))])
    u = u[:, :, max(-py0, 0): u.shape[2] - max(-py1, 0), max(-px0, 0): u.shape[3] - max(-px1, 0)]
    op = scipy.signal.correlate2d if flip_filter else scipy.signal.convolve2d
    out = np.stack([np.stack([op(u[i, j], f, mode='valid') for j in range(c)]) for i in range(n)])
    return out[:, :, ::down, ::down]


def direct_conv2d(x, w, groups=1, flip_weight=True):
    """'valid' grouped convolution with loops; flip_weight=True is correlation (F.conv2d)."""
    if not flip_weight:
        w = w[:, :, ::-1, ::-1]
    n, _, h, wd = x.shape
    o, ipg, kh, kw = w.shape
    opg = o // groups
    oh, ow = h - kh + 1, wd - kw + 1
    out = np.zeros([n, o, oh, ow])
    for g in range(groups):
        xg = x[:, g * ipg:(g + 1) * ipg]
        wg = w[g * opg:(g + 1) * opg]
        for a in range(kh):
            for b in range(kw):
                out[:, g * opg:(g + 1) * opg] += np.einsum('nihw,oi->nohw', xg[:, :, a:a + oh, b:b + ow], wg[:, :, a, b])
    return out


def direct_conv2d_resample(x, w, f, up=1, down=1, padding=0, groups=1, flip_weight=True, flip_filter=False):
    """Spec 2.5 semantics: fold the filter support into the padding, then upsample with the FIR
    (gain up^2), convolve ('valid'), and filter + decimate."""
    fh, fw = (1, 1) if f is None else (np.shape(f)[0], np.shape(f)[-1])
    px0, px1, py0, py1 = _pad4(padding)
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    t = direct_upfirdn2d(x, f if up > 1 else [[1.0]], up=up, padding=(px0, px1, py0, py1),
                         flip_filter=flip_filter, gain=up ** 2)
    t = direct_conv2d(t, w, groups=groups, flip_weight=flip_weight)
    if down > 1:
        t = direct_upfirdn2d(t, f, down=down, flip_filter=flip_filter)
    return t

# ---------------------------------------------------------------------------------------------
# Cases: one per path of spec 2.5, with the non-symmetric filters and both flip conventions.

# name, kernel (kh, kw), up, down, padding, groups
PATHS = [
    ('1x1_down', (1, 1), 1, 2, 0, 1),
    ('1x1_up', (1, 1), 2, 1, 0, 1),
    ('3x3_down', (3, 3), 1, 2, 1, 1),
    ('3x3_up', (3, 3), 2, 1, 1, 1),
    ('3x2_up', (3, 2), 2, 1, [1, 0], 1),
    ('3x3_up_down', (3, 3), 2, 2, 1, 1),
    ('3x3_plain', (3, 3), 1, 1, 1, 1),
    ('3x3_asym_pad', (3, 3), 1, 1, [2, 0, 1, -1], 1),
    ('3x3_up3', (3, 3), 3, 1, 1, 1),
    ('grouped_1x1_down', (1, 1), 1, 2, 0, 2),
    ('grouped_1x1_up', (1, 1), 2, 1, 0, 2),
    ('grouped_3x3_down', (3, 3), 1, 2, 1, 2),
    ('grouped_3x3_up', (3, 3), 2, 1, 1, 2),
    ('grouped_3x3_plain', (3, 3), 1, 1, 1, 2),
]
FILTERS = {
    'default': lambda: upfirdn2d.setup_filter([1, 3, 3, 1]),
    'nonsym2d': lambda: upfirdn2d.setup_filter(torch.rand(4, 3, generator=torch.Generator().manual_seed(3)) + 0.2),
    'sep8': lambda: upfirdn2d.setup_filter(torch.rand(8, generator=torch.Generator().manual_seed(4)) + 0.2),
}


def _tensors(kernel, groups, in_ch=3, out_ch=2, hw=(6, 7), n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn([n, in_ch * groups, *hw], generator=g, dtype=torch.float64)
    w = torch.randn([out_ch * groups, in_ch, *kernel], generator=g, dtype=torch.float64)
    return x, w


@pytest.mark.parametrize('flip_filter', [False, True])
@pytest.mark.parametrize('flip_weight', [True, False])
@pytest.mark.parametrize('fname', sorted(FILTERS))
@pytest.mark.parametrize('path', PATHS, ids=[p[0] for p in PATHS])
def test_matches_direct_definition(path, fname, flip_weight, flip_filter):
    _, kernel, up, down, padding, groups = path
    f = FILTERS[fname]()
    x, w = _tensors(kernel, groups)
    y = cr.conv2d_resample(x, w, f, up=up, down=down, padding=padding, groups=groups,
                           flip_weight=flip_weight, flip_filter=flip_filter)
    expected = direct_conv2d_resample(x.numpy(), w.numpy(), f.numpy(), up, down, padding, groups,
                                      flip_weight, flip_filter)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-9, atol=1e-9)


def test_direct_definitions_agree_with_torch():
    """Sanity check of the test's own helpers on cases torch computes directly."""
    x, w = _tensors((3, 2), groups=2)
    np.testing.assert_allclose(direct_conv2d(x.numpy(), w.numpy(), groups=2),
                               F.conv2d(x, w, groups=2).numpy(), atol=1e-12)
    np.testing.assert_allclose(direct_conv2d(x.numpy(), w.numpy(), groups=2, flip_weight=False),
                               F.conv2d(x, w.flip([2, 3]), groups=2).numpy(), atol=1e-12)
    f = FILTERS['nonsym2d']()
    np.testing.assert_allclose(direct_upfirdn2d(x.numpy(), f.numpy(), up=2, padding=(2, -1, 0, 3), gain=4),
                               upfirdn2d.upfirdn2d(x, f, up=2, padding=[2, -1, 0, 3], gain=4).numpy(), atol=1e-12)

# ---------------------------------------------------------------------------------------------
# The compositions the networks rely on (spec 2.5 "concrete cases"), default 4-tap filter.


def test_layer_cases_equal_their_compositions():
    f32 = upfirdn2d.setup_filter([1, 3, 3, 1])  # float32, cast to x's dtype inside the ops
    x, w = _tensors((3, 3), groups=1, hw=(8, 6))
    x1, w1 = _tensors((1, 1), groups=1, hw=(8, 6))

    # G conv0 (3x3, up 2, padding 1, flip_weight False): a true 3x3 'valid' convolution of the image
    # upsampled with the conv padding folded in *before* the filter (upsample2d(padding=1)).
    y = cr.conv2d_resample(x, w, f32, up=2, padding=1, flip_weight=False)
    assert y.shape[2:] == (16, 12)
    torch.testing.assert_close(y, F.conv2d(upfirdn2d.upsample2d(x, f32, padding=1), w.flip([2, 3])))
    # Not the same as zero-padding after upsampling: the filter spreads into the padded border.
    naive = F.conv2d(upfirdn2d.upsample2d(x, f32), w.flip([2, 3]), padding=1)
    torch.testing.assert_close(y[..., 1:-1, 1:-1], naive[..., 1:-1, 1:-1])
    assert not torch.allclose(y[..., 0, :], naive[..., 0, :])
    # The transposed convolution alone gives 2H+1; the filter with padding 1 and gain 4 gives 2H.
    assert F.conv_transpose2d(x, w.transpose(0, 1), stride=2).shape[2:] == (17, 13)

    # D conv1 (3x3, down 2, padding 1): filter with padding 2 (size H+1), then a stride-2 conv.
    y = cr.conv2d_resample(x, w, f32, down=2, padding=1)
    assert y.shape[2:] == (4, 3)
    torch.testing.assert_close(y, F.conv2d(upfirdn2d.upfirdn2d(x, f32, padding=2), w, stride=2))

    # D skip (1x1, down 2): downsample2d (filter with padding 1, every 2nd sample), then the 1x1 conv.
    y = cr.conv2d_resample(x1, w1, f32, down=2)
    assert y.shape[2:] == (4, 3)
    torch.testing.assert_close(y, F.conv2d(upfirdn2d.downsample2d(x1, f32), w1))

    # G skip (1x1, up 2): the 1x1 conv, then upsample2d (padding [2, 1], gain 4).
    y = cr.conv2d_resample(x1, w1, f32, up=2)
    assert y.shape[2:] == (16, 12)
    torch.testing.assert_close(y, upfirdn2d.upsample2d(F.conv2d(x1, w1), f32))
    torch.testing.assert_close(y, upfirdn2d.upfirdn2d(F.conv2d(x1, w1), f32, up=2, padding=[2, 1, 2, 1], gain=4))

    # Everything else: stride 1, padding k//2, correlation.
    torch.testing.assert_close(cr.conv2d_resample(x, w, padding=1), F.conv2d(x, w, padding=1))


@pytest.mark.parametrize('path', PATHS[:9], ids=[p[0] for p in PATHS[:9]])
def test_flip_weight_is_a_kernel_flip(path):
    _, kernel, up, down, padding, groups = path
    f = FILTERS['nonsym2d']()
    x, w = _tensors(kernel, groups)
    a = cr.conv2d_resample(x, w, f, up=up, down=down, padding=padding, flip_weight=False)
    b = cr.conv2d_resample(x, w.flip([2, 3]), f, up=up, down=down, padding=padding, flip_weight=True)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('path', [p for p in PATHS if p[5] > 1], ids=[p[0] for p in PATHS if p[5] > 1])
@pytest.mark.parametrize('flip_weight', [True, False])
def test_grouped_equals_per_group_loop(path, flip_weight):
    """The fused modulated conv: x [1, N*I, H, W], w [N*O, I, k, k], groups=N is N independent convs."""
    _, kernel, up, down, padding, _ = path
    f = FILTERS['nonsym2d']()
    num = 3
    x, w = _tensors(kernel, groups=num, n=1)
    y = cr.conv2d_resample(x, w, f, up=up, down=down, padding=padding, groups=num, flip_weight=flip_weight)
    o = w.shape[0] // num
    i = w.shape[1]
    for s in range(num):
        ys = cr.conv2d_resample(x[:, s * i:(s + 1) * i], w[s * o:(s + 1) * o], f, up=up, down=down,
                                padding=padding, flip_weight=flip_weight)
        torch.testing.assert_close(y[:, s * o:(s + 1) * o], ys, rtol=1e-12, atol=1e-12)


def test_errors_name_the_problem():
    x, w = _tensors((3, 3), groups=1)
    with pytest.raises(ValueError, match='filter'):
        cr.conv2d_resample(x, w, None, up=2)
    with pytest.raises(ValueError, match='dtype'):
        cr.conv2d_resample(x, w.float())
    with pytest.raises(ValueError, match='integers'):
        cr.conv2d_resample(x, w, upfirdn2d.setup_filter([1, 3, 3, 1]), up=0)

# ---------------------------------------------------------------------------------------------
# Gradients (R1 and path-length regularisation differentiate through these).


@pytest.mark.parametrize('path', [PATHS[i] for i in (0, 1, 2, 3, 5, 12)],
                         ids=[PATHS[i][0] for i in (0, 1, 2, 3, 5, 12)])
def test_gradcheck_and_gradgradcheck(path):
    _, kernel, up, down, padding, groups = path
    f = FILTERS['nonsym2d']()
    x, w = _tensors(kernel, groups, in_ch=1, out_ch=1, hw=(2, 3) if up > 1 else (4, 3), n=1)
    x.requires_grad_(True)
    w.requires_grad_(True)
    func = lambda a, b: cr.conv2d_resample(a, b, f, up=up, down=down, padding=padding, groups=groups,  # noqa: E731
                                           flip_weight=(up == 1))
    assert torch.autograd.gradcheck(func, (x, w))
    assert torch.autograd.gradgradcheck(func, (x, w))

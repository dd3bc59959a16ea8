"""upfirdn2d (spec section 2.4): the reference op against a direct definition written here, the filter
helpers, gradients, the adjoint geometry used by the CUDA backward, the kernel's per-sample arithmetic
compiled for the CPU and driven through the real autograd Function, the CUDA build with nvcc, and --
where a GPU exists -- the CUDA kernel against the reference."""

import ctypes
import os
import random
import shutil
import subprocess

import numpy as np
import pytest
import scipy.signal
import torch

from torch_utils import custom_ops
from torch_utils.ops import upfirdn2d, upfirdn2d_cuda

# ---------------------------------------------------------------------------------------------
# The direct definition: the four steps of spec 2.4, spelled out with loops.


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _pad4(p) -> tuple[int, int, int, int]:
    if isinstance(p, int):
        return p, p, p, p
    return (p[0], p[0], p[1], p[1]) if len(p) == 2 else tuple(p)


def direct_upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1.0) -> np.ndarray:
    """float64 numpy result of upsample -> pad/crop -> FIR (true convolution) -> decimate."""
    x = np.asarray(x, dtype=np.float64)
    f = np.asarray(f, dtype=np.float64)
    f2 = np.outer(f, f) if f.ndim == 1 else f   # a separable filter acts as its outer product
    f2 = f2 * gain
    upx, upy = _pair(up)
    downx, downy = _pair(down)
    px0, px1, py0, py1 = _pad4(padding)
    n, c, h, w = x.shape

    # 1. Zero insertion: input (i, j) lands at (i*upy, j*upx); everything else is zero.
    u = np.zeros([n, c, h * upy, w * upx])
    for i in range(h):
        for j in range(w):
            u[:, :, i * upy, j * upx] = x[:, :, i, j]

    # 2. Padded signal p[a, b] = u[a - py0, b - px0]; zero outside u. Negative padding crops.
    hp, wp = h * upy + py0 + py1, w * upx + px0 + px1
    p = np.zeros([n, c, hp, wp])
    for a in range(hp):
        for b in range(wp):
            if 0 <= a - py0 < h * upy and 0 <= b - px0 < w * upx:
                p[:, :, a, b] = u[:, :, a - py0, b - px0]

    # 3. 'valid' filtering. True convolution: conv[m] = sum_k f[k] * p[m - k] for the m where the
    # whole filter overlaps p (m = fh-1 .. hp-1), stored at m - (fh-1). Correlation if flip_filter.
    fh, fw = f2.shape
    oh, ow = hp - fh + 1, wp - fw + 1
    out = np.zeros([n, c, oh, ow])
    for s in range(fh):
        for t in range(fw):
            if flip_filter:
                out += f2[s, t] * p[:, :, s:s + oh, t:t + ow]
            else:
                out += f2[s, t] * p[:, :, fh - 1 - s: fh - 1 - s + oh, fw - 1 - t: fw - 1 - t + ow]

    # 4. Keep samples 0, down, 2*down, ...
    return out[:, :, ::downy, ::downx]


def _run_ref(x, f, case, impl='ref'):
    return upfirdn2d.upfirdn2d(x, f, up=case['up'], down=case['down'], padding=case['padding'],
                               flip_filter=case['flip_filter'], gain=case['gain'], impl=impl)


def _expected_size(case, h, w, f):
    fh, fw = (f.shape[0], f.shape[0]) if f.ndim == 1 else tuple(f.shape)
    upx, upy = _pair(case['up'])
    downx, downy = _pair(case['down'])
    px0, px1, py0, py1 = _pad4(case['padding'])
    return (h * upy + py0 + py1 - fh) // downy + 1, (w * upx + px0 + px1 - fw) // downx + 1


def _make_cases():
    """Hand-picked cases (the networks' uses) plus seeded random ones over up/down 1-3 and pads."""
    cases = [
        dict(hw=(5, 7), f=(4, 4), up=2, down=1, padding=[2, 1, 2, 1], flip_filter=False, gain=4.0),
        dict(hw=(6, 8), f=(4, 4), up=1, down=2, padding=[1, 1, 1, 1], flip_filter=False, gain=1.0),
        dict(hw=(6, 5), f=(4, 4), up=1, down=1, padding=[2, 1, 2, 1], flip_filter=True, gain=1.0),
        dict(hw=(4, 6), f=(8,), up=2, down=1, padding=[4, 3, 4, 3], flip_filter=False, gain=4.0),
        dict(hw=(7, 6), f=(3, 2), up=[3, 2], down=[1, 2], padding=[0, -1, 2, -2], flip_filter=True, gain=0.5),
        dict(hw=(5, 5), f=(5,), up=[1, 3], down=[3, 1], padding=[-2, 3, 1, -1], flip_filter=False, gain=2.0),
        dict(hw=(3, 4), f=(1, 1), up=3, down=2, padding=0, flip_filter=False, gain=1.0),
        dict(hw=(6, 7), f=(2, 5), up=1, down=3, padding=[1, 2], flip_filter=False, gain=1.5),
    ]
    rng = random.Random(1234)
    while len(cases) < 40:
        sep = rng.random() < 0.3
        f = (rng.randint(1, 5),) if sep else (rng.randint(1, 4), rng.randint(1, 4))
        case = dict(hw=(rng.randint(2, 6), rng.randint(2, 6)), f=f,
                    up=rng.choice([1, 2, 3, [1, 2], [3, 1], [2, 3]]),
                    down=rng.choice([1, 2, 3, [2, 1], [1, 3], [3, 2]]),
                    padding=rng.choice([0, 1, [1, 2], [rng.randint(-2, 3) for _ in range(4)]]),
                    flip_filter=rng.random() < 0.5, gain=rng.choice([1.0, 2.0, 0.75]))
        fake_f = torch.zeros(case['f'])
        if min(_expected_size(case, *case['hw'], fake_f)) >= 1:
            cases.append(case)
    return cases


CASES = _make_cases()
CASE_IDS = [f"{c['hw']}-f{c['f']}-up{c['up']}-dn{c['down']}-p{c['padding']}-flip{int(c['flip_filter'])}"
            for c in CASES]


def _case_tensors(case, dtype=torch.float64, n=2, c=3, seed=0):
    """Input and a non-symmetric positive float32 filter for a case."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn([n, c, *case['hw']], generator=g, dtype=torch.float64).to(dtype)
    f = (torch.rand(case['f'], generator=g) + 0.1).to(torch.float32)
    return x, f

# ---------------------------------------------------------------------------------------------
# Reference op vs direct definition.


def test_direct_definition_matches_scipy():
    """Sanity check of the test's own definition: with up = down = 1 and no padding it is scipy's
    'valid' convolution (flip_filter=False) or correlation (flip_filter=True)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal([1, 1, 6, 7])
    f = rng.random([3, 2]) + 0.1
    conv = direct_upfirdn2d(x, f)[0, 0]
    corr = direct_upfirdn2d(x, f, flip_filter=True)[0, 0]
    np.testing.assert_allclose(conv, scipy.signal.convolve2d(x[0, 0], f, mode='valid'), atol=1e-12)
    np.testing.assert_allclose(corr, scipy.signal.correlate2d(x[0, 0], f, mode='valid'), atol=1e-12)
    assert not np.allclose(conv, corr)  # the filter is non-symmetric, so the flip matters


@pytest.mark.parametrize('case', CASES, ids=CASE_IDS)
def test_ref_matches_direct_definition(case):
    x, f = _case_tensors(case)
    y = _run_ref(x, f, case)
    assert tuple(y.shape[2:]) == _expected_size(case, *case['hw'], f)
    expected = direct_upfirdn2d(x.numpy(), f.numpy(), case['up'], case['down'], case['padding'],
                                case['flip_filter'], case['gain'])
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10, atol=1e-10)


def test_cuda_impl_on_cpu_tensors_is_the_reference():
    case = CASES[4]
    x, f = _case_tensors(case, dtype=torch.float32)
    assert torch.equal(_run_ref(x, f, case, impl='cuda'), _run_ref(x, f, case, impl='ref'))


def test_none_filter_is_identity_and_bad_arguments_are_refused():
    x = torch.randn(1, 2, 3, 4)
    assert torch.equal(upfirdn2d.upfirdn2d(x, None), x)
    with pytest.raises(ValueError, match='impl'):
        upfirdn2d.upfirdn2d(x, None, impl='triton')
    with pytest.raises(ValueError, match='float32'):
        upfirdn2d.upfirdn2d(x, torch.ones(2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match='>= 1'):
        upfirdn2d.upfirdn2d(x, None, up=0)
    with pytest.raises(ValueError, match='padding'):
        upfirdn2d.upfirdn2d(x, None, padding=[1, 2, 3])

# ---------------------------------------------------------------------------------------------
# setup_filter and the helpers.


def test_setup_filter_default_is_outer_product_over_64():
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    assert f.dtype == torch.float32 and f.shape == (4, 4)
    expected = torch.outer(torch.tensor([1., 3., 3., 1.]), torch.tensor([1., 3., 3., 1.])) / 64
    assert torch.equal(f, expected)


def test_setup_filter_separable_rule_normalisation_and_gain():
    taps = [1., 2., 5., 3., 4., 1., 2., 6.]                    # 8 taps: stays 1-D (separable)
    f = upfirdn2d.setup_filter(taps)
    assert f.shape == (8,)
    torch.testing.assert_close(f, torch.tensor(taps) / sum(taps))
    assert upfirdn2d.setup_filter(taps[:7]).shape == (7, 7)    # fewer than 8 taps: 2-D outer product
    assert upfirdn2d.setup_filter(taps[:3], separable=True).shape == (3,)
    assert upfirdn2d.setup_filter(taps, separable=False).shape == (8, 8)
    # Gain: a 2-D filter is scaled by gain, a 1-D (applied twice) by gain ** 0.5.
    torch.testing.assert_close(upfirdn2d.setup_filter([1, 2], gain=9.0), torch.tensor([[1., 2.], [2., 4.]]))
    torch.testing.assert_close(upfirdn2d.setup_filter(taps, gain=9.0), 3 * torch.tensor(taps) / sum(taps))
    # No normalisation, flipping, a 2-D input normalised by its total, None = identity.
    assert torch.equal(upfirdn2d.setup_filter([1, 2, 4], normalize=False, separable=True), torch.tensor([1., 2., 4.]))
    assert torch.equal(upfirdn2d.setup_filter([1, 2, 4], flip_filter=True, separable=True),
                       torch.tensor([4., 2., 1.]) / 7)
    torch.testing.assert_close(upfirdn2d.setup_filter([[1, 2, 3], [4, 5, 6]]),
                               torch.tensor([[1., 2., 3.], [4., 5., 6.]]) / 21)
    assert torch.equal(upfirdn2d.setup_filter(None), torch.ones(1, 1))


def test_separable_filter_equals_its_outer_product():
    taps = torch.rand(8) + 0.1
    f1 = upfirdn2d.setup_filter(taps)
    f2 = upfirdn2d.setup_filter(taps, separable=False)
    x = torch.randn(2, 3, 9, 7, dtype=torch.float64)
    for kwargs in [dict(up=2, padding=[4, 3, 4, 3], gain=4), dict(down=[2, 1], padding=[3, 3, 2, 1]),
                   dict(flip_filter=True, padding=[1, 5, 2, 0])]:
        torch.testing.assert_close(upfirdn2d.upfirdn2d(x, f1, **kwargs), upfirdn2d.upfirdn2d(x, f2, **kwargs),
                                   rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('fshape', [(4, 4), (3, 2), (5,)])
@pytest.mark.parametrize('factor', [2, 3, [2, 3]])
def test_resampling_helpers_sizes_and_padding(fshape, factor):
    """Spec 2.4 helper padding: up (fw+up-1)//2, (fw-up)//2; down (fw-down+1)//2, (fw-down)//2;
    filter fw//2, (fw-1)//2; upsample2d has gain up_x*up_y. Sizes: H*up, H//down, H (plus the
    caller's extra padding)."""
    f = torch.rand(fshape) + 0.1
    fh, fw = (fshape[0], fshape[0]) if len(fshape) == 1 else fshape
    sx, sy = _pair(factor)
    x = torch.randn(1, 2, 6, 9, dtype=torch.float64)
    user_pad = [1, 0, 0, 2]

    up = upfirdn2d.upsample2d(x, f, up=factor, padding=user_pad)
    pad = [1 + (fw + sx - 1) // 2, (fw - sx) // 2, (fh + sy - 1) // 2, 2 + (fh - sy) // 2]
    np.testing.assert_allclose(up.numpy(), direct_upfirdn2d(x.numpy(), f.numpy(), up=factor, padding=pad,
                                                            gain=sx * sy), atol=1e-10)
    assert up.shape[2:] == (6 * sy + 2, 9 * sx + 1)  # the two paddings always add up to fw - 1

    down = upfirdn2d.downsample2d(x, f, down=factor, padding=user_pad)
    pad = [1 + (fw - sx + 1) // 2, (fw - sx) // 2, (fh - sy + 1) // 2, 2 + (fh - sy) // 2]
    np.testing.assert_allclose(down.numpy(), direct_upfirdn2d(x.numpy(), f.numpy(), down=factor, padding=pad),
                               atol=1e-10)
    assert down.shape[2:] == ((6 + 2) // sy, (9 + 1) // sx)  # paddings add up to fw - down

    filt = upfirdn2d.filter2d(x, f, padding=user_pad)
    pad = [1 + fw // 2, (fw - 1) // 2, fh // 2, 2 + (fh - 1) // 2]
    np.testing.assert_allclose(filt.numpy(), direct_upfirdn2d(x.numpy(), f.numpy(), padding=pad), atol=1e-10)
    assert filt.shape[2:] == (6 + 2, 9 + 1)


def test_helpers_keep_the_signal_level_with_the_default_filter():
    """With the normalised [1,3,3,1] filter and the spec's padding: upsample2d doubles the size and
    keeps a constant image constant away from the border (gain 4), downsample2d halves it, filter2d
    keeps it."""
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    x = torch.full([1, 1, 8, 6], 3.0)
    up = upfirdn2d.upsample2d(x, f)
    assert up.shape == (1, 1, 16, 12)
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.full_like(up[..., 2:-2, 2:-2], 3.0))
    down = upfirdn2d.downsample2d(x, f)
    assert down.shape == (1, 1, 4, 3)
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.full_like(down[..., 1:-1, 1:-1], 3.0))
    filt = upfirdn2d.filter2d(x, f)
    assert filt.shape == x.shape
    torch.testing.assert_close(filt[..., 2:-2, 2:-2], torch.full_like(filt[..., 2:-2, 2:-2], 3.0))
    # Spec's concrete numbers for the 4-tap filter: upsample pads (2, 1) with gain 4, downsample (1, 1).
    z = torch.randn(2, 3, 5, 7)
    torch.testing.assert_close(upfirdn2d.upsample2d(z, f), upfirdn2d.upfirdn2d(z, f, up=2, padding=[2, 1, 2, 1], gain=4))
    torch.testing.assert_close(upfirdn2d.downsample2d(z, f), upfirdn2d.upfirdn2d(z, f, down=2, padding=1))

# ---------------------------------------------------------------------------------------------
# Gradients of the reference, and the adjoint geometry that the CUDA backward uses.


GRAD_CASES = [  # small, so that gradgradcheck's numerical Jacobians stay cheap
    dict(hw=(3, 2), f=(4, 4), up=2, down=1, padding=[2, 1, 2, 1], flip_filter=False, gain=4.0),
    dict(hw=(3, 4), f=(3, 2), up=[3, 2], down=[2, 3], padding=[0, -1, 2, -2], flip_filter=True, gain=0.5),
    dict(hw=(4, 3), f=(5,), up=[1, 2], down=[2, 1], padding=[1, 2, -1, 0], flip_filter=False, gain=2.0),
]


@pytest.mark.parametrize('case', GRAD_CASES)
def test_ref_gradcheck_and_gradgradcheck(case):
    x, f = _case_tensors(case, n=1, c=1)
    x.requires_grad_(True)
    func = lambda t: _run_ref(t, f, case)  # noqa: E731
    assert torch.autograd.gradcheck(func, (x,))
    assert torch.autograd.gradgradcheck(func, (x,))


@pytest.mark.parametrize('case', CASES, ids=CASE_IDS)
def test_transpose_geometry_gives_the_autograd_gradient(case):
    """The CUDA backward computes dx as upfirdn2d(dy, f, transpose_geometry(...)). Check that formula
    with the reference op against torch.autograd's gradient of the reference op."""
    x, f = _case_tensors(case)
    x.requires_grad_(True)
    y = _run_ref(x, f, case)
    dy = torch.randn_like(y)
    dx_autograd, = torch.autograd.grad(y, x, dy)

    g = upfirdn2d_cuda.make_geometry(case['up'], case['down'], case['padding'], case['flip_filter'], case['gain'])
    assert upfirdn2d_cuda.output_size(g, *case['hw'], *upfirdn2d_cuda.filter_hw(f)) == tuple(y.shape[2:])
    t = upfirdn2d_cuda.transpose_geometry(g, *case['hw'], *upfirdn2d_cuda.filter_hw(f))
    dx = upfirdn2d.upfirdn2d(dy, f, up=[t.upx, t.upy], down=[t.downx, t.downy],
                             padding=[t.px0, t.px1, t.py0, t.py1], flip_filter=t.flip_filter, gain=t.gain,
                             impl='ref')
    assert dx.shape == x.shape
    torch.testing.assert_close(dx, dx_autograd, rtol=1e-10, atol=1e-10)
    # Transposing twice gives back the forward op (p1 may differ where it only drops samples that
    # decimation skips anyway, so compare everything else and the output size).
    tt = upfirdn2d_cuda.transpose_geometry(t, *y.shape[2:], *upfirdn2d_cuda.filter_hw(f))
    assert tt._replace(px1=g.px1, py1=g.py1) == g
    assert upfirdn2d_cuda.output_size(tt, *case['hw'], *upfirdn2d_cuda.filter_hw(f)) == tuple(y.shape[2:])


def test_cuda_entry_point_refuses_cpu_tensors():
    with pytest.raises(ValueError, match='CUDA tensor'):
        upfirdn2d_cuda.upfirdn2d_cuda(torch.zeros(1, 1, 4, 4), None)

# ---------------------------------------------------------------------------------------------
# The kernel's arithmetic without a GPU: upfirdn2d.h's `upfirdn2d_sample` (what each CUDA thread
# runs) compiled for the CPU behind a stand-in for the extension, driven through the real autograd
# Function of upfirdn2d_cuda.py (separable passes, argument order, backward, double backward).

_HOST_HARNESS = r"""
#define UPFIRDN2D_NO_CUDA
#include "upfirdn2d.h"

template <typename T>
static void run(const T* x, const float* f, T* y, const int64_t* s, const int* g, double gain) {
    Upfirdn2dParams p{};
    p.x = x; p.f = f; p.y = y;
    p.n = s[0]; p.c = s[1]; p.in_h = s[2]; p.in_w = s[3];
    p.sx_n = s[4]; p.sx_c = s[5]; p.sx_h = s[6]; p.sx_w = s[7];
    p.out_h = s[8]; p.out_w = s[9];
    p.fh = g[0]; p.fw = g[1]; p.upx = g[2]; p.upy = g[3]; p.downx = g[4]; p.downy = g[5];
    p.px0 = g[6]; p.px1 = g[7]; p.py0 = g[8]; p.py1 = g[9]; p.flip_filter = g[10] != 0; p.gain = gain;
    auto load = [x](int64_t offset) { return x[offset]; };  // accumulate in T, as the kernel does for float/double
    const int64_t total = p.n * p.c * p.out_h * p.out_w;
    for (int64_t i = 0; i < total; ++i)
        y[i] = upfirdn2d_sample<T>(p, i, load);
}

extern "C" void upfirdn2d_host_f32(const float* x, const float* f, float* y, const int64_t* s, const int* g, double gain) {
    run<float>(x, f, y, s, g, gain);
}
extern "C" void upfirdn2d_host_f64(const double* x, const float* f, double* y, const int64_t* s, const int* g, double gain) {
    run<double>(x, f, y, s, g, gain);
}
"""


class _HostPlugin:
    """Stands in for the compiled extension: the binding's signature and output size, the kernel's
    per-sample arithmetic on CPU tensors."""

    def __init__(self, lib):
        self.lib = lib

    def upfirdn2d(self, x, f, upx, upy, downx, downy, px0, px1, py0, py1, flip_filter, gain):
        assert x.device.type == 'cpu' and x.dtype in (torch.float32, torch.float64) and x.ndim == 4
        assert f.ndim == 2 and f.dtype == torch.float32
        f = f.contiguous()
        n, c, h, w = x.shape
        fh, fw = f.shape
        out_h = (h * upy + py0 + py1 - fh) // downy + 1  # as upfirdn2d.cpp computes it
        out_w = (w * upx + px0 + px1 - fw) // downx + 1
        assert out_h >= 1 and out_w >= 1
        y = torch.empty([n, c, out_h, out_w], dtype=x.dtype)
        sizes = (ctypes.c_int64 * 10)(n, c, h, w, *x.stride(), out_h, out_w)
        geometry = (ctypes.c_int * 11)(fh, fw, upx, upy, downx, downy, px0, px1, py0, py1, int(flip_filter))
        fn = self.lib.upfirdn2d_host_f64 if x.dtype == torch.float64 else self.lib.upfirdn2d_host_f32
        fn(ctypes.c_void_p(x.data_ptr()), ctypes.c_void_p(f.data_ptr()), ctypes.c_void_p(y.data_ptr()),
           sizes, geometry, ctypes.c_double(gain))
        return y


@pytest.fixture(scope='module')
def host_plugin(tmp_path_factory):
    cxx = shutil.which(os.environ.get('CXX', 'c++')) or shutil.which('g++')
    if cxx is None:
        pytest.skip('no C++ compiler to build the host version of the kernel arithmetic')
    build = tmp_path_factory.mktemp('upfirdn2d_host')
    (build / 'harness.cpp').write_text(_HOST_HARNESS)
    subprocess.run([cxx, '-std=c++17', '-O1', '-shared', '-fPIC', '-Wall', '-Werror',
                    '-I', os.path.dirname(upfirdn2d_cuda.__file__), str(build / 'harness.cpp'),
                    '-o', str(build / 'harness.so')], check=True, capture_output=True)
    return _HostPlugin(ctypes.CDLL(str(build / 'harness.so')))


def _run_function(x, f, case):
    g = upfirdn2d_cuda.make_geometry(case['up'], case['down'], case['padding'], case['flip_filter'], case['gain'])
    return upfirdn2d_cuda._Upfirdn2dCuda.apply(x, f, g)


@pytest.mark.parametrize('case', CASES, ids=CASE_IDS)
def test_kernel_arithmetic_matches_ref(case, host_plugin, monkeypatch):
    monkeypatch.setattr(upfirdn2d_cuda, '_plugin', host_plugin)
    x, f = _case_tensors(case)
    x.requires_grad_(True)
    y = _run_function(x, f, case)
    y_ref = _run_ref(x, f, case)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(_run_function(x.detach().float(), f, case), y_ref.detach().float(),
                               rtol=1e-5, atol=1e-5)
    # Backward (through the same Function with the transposed geometry) against the reference's.
    w = torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)
    dx, = torch.autograd.grad((y ** 3 * w).sum(), x, create_graph=True)
    ddx, = torch.autograd.grad((dx ** 2).sum(), x)  # the backward of the backward, as in R1
    dx_ref, = torch.autograd.grad((y_ref ** 3 * w).sum(), x, create_graph=True)
    ddx_ref, = torch.autograd.grad((dx_ref ** 2).sum(), x)
    torch.testing.assert_close(dx, dx_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ddx, ddx_ref, rtol=1e-10, atol=1e-10)


def test_kernel_arithmetic_handles_strided_inputs(host_plugin, monkeypatch):
    monkeypatch.setattr(upfirdn2d_cuda, '_plugin', host_plugin)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    base = torch.randn(2, 6, 12, 10, dtype=torch.float64)
    for x in [base.to(memory_format=torch.channels_last), base[:, ::2, 1:, ::3], base.transpose(2, 3),
              torch.randn(1, 1, 5, 7, dtype=torch.float64).expand(2, 3, 5, 7)]:
        for case in [dict(up=2, down=1, padding=[2, 1, 2, 1], flip_filter=False, gain=4.0),
                     dict(up=1, down=2, padding=1, flip_filter=True, gain=1.0)]:
            torch.testing.assert_close(_run_function(x, f, case), _run_ref(x, f, case), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('case', GRAD_CASES)
def test_kernel_arithmetic_gradcheck_and_gradgradcheck(case, host_plugin, monkeypatch):
    monkeypatch.setattr(upfirdn2d_cuda, '_plugin', host_plugin)
    x, f = _case_tensors(case, n=1, c=1)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: _run_function(t, f, case), (x,))
    assert torch.autograd.gradgradcheck(lambda t: _run_function(t, f, case), (x,))


# ---------------------------------------------------------------------------------------------
# The CUDA sources: compile with nvcc (no GPU needed), and compare with the reference on a GPU.


def test_cuda_sources_compile(monkeypatch):
    """Builds upfirdn2d.cpp/.cu/.h through custom_ops (cached by source hash, so only the first run
    compiles) and checks that the binding loads and validates its inputs."""
    cuda_home, how = custom_ops.find_cuda_home()
    if cuda_home is None:
        pytest.skip(f'no CUDA toolkit (nvcc) to compile with: {how}')
    monkeypatch.setenv('CUDA_HOME', cuda_home)
    if not torch.cuda.is_available() and not os.environ.get('TORCH_CUDA_ARCH_LIST'):
        monkeypatch.setenv('TORCH_CUDA_ARCH_LIST', '8.0')  # no GPU to ask: build for one arch only
    plugin = upfirdn2d_cuda.build_plugin()
    assert upfirdn2d_cuda.build_plugin() is plugin  # memoised in-process
    with pytest.raises(RuntimeError, match='must be a CUDA tensor'):
        plugin.upfirdn2d(torch.zeros(1, 1, 4, 4), torch.ones(1, 1), 1, 1, 1, 1, 0, 0, 0, 0, False, 1.0)


requires_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA GPU in this environment')


@requires_gpu
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_cuda_forward_matches_ref(dtype):
    tol = {torch.float32: 1e-5, torch.float64: 1e-12, torch.float16: 2e-2, torch.bfloat16: 5e-2}[dtype]
    for case in CASES:
        x, f = _case_tensors(case, dtype=dtype, n=3, c=4)
        x, f = x.cuda(), f.cuda()
        y = _run_ref(x, f, case, impl='cuda')
        expected = _run_ref(x.to(torch.float64), f, case, impl='ref')
        assert y.dtype == dtype and y.shape == expected.shape, case
        scale = expected.abs().max().item() + 1
        torch.testing.assert_close(y.to(torch.float64), expected, rtol=0, atol=tol * scale, msg=str(case))


@requires_gpu
def test_cuda_handles_strided_inputs():
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device='cuda')
    base = torch.randn(2, 6, 12, 10, device='cuda')
    for x in [base.to(memory_format=torch.channels_last), base[:, ::2, 1:, ::3], base.transpose(2, 3),
              torch.randn(1, 1, 5, 7, device='cuda').expand(2, 3, 5, 7)]:
        for kwargs in [dict(up=2, padding=[2, 1, 2, 1], gain=4), dict(down=2, padding=1)]:
            # Reference in float64: cuDNN may run float32 convolutions in TF32.
            torch.testing.assert_close(upfirdn2d.upfirdn2d(x, f, **kwargs).double(),
                                       upfirdn2d.upfirdn2d(x.double(), f, impl='ref', **kwargs),
                                       rtol=1e-5, atol=1e-5)


@requires_gpu
def test_cuda_gradients_match_ref_and_pass_gradcheck():
    for case in CASES:
        x, f = _case_tensors(case, n=1, c=2)
        x, f = x.cuda().requires_grad_(True), f.cuda()
        results = []
        for impl in ('cuda', 'ref'):
            y = _run_ref(x, f, case, impl=impl)
            w = torch.linspace(-1, 1, y.numel(), device='cuda', dtype=y.dtype).reshape(y.shape)
            # A non-linear loss makes dx depend on x, so the second derivative (as in R1) runs
            # the backward of the backward.
            dx, = torch.autograd.grad((y ** 3 * w).sum(), x, create_graph=True)
            ddx, = torch.autograd.grad((dx ** 2).sum(), x)
            results.append((y, dx, ddx))
        for got, want in zip(*results):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10, msg=str(case))
    for case in GRAD_CASES:
        x, f = _case_tensors(case, n=1, c=1)
        x, f = x.cuda().requires_grad_(True), f.cuda()
        func = lambda t: _run_ref(t, f, case, impl='cuda')  # noqa: E731
        assert torch.autograd.gradcheck(func, (x,))
        assert torch.autograd.gradgradcheck(func, (x,))


@requires_gpu
def test_cuda_self_check_and_empty_batch():
    assert upfirdn2d_cuda.self_check(torch.device('cuda')) < 1e-5
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device='cuda')
    assert upfirdn2d.upsample2d(torch.zeros(0, 3, 4, 5, device='cuda'), f).shape == (0, 3, 8, 10)


@requires_gpu
def test_cuda_refuses_a_filter_that_needs_gradients():
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device='cuda').requires_grad_(True)
    with pytest.raises(ValueError, match='filter'):
        upfirdn2d.upfirdn2d(torch.randn(1, 1, 4, 4, device='cuda'), f)

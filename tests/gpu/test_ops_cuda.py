"""The CUDA kernels of bias_act and upfirdn2d against their pure-PyTorch references, on a GPU.

Complements test_bias_act.py / test_upfirdn2d.py (small cases, float64 gradcheck) with what a
first GPU run must prove: float32 and float16 for every activation, gain and clamp; up/down
factors 1, 2 and 4 with padding and flip variants at odd and full sizes (the grid-stride loops
run past one grid); non-contiguous and channels-last inputs; first and second gradients (R1 and
path length backpropagate through both ops twice) against the reference; and a build of both
plugins from an empty cache, timed.

Tolerances (max |cuda - ref| over max |ref| + 1, the reference evaluated in float64 on the same
inputs): float32 1e-5 (the kernels accumulate in float32; 4x4 filters and one activation are a
handful of roundings); float16 4e-3 (one rounding of the output, 2^-11 ~ 4.9e-4 relative, plus
the float16 inputs of the gradient paths). Gradients compare the CUDA path with the reference
path in the same dtype.
"""

import os
import time

import pytest
import torch

from test_bias_act import safe_inputs, value_grad_gradgrad
from torch_utils import custom_ops
from torch_utils.ops import bias_act, bias_act_cuda, upfirdn2d, upfirdn2d_cuda

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')

ACTS = list(bias_act.activation_funcs)
TOL = {torch.float32: 1e-5, torch.float16: 4e-3}
GRAD_TOL = {torch.float32: 1e-4, torch.float16: 2e-2}


def assert_near(got: torch.Tensor, want: torch.Tensor, tol: float, msg: str = ''):
    """|got - want| <= tol * (max |want| + 1) everywhere; same shape; no nan anywhere."""
    assert got.shape == want.shape, f'{msg}: shape {list(got.shape)} vs {list(want.shape)}'
    got, want = got.double(), want.double()
    assert torch.isfinite(got).all() == torch.isfinite(want).all(), f'{msg}: non-finite values differ'
    scale = want.abs().max().item() + 1 if want.numel() else 1
    err = (got - want).abs().max().item() if want.numel() else 0.0
    assert err <= tol * scale, f'{msg}: max |diff| {err:.3g} > {tol:.1g} * {scale:.3g}'

# ---------------------------------------------------------------------------------------------
# bias_act


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16])
@pytest.mark.parametrize('act', ACTS)
def test_bias_act_forward_every_activation_gain_and_clamp(act, dtype):
    gen = torch.Generator().manual_seed(1)
    x = (torch.randn([5, 7, 9, 11], generator=gen) * 3).to('cuda', dtype)
    b = torch.randn([7], generator=gen).to('cuda', dtype)
    for kwargs in (dict(), dict(alpha=0.3, gain=0.7), dict(gain=2.0, clamp=0.5), dict(clamp=256.0),
                   dict(alpha=0.05, clamp=1.0), dict(b=None)):
        bb = kwargs.pop('b', b)
        y = bias_act.bias_act(x, bb, act=act, impl='cuda', **kwargs)
        assert y.dtype == dtype and y.shape == x.shape
        ref = bias_act.bias_act_ref(x.double(), None if bb is None else bb.double(), act=act, **kwargs)
        assert_near(y, ref, TOL[dtype], f'{act} {dtype} {kwargs}')


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16])
@pytest.mark.parametrize('act', ACTS)
def test_bias_act_first_and_second_gradients(act, dtype):
    x, b, clamp = safe_inputs(act, shape=(4, 8, 6, 5), clamp=0.9, seed=3)
    x = x.detach().to('cuda', dtype).requires_grad_(True)
    b = b.detach().to('cuda', dtype).requires_grad_(True)
    outs = {}
    for impl in ('cuda', 'ref'):
        fn = lambda x, b: bias_act.bias_act(x, b, dim=1, act=act, clamp=clamp, impl=impl)  # noqa: E731
        outs[impl] = value_grad_gradgrad(fn, x, b)
    for name, p, q in zip(['y', 'dx', 'db', 'ddx', 'ddb'], outs['cuda'], outs['ref']):
        assert p.dtype == q.dtype, name
        assert_near(p, q, GRAD_TOL[dtype], f'{act} {dtype} {name}')


@pytest.mark.parametrize('layout', ['channels_last', 'transposed', 'sliced', 'expanded'])
def test_bias_act_layouts(layout):
    base = torch.randn([3, 16, 9, 13], device='cuda')
    x = {'channels_last': base.to(memory_format=torch.channels_last), 'transposed': base.transpose(2, 3),
         'sliced': base[:, ::2, 1:, ::3], 'expanded': base[:1].expand(3, 16, 9, 13)}[layout]
    b = torch.randn([x.shape[1]], device='cuda')
    y = bias_act.bias_act(x, b, act='lrelu', clamp=1.5, impl='cuda')
    assert_near(y, bias_act.bias_act_ref(x.double(), b.double(), act='lrelu', clamp=1.5), 1e-5, layout)
    if layout == 'channels_last':  # the layout survives the op, as the fp16 channels-last blocks need
        assert y.is_contiguous(memory_format=torch.channels_last)
    xg = x.detach().clone().requires_grad_(True)  # gradients with the same layout
    g_cuda, = torch.autograd.grad(bias_act.bias_act(xg, b, act='swish', impl='cuda').square().sum(), xg)
    g_ref, = torch.autograd.grad(bias_act.bias_act_ref(xg, b, act='swish').square().sum(), xg)
    assert_near(g_cuda, g_ref, 1e-5, layout)


def test_bias_act_past_one_grid_and_other_dims():
    # 65536 blocks x 256 threads = 16.8M elements per grid pass; this input needs two.
    x = torch.randn([8, 64, 181, 181], device='cuda', dtype=torch.float16)
    b = torch.randn([64], device='cuda', dtype=torch.float16)
    y = bias_act.bias_act(x, b, act='lrelu', clamp=256, impl='cuda')
    assert_near(y, bias_act.bias_act_ref(x.double(), b.double(), act='lrelu', clamp=256), TOL[torch.float16])
    x3 = torch.randn([3, 5, 19], device='cuda')
    for dim, shape in ((0, 3), (2, 19)):
        bb = torch.randn([shape], device='cuda')
        assert_near(bias_act.bias_act(x3, bb, dim=dim, act='elu', impl='cuda'),
                    bias_act.bias_act_ref(x3.double(), bb.double(), dim=dim, act='elu'), 1e-5, f'dim {dim}')

# ---------------------------------------------------------------------------------------------
# upfirdn2d


def _filters(device):
    gen = torch.Generator().manual_seed(5)
    return {
        'fir4': upfirdn2d.setup_filter([1, 3, 3, 1], device=device),                 # the networks' filter
        'asym3x2': (torch.rand([3, 2], generator=gen) + 0.1).to(device),              # flip-sensitive
        'sep8': upfirdn2d.setup_filter(torch.rand([8], generator=gen) + 0.1, device=device, separable=True),
        'one': None,
    }


UPFIRDN_CASES = [  # (up, down, padding, flip_filter, gain)
    (1, 1, 0, False, 1.0), (1, 1, [2, 1, 2, 1], True, 1.0),
    (2, 1, [2, 1, 2, 1], False, 4.0), (2, 1, [3, 2, 1, 0], True, 4.0),
    (4, 1, [3, 3, 3, 3], False, 16.0), (1, 2, [1, 1, 1, 1], False, 1.0),
    (1, 2, [0, -1, 2, 1], True, 1.0), (1, 4, [2, 2, 2, 2], False, 1.0),
    ([2, 4], [4, 1], [1, 2, 3, 4], False, 2.0), (4, 4, [-1, 2, 0, 3], True, 0.5),
    (2, 2, [1, 1, 1, 1], False, 1.0),
]


def _case_id(case):
    up, down, pad, flip, gain = case
    return f'up{up}-dn{down}-p{pad}-flip{int(flip)}-g{gain}'


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16])
@pytest.mark.parametrize('case', UPFIRDN_CASES, ids=[_case_id(c) for c in UPFIRDN_CASES])
def test_upfirdn2d_forward_factors_padding_flip(case, dtype):
    up, down, padding, flip, gain = case
    gen = torch.Generator().manual_seed(7)
    for name, f in _filters('cuda').items():
        for shape in ([2, 3, 11, 7], [1, 5, 13, 16]):  # odd and even sizes
            x = torch.randn(shape, generator=gen).to('cuda', dtype)
            kwargs = dict(up=up, down=down, padding=padding, flip_filter=flip, gain=gain)
            y = upfirdn2d.upfirdn2d(x, f, impl='cuda', **kwargs)
            assert y.dtype == dtype
            ref = upfirdn2d.upfirdn2d_ref(x.double(), f, **kwargs)
            assert_near(y, ref, TOL[dtype], f'{name} {shape} {kwargs}')


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16])
def test_upfirdn2d_network_helpers_at_full_size(dtype):
    # The synthesis and D blocks' uses at 1024^2-like sizes: the grid-stride loop runs past one
    # grid (65536 blocks x 256 threads) and every tile boundary is crossed.
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device='cuda')
    x = torch.randn([2, 16, 512, 512], device='cuda', dtype=dtype)
    for op, kwargs in ((upfirdn2d.upsample2d, {}), (upfirdn2d.downsample2d, {}),
                       (upfirdn2d.filter2d, dict(padding=1)), (upfirdn2d.upsample2d, dict(up=4))):
        y = op(x, f, impl='cuda', **kwargs)
        ref = op(x.double(), f, impl='ref', **kwargs)
        assert_near(y, ref, TOL[dtype], f'{op.__name__} {kwargs}')


@pytest.mark.parametrize('layout', ['channels_last', 'transposed', 'sliced', 'expanded'])
def test_upfirdn2d_layouts(layout):
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device='cuda')
    base = torch.randn([2, 6, 12, 10], device='cuda')
    x = {'channels_last': base.to(memory_format=torch.channels_last), 'transposed': base.transpose(2, 3),
         'sliced': base[:, ::2, 1:, ::3], 'expanded': base[:1].expand(2, 6, 12, 10)}[layout]
    for kwargs in (dict(up=2, padding=[2, 1, 2, 1], gain=4), dict(down=2, padding=1), dict(up=4, down=2, padding=3)):
        assert_near(upfirdn2d.upfirdn2d(x, f, impl='cuda', **kwargs),
                    upfirdn2d.upfirdn2d_ref(x.double(), f, **kwargs), 1e-5, f'{layout} {kwargs}')


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16])
@pytest.mark.parametrize('case', UPFIRDN_CASES[2:9], ids=[_case_id(c) for c in UPFIRDN_CASES[2:9]])
def test_upfirdn2d_first_and_second_gradients(case, dtype):
    up, down, padding, flip, gain = case
    gen = torch.Generator().manual_seed(11)
    f = (torch.rand([4, 3], generator=gen) + 0.1).cuda()
    x = torch.randn([2, 3, 9, 10], generator=gen).to('cuda', dtype).requires_grad_(True)
    results = []
    for impl in ('cuda', 'ref'):
        y = upfirdn2d.upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip, gain=gain, impl=impl)
        w = torch.linspace(-1, 1, y.numel(), device='cuda', dtype=y.dtype).reshape(y.shape)
        dx, = torch.autograd.grad((y.float() ** 3 * w).sum(), x, create_graph=True)  # non-linear: dx depends on x
        ddx, = torch.autograd.grad(dx.float().square().sum(), x)
        results.append((y, dx, ddx))
    for name, got, want in zip(('y', 'dx', 'ddx'), *results):
        assert got.dtype == want.dtype == dtype, name
        assert_near(got, want, GRAD_TOL[dtype], f'{name} {dtype} {case}')

# ---------------------------------------------------------------------------------------------
# Build from an empty cache.


def test_build_from_empty_cache_is_timed(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_EXTENSIONS_DIR', str(tmp_path / 'ext'))
    major, minor = torch.cuda.get_device_capability()
    monkeypatch.setenv('TORCH_CUDA_ARCH_LIST', f'{major}.{minor}')  # for the GPU that is here (sm_90 on an H200)
    monkeypatch.setattr(custom_ops, '_plugins', {})
    monkeypatch.setattr(custom_ops, '_failures', {})
    seconds = {}
    for name, module in (('bias_act', bias_act_cuda), ('upfirdn2d', upfirdn2d_cuda)):
        start = time.perf_counter()
        plugin = module.build_plugin()
        seconds[name] = time.perf_counter() - start
        built = list((tmp_path / 'ext').glob(f'{name}_plugin-*/*.so'))
        assert len(built) == 1, f'{name}: expected one fresh library, found {built}'
        assert callable(getattr(plugin, name))
    print(f"\nbuild from an empty cache ({torch.cuda.get_device_name()}, {os.cpu_count()} CPUs): "
          + ', '.join(f'{k} {v:.1f} s' for k, v in seconds.items()))
    assert max(seconds.values()) < 300, f'a plugin build took over 5 minutes: {seconds}'
    # The fresh builds compute what the reference does.
    monkeypatch.setattr(upfirdn2d_cuda, '_plugin', None)
    assert upfirdn2d_cuda.self_check(torch.device('cuda')) < 1e-5
    assert bias_act_cuda.self_check(torch.device('cuda')) < 1e-4

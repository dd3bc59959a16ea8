"""bias_act: the reference against a direct NumPy definition, its gradients, and (with a GPU)
the CUDA kernel against the reference. The kernel's arithmetic is also checked on CPU through
its host path in test_cuda_build.py."""

import numpy as np
import pytest
import torch

from torch_utils.ops import bias_act

ACTS = ['linear', 'relu', 'lrelu', 'tanh', 'sigmoid', 'elu', 'selu', 'softplus', 'swish']
SELU_LAMBDA, SELU_ALPHA = 1.0507009873554804934193349852946, 1.6732632423543772848170429916717


def _sigmoid(s):
    return 1 / (1 + np.exp(-s))


# Direct definitions y = f(s, alpha), written from the formulas, not from torch.
DIRECT = {
    'linear':   lambda s, a: s,
    'relu':     lambda s, a: np.maximum(s, 0),
    'lrelu':    lambda s, a: np.where(s > 0, s, a * s),
    'tanh':     lambda s, a: np.tanh(s),
    'sigmoid':  lambda s, a: _sigmoid(s),
    'elu':      lambda s, a: np.where(s > 0, s, np.expm1(np.minimum(s, 0))),
    'selu':     lambda s, a: SELU_LAMBDA * np.where(s > 0, s, SELU_ALPHA * np.expm1(np.minimum(s, 0))),
    'softplus': lambda s, a: np.where(s > 20, s, np.log1p(np.exp(np.minimum(s, 20)))),
    'swish':    lambda s, a: s * _sigmoid(s),
}
DEFAULTS = {  # act: (alpha, gain) of the official op
    'linear': (0, 1), 'relu': (0, np.sqrt(2)), 'lrelu': (0.2, np.sqrt(2)), 'tanh': (0, 1),
    'sigmoid': (0, 1), 'elu': (0, 1), 'selu': (0, 1), 'softplus': (0, 1), 'swish': (0, np.sqrt(2)),
}


def direct_bias_act(x, b, dim, act, alpha, gain, clamp):
    def_alpha, def_gain = DEFAULTS[act]
    s = x.astype(np.float64)
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        s = s + b.reshape(shape)
    y = DIRECT[act](s, def_alpha if alpha is None else alpha) * (def_gain if gain is None else gain)
    return y if clamp is None else np.clip(y, -clamp, clamp)


def test_default_alpha_and_gain():
    for act, (alpha, gain) in DEFAULTS.items():
        spec = bias_act.activation_funcs[act]
        assert spec.def_alpha == pytest.approx(alpha) and spec.def_gain == pytest.approx(gain), act
    assert sorted(bias_act.activation_funcs) == sorted(ACTS)


@pytest.mark.parametrize('act', ACTS)
@pytest.mark.parametrize('use_bias,dim,alpha,gain,clamp', [
    (False, 1, None, None, None),
    (True, 1, None, None, None),
    (True, 0, 0.3, 0.5, None),
    (True, 2, None, 2.0, 0.8),
    (True, 3, 0.1, None, 0.3),
])
def test_ref_matches_direct_definition(act, use_bias, dim, alpha, gain, clamp):
    x = torch.randn([3, 4, 5, 6], dtype=torch.float64) * 3
    x[0, 0, 0, :3] = torch.tensor([25.0, -25.0, 0.0])  # softplus threshold, saturation, kink
    b = torch.randn([x.shape[dim]], dtype=torch.float64) if use_bias else None
    y = bias_act.bias_act(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp, impl='ref')
    expected = direct_bias_act(x.numpy(), None if b is None else b.numpy(), dim, act, alpha, gain, clamp)
    assert y.shape == x.shape and y.dtype == x.dtype
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_cuda_impl_on_cpu_tensor_is_reference_and_float32_works():
    x = torch.randn([2, 3, 4])
    b = torch.randn([3])
    y_cuda = bias_act.bias_act(x, b, act='lrelu', clamp=1.0)  # impl='cuda' default: CPU -> reference
    y_ref = bias_act.bias_act(x, b, act='lrelu', clamp=1.0, impl='ref')
    assert torch.equal(y_cuda, y_ref)
    expected = direct_bias_act(x.numpy(), b.numpy(), 1, 'lrelu', None, None, 1.0)
    np.testing.assert_allclose(y_ref.numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('kwargs,match', [
    (dict(act='gelu'), 'unknown activation'),
    (dict(impl='triton'), "impl must be 'ref' or 'cuda'"),
    (dict(b=torch.zeros([5])), 'does not match dim 1'),
    (dict(b=torch.zeros([3]), dim=4), 'does not match dim 4'),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bias_act.bias_act(torch.zeros([2, 3, 4]), **kwargs)


def safe_inputs(act, shape=(2, 3, 4), dim=1, clamp=None, gain=None, seed=0):
    """float64 inputs whose pre-activation avoids kinks and whose output avoids the clamp edge,
    so finite differences are valid."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, dtype=torch.float64, generator=gen)
    b = torch.randn([shape[dim]], dtype=torch.float64, generator=gen)
    bshape = [-1 if i == dim else 1 for i in range(len(shape))]
    s = x + b.reshape(bshape)
    x = torch.where(s.abs() < 0.05, x + 0.1 * torch.sign(s + 1e-3), x)  # away from 0 (relu-type kinks)
    if clamp is not None:
        v = torch.from_numpy(direct_bias_act(x.numpy(), b.numpy(), dim, act, None, gain, None))
        while ((v.abs() - clamp).abs() < 0.02).any():
            clamp += 0.013
    return x.requires_grad_(True), b.requires_grad_(True), clamp


@pytest.mark.parametrize('act', ACTS)
def test_ref_gradcheck_and_gradgradcheck(act):
    x, b, clamp = safe_inputs(act, clamp=0.6)
    fn = lambda x, b: bias_act.bias_act_ref(x, b, dim=1, act=act, clamp=clamp)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))

# ---------------------------------------------------------------------------------------------
# CUDA kernel against the reference (only where a GPU exists).

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA GPU: the kernel cannot run here')


def value_grad_gradgrad(fn, x, b):
    """y, dy/dx and dy/db for a fixed upstream weight, and the gradients of a function of those
    first-order gradients (what R1 / path-length regularisation backpropagate)."""
    y = fn(x, b)
    w = torch.linspace(-1, 1, y.numel(), dtype=y.dtype, device=y.device).reshape(y.shape)
    gx, gb = torch.autograd.grad((y * w).sum(), [x, b], create_graph=True)
    ggx, ggb = torch.autograd.grad(gx.square().sum() + gb.sum(), [x, b])
    return [y, gx, gb, ggx, ggb]


@needs_gpu
@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize('act', ACTS)
def test_cuda_matches_reference(act, dtype, tol):
    x, b, clamp = safe_inputs(act, shape=(4, 8, 6, 5), clamp=1.1)
    x = x.detach().to('cuda', dtype).requires_grad_(True)
    b = b.detach().to('cuda', dtype).requires_grad_(True)
    outs = {}
    for impl in ('cuda', 'ref'):
        fn = lambda x, b: bias_act.bias_act(x, b, dim=1, act=act, clamp=clamp, impl=impl)  # noqa: E731
        outs[impl] = value_grad_gradgrad(fn, x, b)
    for name, p, q in zip(['y', 'dx', 'db', 'ddx', 'ddb'], outs['cuda'], outs['ref']):
        assert p.dtype == q.dtype and p.shape == q.shape, name
        torch.testing.assert_close(p, q, rtol=tol, atol=tol, msg=f'{act} {dtype} {name}')


@needs_gpu
@pytest.mark.parametrize('act', ['lrelu', 'tanh', 'swish', 'softplus'])
def test_cuda_gradgradcheck(act):
    x, b, clamp = safe_inputs(act, clamp=0.6)
    x = x.detach().cuda().requires_grad_(True)
    b = b.detach().cuda().requires_grad_(True)
    fn = lambda x, b: bias_act.bias_act(x, b, dim=1, act=act, clamp=clamp, impl='cuda')  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


@needs_gpu
def test_cuda_layouts_dims_and_half():
    x = torch.randn([2, 6, 5, 7], device='cuda')
    b = torch.randn([6], device='cuda')
    for xx in (x, x.to(memory_format=torch.channels_last), x.transpose(2, 3)):
        for dim, bb in ((1, b), (None, None)):
            kw = dict(dim=dim if dim is not None else 1, act='lrelu', clamp=0.7)
            torch.testing.assert_close(bias_act.bias_act(xx, bb, impl='cuda', **kw),
                                       bias_act.bias_act(xx, bb, impl='ref', **kw))
    y = bias_act.bias_act(x.half(), b.half(), act='swish', impl='cuda')
    assert y.dtype == torch.float16
    torch.testing.assert_close(y.float(), bias_act.bias_act(x, b, act='swish', impl='ref'), rtol=1e-2, atol=1e-2)
    x3 = torch.randn([3, 4, 9], device='cuda')
    b3 = torch.randn([9], device='cuda')
    torch.testing.assert_close(bias_act.bias_act(x3, b3, dim=2, act='elu', impl='cuda'),
                               bias_act.bias_act(x3, b3, dim=2, act='elu', impl='ref'))

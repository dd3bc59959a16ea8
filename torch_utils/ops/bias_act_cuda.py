"""CUDA implementation of `bias_act`, differentiable twice.

The plugin (bias_act.cpp/.cu) evaluates, for s = x + b and v = gain * act(s):
    mode 0:  y  = clamp(v, -clamp, clamp)
    mode 1:  dx = dy * gain * act'(s)  where v is not clamped, else 0
    mode 2:       dy * gain * act''(s) where v is not clamped, else 0
Autograd: the forward's backward is `_BiasActGrad` (mode 1), a Function itself, whose backward
uses mode 1 again for the gradient w.r.t. dy (dx is linear in dy) and mode 2 for the gradient
w.r.t. x and b. That gives exact first- and second-order gradients (R1, path length).
"""

import os

import torch

from .. import custom_ops
from .bias_act import _resolve_args, bias_act_ref

_SOURCES = ['bias_act.cpp', 'bias_act.cu']
_HEADERS = ['bias_act.h']
_MODE_FORWARD, _MODE_GRAD, _MODE_GRADGRAD = 0, 1, 2


def build_plugin():
    """Build/load the bias_act plugin; raises custom_ops.PluginBuildError when that fails."""
    return custom_ops.get_plugin('bias_act_plugin', _SOURCES, headers=_HEADERS,
                                 source_dir=os.path.dirname(__file__))


def _plugin_or_none():
    # None only when the build failed and the user allowed the reference fallback (announced once).
    return custom_ops.get_plugin_or_fallback('bias_act_plugin', _SOURCES, headers=_HEADERS,
                                             source_dir=os.path.dirname(__file__))


def bias_act_cuda(x: torch.Tensor, b: torch.Tensor | None = None, dim: int = 1, act: str = 'linear',
                  alpha: float | None = None, gain: float | None = None,
                  clamp: float | None = None) -> torch.Tensor:
    """`bias_act` for CUDA tensors with our kernel; same arguments and result as `bias_act_ref`.

    Raises custom_ops.PluginBuildError if the plugin cannot be built, unless the reference
    fallback was allowed ($SG2_OPS_FALLBACK=ref or custom_ops.set_fallback(True)).
    """
    spec, alpha_, gain_, clamp_ = _resolve_args(act, alpha, gain, clamp)
    if b is not None and (b.ndim != 1 or not (0 <= dim < x.ndim) or b.shape[0] != x.shape[dim]):
        raise ValueError(f'bias_act: bias of shape {list(b.shape)} does not match dim {dim} of '
                         f'input {list(x.shape)}')
    if x.dtype not in (torch.float16, torch.float32, torch.float64):
        raise ValueError(f'bias_act: impl=cuda supports float16/32/64 inputs, got {x.dtype}; use impl=ref')
    plugin = _plugin_or_none()
    if plugin is None:
        return bias_act_ref(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp)
    if x.device.type != 'cuda':
        raise ValueError(f'bias_act_cuda: x is on {x.device}; CPU tensors use bias_act_ref')
    return _run_plugin(plugin, x, b, dim, spec, alpha_, gain_, clamp_)


def _run_plugin(plugin, x, b, dim, spec, alpha, gain, clamp):
    # Arrange the layout and run the autograd Functions below. Tests call this directly with
    # CPU tensors, for which the plugin runs the kernel's element code on the host.
    if b is not None:
        # The reference promotes mixed dtypes (x + b); do the same so both give the same dtype.
        dtype = torch.result_type(x, b)
        x, b = x.to(dtype), b.to(dtype)
    if x.ndim == 0:  # the kernel indexes a dimension; a scalar (never with a bias) becomes [1]
        return _run_plugin(plugin, x.reshape([1]), None, 0, spec, alpha, gain, clamp).reshape([])
    # Present the kernel with a contiguous view: a dense tensor in any layout (channels_last
    # included) is permuted so its memory order becomes row-major, and permuted back after.
    perm = sorted(range(x.ndim), key=lambda d: -x.stride(d))
    xp = x.permute(perm)
    if not xp.is_contiguous():
        perm, xp = list(range(x.ndim)), x.contiguous()
    kernel_dim = perm.index(dim) if b is not None else 0  # without a bias, dim is unused
    params = (kernel_dim, spec.cuda_idx, alpha, gain, clamp, spec.has_2nd_grad, plugin)
    yp = _BiasAct.apply(xp, b, params)
    return yp.permute([perm.index(d) for d in range(x.ndim)])


def _sum_to_bias(t: torch.Tensor, dim: int) -> torch.Tensor:
    # db: the gradient summed over every axis except the bias axis.
    return t.sum([d for d in range(t.ndim) if d != dim])


class _BiasAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, params):
        dim, act, alpha, gain, clamp, _, plugin = params
        bb = b.contiguous() if b is not None else torch.empty([0], dtype=x.dtype, device=x.device)
        y = plugin.bias_act(x, bb, torch.empty([0], dtype=x.dtype, device=x.device), dim, act,
                            _MODE_FORWARD, alpha, gain, clamp)
        ctx.save_for_backward(x, b)
        ctx.params = params
        return y

    @staticmethod
    def backward(ctx, dy):
        x, b = ctx.saved_tensors
        dim = ctx.params[0]
        dx = _BiasActGrad.apply(dy, x, b, ctx.params)
        db = _sum_to_bias(dx, dim) if b is not None and ctx.needs_input_grad[1] else None
        return (dx if ctx.needs_input_grad[0] else None), db, None


class _BiasActGrad(torch.autograd.Function):
    # dx = dy * gain * act'(x + b) * mask
    @staticmethod
    def forward(ctx, dy, x, b, params):
        dim, act, alpha, gain, clamp, _, plugin = params
        bb = b.contiguous() if b is not None else torch.empty([0], dtype=x.dtype, device=x.device)
        dx = plugin.bias_act(x, bb, dy.contiguous(), dim, act, _MODE_GRAD, alpha, gain, clamp)
        ctx.save_for_backward(dy, x, b)
        ctx.params = params
        return dx

    @staticmethod
    def backward(ctx, d_dx):
        dy, x, b = ctx.saved_tensors
        dim, act, alpha, gain, clamp, has_2nd_grad, plugin = ctx.params
        # d(dx)/d(dy) is the same coefficient as the forward's gradient: reuse mode 1.
        d_dy = _BiasActGrad.apply(d_dx, x, b, ctx.params) if ctx.needs_input_grad[0] else None
        d_x = d_b = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            # d(dx)/ds = dy * gain * act''(s). Where act'' is zero everywhere (linear, relu, lrelu)
            # return explicit zeros, as the reference does, rather than a disconnected graph.
            if has_2nd_grad:
                d_s = _BiasActGradGrad.apply(d_dx * dy, x, b, ctx.params)
            else:
                d_s = torch.zeros_like(x)
            d_x = d_s if ctx.needs_input_grad[1] else None
            d_b = _sum_to_bias(d_s, dim) if b is not None and ctx.needs_input_grad[2] else None
        return d_dy, d_x, d_b, None


class _BiasActGradGrad(torch.autograd.Function):
    # out = a * gain * act''(x + b) * mask; its own derivative (third order) is not provided.
    @staticmethod
    def forward(ctx, a, x, b, params):
        dim, act, alpha, gain, clamp, _, plugin = params
        bb = b.contiguous() if b is not None else torch.empty([0], dtype=x.dtype, device=x.device)
        return plugin.bias_act(x, bb, a.contiguous(), dim, act, _MODE_GRADGRAD, alpha, gain, clamp)

    @staticmethod
    def backward(ctx, _):
        raise NotImplementedError("bias_act: third-order gradients are not implemented by the CUDA "
                                  "kernel; use impl='ref' for them")


def self_check(device: torch.device) -> float:
    """Max abs difference between the kernel and the reference (value and gradients) on a small
    random input on `device`; used by scripts/check_ops.py on machines with a GPU."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn([4, 8, 5, 5], generator=gen).to(device).requires_grad_(True)
    b = torch.randn([8], generator=gen).to(device).requires_grad_(True)
    worst = 0.0
    for act in ('lrelu', 'swish'):
        outs = []
        for impl in (bias_act_cuda, bias_act_ref):
            y = impl(x, b, dim=1, act=act, clamp=1.5)
            outs += [y, *torch.autograd.grad(y.square().sum(), [x, b])]
        n = len(outs) // 2
        worst = max([worst] + [(p - q).abs().max().item() for p, q in zip(outs[:n], outs[n:])])
    return worst

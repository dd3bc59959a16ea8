"""CUDA implementation of `upfirdn2d` (spec section 2.4), differentiable to any order.

`upfirdn2d.upfirdn2d(..., impl='cuda')` calls `upfirdn2d_cuda` for CUDA tensors. The kernel
(`upfirdn2d.cu`) computes the forward pass only. upfirdn2d is linear in `x`, and its transpose is
again an upfirdn2d (see `transpose_geometry`), so the backward pass calls the same autograd Function
and gradients of every order follow.
"""

import os
from typing import NamedTuple

import torch

from . import upfirdn2d as _ref

# ---------------------------------------------------------------------------------------------


class Geometry(NamedTuple):
    """Everything about one upfirdn2d call except the tensors."""
    upx: int
    upy: int
    downx: int
    downy: int
    px0: int            # padding after upsampling, left / right / top / bottom; negative crops
    px1: int
    py0: int
    py1: int
    flip_filter: bool   # False = true convolution, True = correlation
    gain: float


def make_geometry(up=1, down=1, padding=0, flip_filter: bool = False, gain: float = 1) -> Geometry:
    """Parse the user-facing arguments exactly as the reference op does."""
    upx, upy = _ref._parse_scaling(up)
    downx, downy = _ref._parse_scaling(down)
    px0, px1, py0, py1 = _ref._parse_padding(padding)
    return Geometry(upx, upy, downx, downy, px0, px1, py0, py1, bool(flip_filter), float(gain))


def output_size(g: Geometry, in_h: int, in_w: int, fh: int, fw: int) -> tuple[int, int]:
    """(out_h, out_w) = ((in * up + p0 + p1 - taps) // down + 1) per axis (spec 2.4)."""
    return ((in_h * g.upy + g.py0 + g.py1 - fh) // g.downy + 1,
            (in_w * g.upx + g.px0 + g.px1 - fw) // g.downx + 1)


def transpose_geometry(g: Geometry, in_h: int, in_w: int, fh: int, fw: int) -> Geometry:
    """The geometry of the adjoint op: gradient wrt `x` of upfirdn2d(x, f, g) for input size (in_h, in_w).

    Per axis, output n reads upsampled position `n*down + t - p0` with filter tap `size-1-t` (true
    convolution), and the upsampled signal holds input i at position `i*up`. So
    dx[i] = sum over (n, t) with n*down + t - p0 == i*up of dy[n] * f[size-1-t].
    An upfirdn2d of dy with up/down swapped and the filter read the other way round (flip toggled)
    computes dx[i] = sum over (n, s) with n*down == i*up + s - p0' of dy[n] * f[s]; matching the two
    sums (s = size-1-t) gives p0' = size - 1 - p0. p1' is the padding that makes the output length
    exactly `in`: (out*down + p0' + p1' - size) == (in - 1) * up. The gain is unchanged.
    """
    out_h, out_w = output_size(g, in_h, in_w, fh, fw)
    return Geometry(
        upx=g.downx, upy=g.downy, downx=g.upx, downy=g.upy,
        px0=fw - 1 - g.px0, px1=in_w * g.upx - out_w * g.downx + g.px0 - g.upx + 1,
        py0=fh - 1 - g.py0, py1=in_h * g.upy - out_h * g.downy + g.py0 - g.upy + 1,
        flip_filter=not g.flip_filter, gain=g.gain)


def filter_hw(f: torch.Tensor) -> tuple[int, int]:
    """(fh, fw) of a 2-D filter, or (taps, taps) of a separable 1-D one."""
    return (f.shape[0], f.shape[-1])

# ---------------------------------------------------------------------------------------------

_PLUGIN_SPEC = dict(module_name='upfirdn2d_plugin', sources=['upfirdn2d.cpp', 'upfirdn2d.cu'],
                    headers=['upfirdn2d.h'], source_dir=os.path.dirname(os.path.abspath(__file__)))
_plugin = None  # the compiled extension, once built or loaded from the cache


def build_plugin():
    """Build (or load from the cache, keyed by source hash) the extension made of upfirdn2d.cpp/.cu/.h.

    Raises custom_ops.PluginBuildError when the build fails (used by scripts/check_ops.py and tests).
    """
    from .. import custom_ops  # Imported lazily: it pulls in torch.utils.cpp_extension.
    return custom_ops.get_plugin(**_PLUGIN_SPEC)


def _get_plugin():
    """The extension for the op itself. Returns None only when the build failed and the user allowed
    the reference fallback (custom_ops announces that once); otherwise a failed build raises."""
    global _plugin
    if _plugin is None:
        from .. import custom_ops
        _plugin = custom_ops.get_plugin_or_fallback(**_PLUGIN_SPEC)
    return _plugin


def self_check(device: torch.device) -> float:
    """Max abs difference between the kernel and the float64 reference on a small test input on `device`."""
    f = _ref.setup_filter([1, 3, 3, 1], device=device)
    x = torch.randn([2, 3, 9, 7], generator=torch.Generator().manual_seed(0)).to(device)
    err = 0.0
    for kwargs in [dict(up=2, padding=[2, 1, 2, 1], gain=4), dict(down=2, padding=1), dict(padding=[2, 1, 2, 1])]:
        y = upfirdn2d_cuda(x, f, **kwargs).double()
        y_ref = _ref.upfirdn2d_ref(x.double(), f, **kwargs)
        err = max(err, (y - y_ref).abs().max().item())
    return err


def _forward(x: torch.Tensor, f: torch.Tensor, g: Geometry) -> torch.Tensor:
    """Run the kernel: one pass for a 2-D filter, two 1-D passes (x, then y) for a separable one."""
    plugin = _get_plugin()
    assert plugin is not None, 'upfirdn2d (cuda): the kernel ran without a built plugin'
    if f.ndim == 2:
        return plugin.upfirdn2d(x, f, g.upx, g.upy, g.downx, g.downy, g.px0, g.px1, g.py0, g.py1,
                                g.flip_filter, g.gain)
    # Separable: the x pass with gain 1, then the y pass with the whole gain (the op is linear).
    y = plugin.upfirdn2d(x, f[None, :], g.upx, 1, g.downx, 1, g.px0, g.px1, 0, 0, g.flip_filter, 1.0)
    return plugin.upfirdn2d(y, f[:, None], 1, g.upy, 1, g.downy, 0, 0, g.py0, g.py1, g.flip_filter, g.gain)


class _Upfirdn2dCuda(torch.autograd.Function):
    """y = upfirdn2d(x, f, g); dx = upfirdn2d(dy, f, transpose_geometry(g)) through this same Function."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, f: torch.Tensor, g: Geometry) -> torch.Tensor:
        ctx.save_for_backward(f)
        ctx.geometry = g
        ctx.in_hw = (x.shape[2], x.shape[3])
        return _forward(x, f, g)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        f, = ctx.saved_tensors
        dx = None
        if ctx.needs_input_grad[0]:
            tg = transpose_geometry(ctx.geometry, *ctx.in_hw, *filter_hw(f))
            dx = _Upfirdn2dCuda.apply(dy, f, tg)
            assert tuple(dx.shape[2:]) == ctx.in_hw, \
                f'upfirdn2d (cuda): gradient has size {list(dx.shape)}, the input had {ctx.in_hw}'
        return dx, None, None


def upfirdn2d_cuda(x: torch.Tensor, f: torch.Tensor | None, up=1, down=1, padding=0,
                   flip_filter: bool = False, gain: float = 1) -> torch.Tensor:
    """`upfirdn2d` on CUDA tensors with our kernel; same arguments and result as the reference.

    Args:
        x:           CUDA tensor `[N, C, H, W]`, float32/float64/float16/bfloat16.
        f:           float32 filter `[fh, fw]` or separable `[fw]` on the device of `x`; None = identity.
        up, down:    integer factors, or `[x, y]` pairs.
        padding:     int, `[px, py]` or `[x0, x1, y0, y1]`, applied after upsampling; negative crops.
        flip_filter: False = true convolution, True = correlation.
        gain:        overall gain of the filter.
    Returns:
        `[N, C, (H*up_y + py0 + py1 - fh) // down_y + 1, (W*up_x + px0 + px1 - fw) // down_x + 1]`,
        contiguous. Differentiable in `x` to any order; not in `f` (a fixed buffer in the networks).
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.device.type != 'cuda':
        raise ValueError(f'upfirdn2d (cuda): x must be a 4-D CUDA tensor, got {getattr(x, "shape", x)} '
                         f'on {getattr(x, "device", "?")}; CPU tensors use impl=\'ref\'')
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    if f.ndim not in (1, 2) or f.dtype != torch.float32 or f.device != x.device:
        raise ValueError(f'upfirdn2d (cuda): filter must be a 1-D or 2-D float32 tensor on {x.device}, '
                         f'got {f.dtype} {list(f.shape)} on {f.device}; build it with setup_filter(device=...)')
    if f.requires_grad and torch.is_grad_enabled():
        raise ValueError("upfirdn2d (cuda): gradients with respect to the filter are not implemented; "
                         "detach the filter or use impl='ref'")
    if _get_plugin() is None:  # build failed and the user asked for the (announced) fallback
        return _ref.upfirdn2d_ref(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)
    g = make_geometry(up, down, padding, flip_filter, gain)
    out_h, out_w = output_size(g, x.shape[2], x.shape[3], *filter_hw(f))
    if out_h < 1 or out_w < 1:
        raise ValueError(f'upfirdn2d (cuda): input {list(x.shape)} with up {up}, down {down}, padding '
                         f'{padding} and filter {list(f.shape)} gives an empty output [{out_h}, {out_w}]')
    return _Upfirdn2dCuda.apply(x, f, g)

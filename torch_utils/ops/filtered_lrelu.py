"""Filtered leaky ReLU of StyleGAN3 (alias-free activation): bias, upsample, lrelu, downsample.

Per channel of `x [N, C, H, W]` (stylegan3-network-format.md, SynthesisLayer step 4):
  (a) add the bias `b`;
  (b) upsample by `up` (zero insertion), pad by `padding` (negative values crop) and convolve with
      the upsampling filter `fu` at gain `up ** 2`, so the signal level is kept;
  (c) leaky ReLU with `slope`, times `gain`, clamped to [-clamp, clamp];
  (d) convolve with the downsampling filter `fd` (no padding) and keep every `down`-th sample.
Both convolutions are true convolutions (the filter is flipped relative to `F.conv2d`) unless
`flip_filter=True`; a 1-D filter is applied separably (along the width, then the height).

Separable filters on maps up to `MATRIX_MAX_SIZE` pixels run as banded matrix products (one per
axis: zero insertion, padding, filter and decimation in one matrix), larger maps and 2-D filters as
depthwise convolutions; both compute the same sums (tests compare them with the unfused ops).

`impl='ref'` is the pure-PyTorch definition and the only implementation we ship: we have no CUDA
kernel of our own for this op yet, so `impl='cuda'` also runs the reference path on CUDA tensors
(it is correct and differentiable, only slower and heavier on memory than a fused kernel).
"""

import torch
import torch.nn.functional as F

from torch_utils.ops import bias_act
from torch_utils.ops import upfirdn2d

# ---------------------------------------------------------------------------------------------


def output_size(in_size: int, up: int, down: int, pad_lo: int, pad_hi: int, fu_taps: int, fd_taps: int) -> int:
    """Output length along one axis: `(in*up + pad_lo + pad_hi - (fu-1) - (fd-1) + (down-1)) // down`."""
    return (in_size * up + pad_lo + pad_hi - (fu_taps - 1) - (fd_taps - 1) + (down - 1)) // down


def filtered_lrelu(x: torch.Tensor, fu: torch.Tensor | None = None, fd: torch.Tensor | None = None,
                   b: torch.Tensor | None = None, up: int = 1, down: int = 1, padding=0, gain: float = 2 ** 0.5,
                   slope: float = 0.2, clamp: float | None = None, flip_filter: bool = False,
                   impl: str = 'cuda') -> torch.Tensor:
    """Bias, upsample, leaky ReLU with gain and clamp, downsample (see the module docstring).

    Args:
        x:           activations `[N, C, H, W]`.
        fu:          float32 upsampling filter, `[taps]` (separable) or `[taps, taps]`; None = identity.
        fd:          float32 downsampling filter, same forms; None = identity.
        b:           bias `[C]`, or None.
        up, down:    integer resampling factors (the same along both axes).
        padding:     int, `[px, py]` or `[x0, x1, y0, y1]`, applied after zero insertion.
        gain:        multiplier applied after the leaky ReLU.
        slope:       negative-side slope of the leaky ReLU (1 = linear).
        clamp:       clamp limit applied after the gain; None = no clamp.
        flip_filter: False = true convolution, True = correlation.
        impl:        'cuda' or 'ref'; both run the reference path (we have no kernel of our own).
    Returns:
        `[N, C, H', W']` in the dtype of `x`, with H', W' given by `output_size`.
    """
    if impl not in ('ref', 'cuda'):
        raise ValueError(f"filtered_lrelu: impl must be 'ref' or 'cuda', got '{impl}'")
    return filtered_lrelu_ref(x, fu=fu, fd=fd, b=b, up=up, down=down, padding=padding, gain=gain, slope=slope,
                              clamp=clamp, flip_filter=flip_filter)


def filtered_lrelu_ref(x: torch.Tensor, fu: torch.Tensor | None = None, fd: torch.Tensor | None = None,
                       b: torch.Tensor | None = None, up: int = 1, down: int = 1, padding=0,
                       gain: float = 2 ** 0.5, slope: float = 0.2, clamp: float | None = None,
                       flip_filter: bool = False) -> torch.Tensor:
    """The reference definition of `filtered_lrelu`, built from differentiable PyTorch ops."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f'filtered_lrelu: x must be a 4-D tensor [N, C, H, W], got {getattr(x, "shape", x)}')
    if not (isinstance(up, int) and isinstance(down, int) and up >= 1 and down >= 1):
        raise ValueError(f'filtered_lrelu: up and down must be integers >= 1, got up={up!r}, down={down!r}')
    if clamp is not None and clamp < 0:
        raise ValueError(f'filtered_lrelu: clamp must be None or >= 0, got {clamp}')
    px0, px1, py0, py1 = upfirdn2d._parse_padding(padding)
    fu_w, fu_h = upfirdn2d._get_filter_size(fu)
    fd_w, fd_h = upfirdn2d._get_filter_size(fd)
    out_w = output_size(x.shape[3], up, down, px0, px1, fu_w, fd_w)
    out_h = output_size(x.shape[2], up, down, py0, py1, fu_h, fd_h)
    if out_w < 1 or out_h < 1:
        raise ValueError(f'filtered_lrelu: input {list(x.shape)} with up={up}, down={down}, padding={padding} and '
                         f'filters of {fu_w} / {fd_w} taps leaves no output pixels')

    x = bias_act.bias_act(x, b, impl='ref')                                                  # (a)
    if _use_matrices(x, fu, up, out_h, out_w):                                              # (b)
        x = _resample_separable(x, fu, up, 1, (px0, px1), (py0, py1), up, flip_filter)
    else:
        x = upfirdn2d.upfirdn2d(x, fu, up=up, padding=[px0, px1, py0, py1], gain=up ** 2,
                                flip_filter=flip_filter, impl='ref')
    x = bias_act.bias_act(x, act='lrelu', alpha=slope, gain=gain, clamp=clamp, impl='ref')  # (c)
    if _use_matrices(x, fd, down, out_h, out_w):                                            # (d)
        x = _resample_separable(x, fd, 1, down, (0, 0), (0, 0), 1, flip_filter)
    else:
        x = _filter_downsample(x, fd, down, flip_filter)
    assert x.shape[2:] == (out_h, out_w), f'filtered_lrelu: got {list(x.shape[2:])}, expected {[out_h, out_w]}'
    return x


def _filter_downsample(x: torch.Tensor, f: torch.Tensor | None, down: int, flip_filter: bool) -> torch.Tensor:
    """`upfirdn2d(x, f, down=down)` as strided depthwise convolutions: the same sums, but only at the
    kept samples 0, down, 2 down, ... (the reference upfirdn2d filters every sample, then drops)."""
    if f is None:
        return x[:, :, ::down, ::down]
    channels = x.shape[1]
    f = f.to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))  # true convolution
    if f.ndim == 2:
        return F.conv2d(x, f[None, None].repeat(channels, 1, 1, 1), stride=down, groups=channels)
    x = F.conv2d(x, f[None, None, None, :].repeat(channels, 1, 1, 1), stride=(1, down), groups=channels)  # width
    return F.conv2d(x, f[None, None, :, None].repeat(channels, 1, 1, 1), stride=(down, 1), groups=channels)  # height


# Feature maps up to this many pixels per side are resampled by matrix products (below).
MATRIX_MAX_SIZE = 256


def _use_matrices(x: torch.Tensor, f: torch.Tensor | None, factor: int, out_h: int, out_w: int) -> bool:
    """Separable (or no) filter on a small map: CPU BLAS beats depthwise convolution there by ~10x."""
    return (f is None or f.ndim == 1) and max(x.shape[2], x.shape[3]) * factor <= MATRIX_MAX_SIZE


def _resample_matrix(size: int, f: torch.Tensor | None, up: int, down: int, pad: tuple[int, int], gain: float,
                     flip_filter: bool, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """One axis of upfirdn2d as a `[size, size_out]` matrix M, so that `y = x @ M`.

    With zero insertion, padding `pad` (negative crops), a true convolution with the taps `f`
    (times `gain`) and decimation, output j reads input i through tap `i*up + pad[0] - j*down`
    of the flipped filter (correlation taps when `flip_filter`), or not at all outside the filter.
    """
    taps = torch.ones([1], device=device) if f is None else f.to(device)
    if not flip_filter:
        taps = taps.flip(0)
    size_full = size * up + pad[0] + pad[1] - taps.numel() + 1     # before decimation
    size_out = (size_full + down - 1) // down
    i = torch.arange(size, device=device).unsqueeze(1)
    j = torch.arange(size_out, device=device).unsqueeze(0)
    k = i * up + pad[0] - j * down                                    # [size, size_out] tap index
    inside = (k >= 0) & (k < taps.numel())
    matrix = torch.where(inside, taps[k.clamp(0, taps.numel() - 1)], torch.zeros([], device=device))
    return (matrix * gain).to(dtype)


def _resample_separable(x: torch.Tensor, f: torch.Tensor | None, up: int, down: int, pad_x: tuple[int, int],
                        pad_y: tuple[int, int], gain_per_axis: float, flip_filter: bool) -> torch.Tensor:
    """`upfirdn2d(x, f, up, down, padding, gain=gain_per_axis**2)` for a 1-D (separable) filter, as
    two matrix products: along the width, then along the height."""
    mat_x = _resample_matrix(x.shape[3], f, up, down, pad_x, gain_per_axis, flip_filter, x.dtype, x.device)
    mat_y = _resample_matrix(x.shape[2], f, up, down, pad_y, gain_per_axis, flip_filter, x.dtype, x.device)
    x = torch.matmul(x, mat_x)                                        # [N, C, H, W_out]
    return torch.matmul(mat_y.t(), x)                                 # [N, C, H_out, W_out]

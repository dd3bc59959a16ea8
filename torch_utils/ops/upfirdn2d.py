"""Upsample, FIR-filter and downsample 2-D images (`upfirdn2d`) and its helpers.

Per channel of `x [N, C, H, W]`: (1) insert `up - 1` zeros after every sample, (2) pad (negative
values crop), (3) convolve with the FIR filter `f * gain` in 'valid' mode -- a true convolution, so
the filter is flipped relative to `F.conv2d` unless `flip_filter=True`, (4) keep every `down`-th
sample. `impl='ref'` is the PyTorch definition; `impl='cuda'` uses our kernel for CUDA tensors.
"""

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------


def _parse_scaling(scaling) -> tuple[int, int]:
    """An int or [sx, sy] -> (sx, sy), each >= 1."""
    if isinstance(scaling, int):
        scaling = [scaling, scaling]
    sx, sy = (int(s) for s in scaling)
    if sx < 1 or sy < 1:
        raise ValueError(f'upfirdn2d: up/down factors must be >= 1, got {scaling}')
    return sx, sy


def _parse_padding(padding) -> tuple[int, int, int, int]:
    """An int, [px, py] or [x0, x1, y0, y1] -> (x0, x1, y0, y1)."""
    if isinstance(padding, int):
        padding = [padding, padding]
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        px, py = padding
        padding = [px, px, py, py]
    if len(padding) != 4:
        raise ValueError(f'upfirdn2d: padding must be an int, [px, py] or [x0, x1, y0, y1], got {padding}')
    return tuple(padding)


def _get_filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """(width, height) of a 2-D filter, or (taps, taps) of a separable 1-D one."""
    if f is None:
        return 1, 1
    if f.ndim not in (1, 2):
        raise ValueError(f'upfirdn2d: filter must be 1-D or 2-D, got shape {list(f.shape)}')
    return (f.shape[-1], f.shape[0])

# ---------------------------------------------------------------------------------------------


def setup_filter(f, device=None, normalize: bool = True, flip_filter: bool = False,
                 gain: float = 1, separable: bool | None = None) -> torch.Tensor:
    """Turn a list of taps into a float32 filter tensor for `upfirdn2d`.

    Args:
        f:           None (identity), a 1-D list of taps or a 2-D array.
        device:      device of the result; None = `torch.get_default_device()`: the CPU, or the
                     device of an enclosing `with torch.device(...)` ('meta' when a snapshot is checked).
        normalize:   divide by the sum of the (2-D) taps.
        flip_filter: flip the result in every axis.
        gain:        overall gain; a separable filter gets `gain ** 0.5` (it is applied twice).
        separable:   keep a 1-D filter 1-D; None means "1-D with at least 8 taps".
    Returns:
        float32 tensor `[fh, fw]` (non-separable) or `[fw]` (separable).
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim not in (0, 1, 2) or f.numel() == 0:
        raise ValueError(f'setup_filter: expected a non-empty 0/1/2-D filter, got shape {list(f.shape)}')
    if f.ndim == 0:
        f = f[None]
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=torch.get_default_device() if device is None else device)

# ---------------------------------------------------------------------------------------------


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up=1, down=1, padding=0,
              flip_filter: bool = False, gain: float = 1, impl: str = 'cuda') -> torch.Tensor:
    """Pad, upsample, filter and downsample a batch of images.

    Args:
        x:           `[N, C, H, W]`.
        f:           float32 filter `[fh, fw]` or separable `[fw]` (see `setup_filter`); None = identity.
        up, down:    integer factors, or `[x, y]` pairs.
        padding:     int, `[px, py]` or `[x0, x1, y0, y1]`, applied after upsampling; negative crops.
        flip_filter: False = true convolution (flipped relative to `F.conv2d`), True = correlation.
        gain:        overall gain of the filter.
        impl:        'cuda' (our kernel for CUDA tensors, reference otherwise) or 'ref'.
    Returns:
        `[N, C, (H*up_y + py0 + py1 - fh) // down_y + 1, ...]`.
    """
    if impl not in ('ref', 'cuda'):
        raise ValueError(f"upfirdn2d: impl must be 'ref' or 'cuda', got '{impl}'")
    if impl == 'cuda' and x.device.type == 'cuda':
        from . import upfirdn2d_cuda  # Imported lazily: building the kernel needs a CUDA toolkit.
        return upfirdn2d_cuda.upfirdn2d_cuda(x, f, up=up, down=down, padding=padding,
                                             flip_filter=flip_filter, gain=gain)
    return upfirdn2d_ref(x, f, up=up, down=down, padding=padding, flip_filter=flip_filter, gain=gain)


def upfirdn2d_ref(x: torch.Tensor, f: torch.Tensor | None, up=1, down=1, padding=0,
                  flip_filter: bool = False, gain: float = 1) -> torch.Tensor:
    """The reference definition of `upfirdn2d`, built from differentiable PyTorch ops."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f'upfirdn2d: x must be a 4-D tensor [N, C, H, W], got {getattr(x, "shape", x)}')
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    if f.ndim not in (1, 2) or f.dtype != torch.float32:
        raise ValueError(f'upfirdn2d: filter must be a 1-D or 2-D float32 tensor, got {f.dtype} {list(f.shape)}')
    N, C, H, W = x.shape
    upx, upy = _parse_scaling(up)
    downx, downy = _parse_scaling(down)
    px0, px1, py0, py1 = _parse_padding(padding)

    # (1) Zero insertion: each sample is followed by up-1 zeros.
    x = x.reshape(N, C, H, 1, W, 1)
    x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
    x = x.reshape(N, C, H * upy, W * upx)

    # (2) Pad (positive part), then crop (negative part).
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]

    # (3) FIR filter as a depthwise convolution; F.conv2d correlates, so flip for a true convolution.
    f = f.to(x.dtype) * (gain ** (f.ndim / 2))
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        x = F.conv2d(x, f[None, None].repeat(C, 1, 1, 1), groups=C)
    else:
        x = F.conv2d(x, f[None, None, None, :].repeat(C, 1, 1, 1), groups=C)  # along width
        x = F.conv2d(x, f[None, None, :, None].repeat(C, 1, 1, 1), groups=C)  # along height

    # (4) Decimation keeps samples 0, down, 2*down, ...
    return x[:, :, ::downy, ::downx]

# ---------------------------------------------------------------------------------------------


def filter2d(x: torch.Tensor, f: torch.Tensor | None, padding=0, flip_filter: bool = False,
             gain: float = 1, impl: str = 'cuda') -> torch.Tensor:
    """Filter without resampling; the output keeps the input size when `padding=0`."""
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x: torch.Tensor, f: torch.Tensor | None, up=2, padding=0, flip_filter: bool = False,
               gain: float = 1, impl: str = 'cuda') -> torch.Tensor:
    """Upsample by `up` with filter `f`; the gain `up_x * up_y` keeps the signal level."""
    upx, upy = _parse_scaling(up)
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2, py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(x: torch.Tensor, f: torch.Tensor | None, down=2, padding=0, flip_filter: bool = False,
                 gain: float = 1, impl: str = 'cuda') -> torch.Tensor:
    """Filter with `f`, then keep every `down`-th sample."""
    downx, downy = _parse_scaling(down)
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [px0 + (fw - downx + 1) // 2, px1 + (fw - downx) // 2, py0 + (fh - downy + 1) // 2, py1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


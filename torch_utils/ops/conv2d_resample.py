"""2-D convolution with optional FIR up/downsampling, arranged so that the expensive
convolution runs at the lower resolution where possible (spec section 2.5)."""

import torch
import torch.nn.functional as F

from . import upfirdn2d

# ---------------------------------------------------------------------------------------------


def _conv2d_wrapper(x: torch.Tensor, w: torch.Tensor, stride: int = 1, padding=0, groups: int = 1,
                    transpose: bool = False, flip_weight: bool = True) -> torch.Tensor:
    """F.conv2d / F.conv_transpose2d; `flip_weight=False` flips the kernel (true convolution)."""
    if not flip_weight:
        w = w.flip([2, 3])
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1,
                    down: int = 1, padding=0, groups: int = 1, flip_weight: bool = True,
                    flip_filter: bool = False) -> torch.Tensor:
    """Convolve `x` with `w`, upsampling by `up` before and downsampling by `down` after, using FIR `f`.

    Args:
        x:           `[N, I, H, W]`.
        w:           `[O, I // groups, kh, kw]`.
        f:           FIR filter from `upfirdn2d.setup_filter`, or None (needed when up/down > 1).
        up, down:    integer resampling factors.
        padding:     int, `[px, py]` or `[x0, x1, y0, y1]` of the convolution itself.
        groups:      grouped convolution (the fused modulated conv uses one group per sample).
        flip_weight: True = correlation like `F.conv2d`; False = true convolution.
        flip_filter: passed to `upfirdn2d`.
    Returns:
        `[N, O, H', W']`.
    """
    if x.ndim != 4 or w.ndim != 4 or w.dtype != x.dtype:
        raise ValueError(f'conv2d_resample: expected 4-D x and w of the same dtype, got x '
                         f'{list(x.shape)} {x.dtype}, w {list(w.shape)} {w.dtype}')
    if f is not None and (f.ndim not in (1, 2) or f.dtype != torch.float32):
        raise ValueError('conv2d_resample: f must be a 1-D or 2-D float32 filter or None')
    if not (isinstance(up, int) and up >= 1 and isinstance(down, int) and down >= 1):
        raise ValueError(f'conv2d_resample: up and down must be integers >= 1, got {up}, {down}')
    if (up > 1 or down > 1) and f is None:
        raise ValueError('conv2d_resample: resampling needs a filter f')
    out_channels, in_channels_per_group, kh, kw = w.shape
    fw, fh = upfirdn2d._get_filter_size(f)
    px0, px1, py0, py1 = upfirdn2d._parse_padding(padding)

    # Padding bookkeeping: the FIR filter's own support is folded into the padding.
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2

    # 1x1 kernel, downsampling only: filter + decimate first, then the cheap 1x1 conv.
    if kw == 1 and kh == 1 and (down > 1 and up == 1):
        x = upfirdn2d.upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv2d_wrapper(x, w, groups=groups, flip_weight=flip_weight)

    # 1x1 kernel, upsampling only: the 1x1 conv at low resolution, then upsample.
    if kw == 1 and kh == 1 and (up > 1 and down == 1):
        x = _conv2d_wrapper(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d.upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up ** 2,
                                   flip_filter=flip_filter)

    # Downsampling only: filter at full resolution, then a strided convolution.
    if down > 1 and up == 1:
        x = upfirdn2d.upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return _conv2d_wrapper(x, w, stride=down, groups=groups, flip_weight=flip_weight)

    # Upsampling (optionally then downsampling): a transposed convolution with stride `up`.
    if up > 1:
        if groups == 1:
            w = w.transpose(0, 1)                                               # [I, O, kh, kw]
        else:
            w = w.reshape(groups, out_channels // groups, in_channels_per_group, kh, kw)
            w = w.transpose(1, 2)
            w = w.reshape(groups * in_channels_per_group, out_channels // groups, kh, kw)
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        x = _conv2d_wrapper(x, w, stride=up, padding=[pyt, pxt], groups=groups, transpose=True,
                            flip_weight=not flip_weight)
        x = upfirdn2d.upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt],
                                gain=up ** 2, flip_filter=flip_filter)
        if down > 1:
            x = upfirdn2d.upfirdn2d(x, f, down=down, flip_filter=flip_filter)
        return x

    # No resampling, symmetric non-negative padding: a plain convolution.
    if up == 1 and down == 1 and px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return _conv2d_wrapper(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)

    # General case.
    x = upfirdn2d.upfirdn2d(x, f if up > 1 else None, up=up, padding=[px0, px1, py0, py1],
                            gain=up ** 2, flip_filter=flip_filter)
    x = _conv2d_wrapper(x, w, groups=groups, flip_weight=flip_weight)
    if down > 1:
        x = upfirdn2d.upfirdn2d(x, f, down=down, flip_filter=flip_filter)
    return x

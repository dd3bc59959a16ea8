"""One way to compare renders that come from different code paths or batch sizes.

The same network, latent and noise give slightly different floats when the work is split
differently: the grouped modulated convolution takes another kernel path for another batch size,
a fused op sums in another order, another CPU has another BLAS. After the uint8 conversion
(`x * 127.5 + 128`, truncated) such a difference moves a value that sits next to a level
boundary by one level. So, for renders from different paths:

- uint8 images (arrays, tensors, PIL images, PNG paths): every value within `max_level_diff`
  (1) level, and at most `max_diff_fraction` (1%) of the values different at all (at least one
  value is always allowed to differ).
- float renders (images in [-1, 1], or latents): `torch.testing.assert_close` with
  `FLOAT_ATOL` = 1e-4 absolute and `FLOAT_RTOL` = 1e-4 relative. Measured differences between
  batch sizes and paths for the test networks are ~1e-6; one uint8 level is 2/255 ~ 7.8e-3.

Bitwise checks stay where the code path is identical (resume, determinism, the same call twice):
there `np.testing.assert_array_equal` / `torch.equal` are right, and weaker checks would hide bugs.
"""

import math
import os

import numpy as np
import PIL.Image
import torch

FLOAT_ATOL = 1e-4       # absolute, for renders in [-1, 1]
FLOAT_RTOL = 1e-4       # relative
MAX_LEVEL_DIFF = 1      # uint8 levels per value
MAX_DIFF_FRACTION = 0.01  # of all uint8 values, allowed to differ (by at most MAX_LEVEL_DIFF)


def _as_array(image) -> np.ndarray | torch.Tensor:
    """PNG paths and PIL images as uint8 arrays; arrays and tensors as they are."""
    if isinstance(image, (str, os.PathLike)):
        with PIL.Image.open(image) as f:
            return np.asarray(f.convert('RGB') if f.mode not in ('L', 'RGB') else f)
    if isinstance(image, PIL.Image.Image):
        return np.asarray(image)
    if isinstance(image, (np.ndarray, torch.Tensor)):
        return image
    raise TypeError(f'assert_images_close: cannot compare a {type(image).__name__}')


def _is_uint8(x) -> bool:
    return x.dtype == (torch.uint8 if isinstance(x, torch.Tensor) else np.uint8)


def assert_images_close(actual, expected, max_level_diff: int = MAX_LEVEL_DIFF,
                        max_diff_fraction: float = MAX_DIFF_FRACTION, atol: float = FLOAT_ATOL,
                        rtol: float = FLOAT_RTOL, msg: str = '') -> None:
    """Assert that two renders of the same thing from different code paths agree (see above).

    Args:
        actual, expected:  uint8 images (numpy, torch, PIL or a PNG path; any layout, same shape)
                           or float tensors/arrays (same shape); both uint8 or both float.
        max_level_diff:    uint8: largest allowed difference of one value, in levels.
        max_diff_fraction: uint8: largest fraction of values allowed to differ at all.
        atol, rtol:        float: tolerances of torch.testing.assert_close.
        msg:               prefix of the failure message (which images).
    """
    a, b = _as_array(actual), _as_array(expected)
    prefix = f'{msg}: ' if msg else ''
    if tuple(a.shape) != tuple(b.shape):
        raise AssertionError(f'{prefix}shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}')
    if _is_uint8(a) != _is_uint8(b):
        raise AssertionError(f'{prefix}one image is uint8 and the other is not ({a.dtype} vs {b.dtype}); '
                             f'convert both the same way first')
    if not _is_uint8(a):
        a = torch.as_tensor(np.asarray(a)) if isinstance(a, np.ndarray) else a
        b = torch.as_tensor(np.asarray(b)) if isinstance(b, np.ndarray) else b
        torch.testing.assert_close(a.detach().cpu(), b.detach().cpu(), atol=atol, rtol=rtol,
                                   msg=(lambda m: f'{prefix}{m}') if msg else None)
        return
    a = a.cpu().numpy() if isinstance(a, torch.Tensor) else a
    b = b.cpu().numpy() if isinstance(b, torch.Tensor) else b
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    worst, count = int(diff.max(initial=0)), int(np.count_nonzero(diff))
    allowed = max(1, math.floor(max_diff_fraction * diff.size))
    if worst > max_level_diff or count > allowed:
        where = tuple(int(i) for i in np.unravel_index(int(diff.argmax()), diff.shape))
        raise AssertionError(f'{prefix}uint8 images differ: max {worst} level(s) at {where} (allowed '
                             f'{max_level_diff}), {count} of {diff.size} values differ (allowed {allowed})')

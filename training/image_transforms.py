"""Known image transforms T for the `Transform` task (spec: interfaces.md section 1).

Every transform maps NCHW images in [-1, 1] to images of the same shape. They define ground
truth new domains ("the grayscale version of the source") that need no pretrained network, so
tests and the demo can measure exactly how well a domain was learned.

The transforms are applied to detached images (the loss target), so they need not be
differentiable everywhere (`edges` has no useful gradient where the image is flat).
"""

import math

import torch

from torch_utils import misc

#----------------------------------------------------------------------------

def grayscale(x: torch.Tensor) -> torch.Tensor:
    """Equal-weight mean of the channels, repeated to every channel."""
    misc.assert_shape(x, [None, None, None, None])
    return x.mean(dim=1, keepdim=True).expand_as(x).contiguous()

def negative(x: torch.Tensor) -> torch.Tensor:
    """Photographic negative in [-1, 1]: `-x`."""
    return -x

def hflip(x: torch.Tensor) -> torch.Tensor:
    """Mirror along the width axis."""
    misc.assert_shape(x, [None, None, None, None])
    return x.flip(3)

def vflip(x: torch.Tensor) -> torch.Tensor:
    """Mirror along the height axis."""
    misc.assert_shape(x, [None, None, None, None])
    return x.flip(2)

#----------------------------------------------------------------------------

def hue_rotation_matrix(degrees: float, dtype=torch.float32, device='cpu') -> torch.Tensor:
    """3x3 rotation of RGB space about the gray axis (1, 1, 1) / sqrt(3), by `degrees`.

    Rodrigues' formula with unit axis k: `R = cos(t) I + sin(t) [k]_x + (1 - cos(t)) k k^T`.
    Positive angles turn red towards green (120 degrees maps pure red exactly onto green), as
    hue angles do. Gray (r = g = b) is on the axis and stays fixed, so the mid-gray 0 of [-1, 1]
    does too, and rotating about the axis through 0 or through 0.5 in [0, 1] is the same map.
    """
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    cross = torch.tensor([[0, -1, 1], [1, 0, -1], [-1, 1, 0]], dtype=torch.float64) / math.sqrt(3) # [k]_x
    R = c * torch.eye(3, dtype=torch.float64) + s * cross + (1 - c) * torch.full([3, 3], 1 / 3, dtype=torch.float64)
    return R.to(dtype=dtype, device=device)

def hue_shift(x: torch.Tensor, degrees: float = 90.0) -> torch.Tensor:
    """Rotate every pixel's colour about the gray axis by `degrees`.

    Linear in x and not clamped: saturated colours can leave [-1, 1] slightly for angles that
    are not multiples of 120 degrees (rotating the RGB cube about its diagonal only maps the
    cube onto itself at those angles).
    """
    misc.assert_shape(x, [None, 3, None, None])
    R = hue_rotation_matrix(degrees, dtype=x.dtype, device=x.device)
    return torch.einsum('ij,njhw->nihw', R, x)

#----------------------------------------------------------------------------

def edges(x: torch.Tensor) -> torch.Tensor:
    """Edge sketch: Sobel gradient magnitude of the grayscale image as dark lines on white.

    The Sobel kernels are scaled by 1/8, so a step of height 2 (black to white in [-1, 1])
    gives a magnitude of 1 across the edge. Borders are replicate-padded, so a flat image has
    no edges. Output: `1 - 2 * clamp(magnitude, 0, 1)` in every channel, i.e. white (1) where
    flat and black (-1) on strong edges.
    """
    misc.assert_shape(x, [None, None, None, None])
    gray = x.mean(dim=1, keepdim=True)                                                # [N, 1, H, W]
    sobel_x = torch.tensor([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=x.dtype, device=x.device) / 8
    kernels = torch.stack([sobel_x, sobel_x.mT]).unsqueeze(1)                        # [2, 1, 3, 3]: d/dx, d/dy
    padded = torch.nn.functional.pad(gray, [1, 1, 1, 1], mode='replicate')
    grad = torch.nn.functional.conv2d(padded, kernels)                               # [N, 2, H, W]
    magnitude = grad.square().sum(dim=1, keepdim=True).sqrt()
    sketch = 1 - 2 * magnitude.clamp(0, 1)
    return sketch.expand_as(x).contiguous()

#----------------------------------------------------------------------------
# Registry of transforms by config name. Only `hue_shift` takes an argument (`degrees`).

TRANSFORMS = {
    'grayscale': grayscale,
    'negative':  negative,
    'hflip':     hflip,
    'vflip':     vflip,
    'hue_shift': hue_shift,
    'edges':     edges,
}

TRANSFORMS_WITH_DEGREES = ('hue_shift',)

def get_transform(name: str, degrees: float = None):
    """The transform `name` as a one-argument callable (images -> images).

    Args:
        name:    one of `TRANSFORMS`.
        degrees: `hue_shift` angle (default 90); must be None for every other transform.
    """
    if name not in TRANSFORMS:
        raise ValueError(f'unknown transform {name!r}; known transforms: {", ".join(TRANSFORMS)}')
    if name in TRANSFORMS_WITH_DEGREES:
        angle = 90.0 if degrees is None else float(degrees)
        return lambda x: hue_shift(x, angle)
    if degrees is not None:
        raise ValueError(f'degrees only applies to transforms {", ".join(TRANSFORMS_WITH_DEGREES)}, not {name!r}')
    return TRANSFORMS[name]

#----------------------------------------------------------------------------

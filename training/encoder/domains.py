"""Ground-truth colour domains for training and measuring the encoder on the CPU.

Every domain is an affine colour map of images in [-1, 1], `T(x) = M x + b` per pixel (not
clamped, like `image_transforms.hue_shift`), so the truth is known exactly and no pretrained
network is needed. The training family composes a hue rotation, a saturation change, a contrast
change, a brightness shift and (sometimes) a negation; the held-out domains (hue 40-50 degrees,
grayscale, negative, sepia) never occur in it:
    hue angles in [40, 50] degrees are rejected;
    saturation stays in [0.25, 1.75], so never grayscale (0) and never sepia (a tinted gray);
    negation is only composed with hue angles at least 20 degrees from 0 (mod 360), so the pure
    negative is never sampled.
"""

import dataclasses

import numpy as np
import torch

from torch_utils import misc
from training import image_transforms
from training.expansion import evaluation

#----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ColourDomain:
    """T(x) = M x + b on every pixel of NCHW images in [-1, 1]."""
    name:   str
    matrix: tuple   # 3x3, row-major, as nested tuples (plain data, hashable).
    bias:   tuple   # 3.

    def tensors(self, device='cpu') -> tuple:
        return (torch.tensor(self.matrix, dtype=torch.float32, device=device),
                torch.tensor(self.bias, dtype=torch.float32, device=device))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        misc.assert_shape(x, [None, 3, None, None])
        M, b = self.tensors(x.device)
        return torch.einsum('ij,njhw->nihw', M.to(x.dtype), x) + b.to(x.dtype).reshape(1, 3, 1, 1)

def _domain(name: str, M: torch.Tensor, b: torch.Tensor) -> ColourDomain:
    return ColourDomain(name, tuple(tuple(float(v) for v in row) for row in M.tolist()), tuple(float(v) for v in b.tolist()))

GRAY = torch.full([3, 3], 1 / 3, dtype=torch.float64)    # Projection onto the gray axis (equal-weight mean).

def compose(name: str, *steps) -> ColourDomain:
    """The domain applying `steps` ((M, b) pairs, float64) from first to last."""
    M, b = torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    for step_M, step_b in steps:
        M, b = step_M @ M, step_M @ b + step_b
    return _domain(name, M, b)

def hue(degrees: float) -> tuple:
    return image_transforms.hue_rotation_matrix(degrees, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)

def saturation(factor: float) -> tuple:
    """Scale the distance from the gray axis by `factor` (0 = grayscale, 1 = identity)."""
    return factor * torch.eye(3, dtype=torch.float64) + (1 - factor) * GRAY, torch.zeros(3, dtype=torch.float64)

def contrast_brightness(contrast: float, brightness: float) -> tuple:
    """x -> contrast * x + brightness (about mid-gray 0 of [-1, 1])."""
    return contrast * torch.eye(3, dtype=torch.float64), torch.full([3], float(brightness), dtype=torch.float64)

def negation() -> tuple:
    return -torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)

# Classic sepia matrix on [0, 1] colours, u' = S u; in [-1, 1] (x = 2u - 1): x' = S x + (S 1 - 1).
SEPIA_01 = torch.tensor([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]], dtype=torch.float64)

def sepia() -> tuple:
    return SEPIA_01, SEPIA_01.sum(dim=1) - 1

#----------------------------------------------------------------------------

HUE_HOLDOUT_DEGREES = (40.0, 50.0)  # Hue angles never trained on.
SATURATION_RANGE = (0.25, 1.75)
CONTRAST_RANGE = (0.7, 1.3)
BRIGHTNESS_RANGE = (-0.3, 0.3)
NEGATION_PROBABILITY = 0.25
NEGATION_MIN_HUE_DEGREES = 20.0     # Negated domains keep at least this hue distance from 0.

def held_out_domains() -> list:
    """The four held-out domains of the benchmark: hue 45 degrees, grayscale, negative, sepia."""
    return [
        compose('hue45', hue(45.0)),
        compose('grayscale', saturation(0.0)),
        compose('negative', negation()),
        compose('sepia', sepia()),
    ]

def is_held_out_hue(degrees: float) -> bool:
    return HUE_HOLDOUT_DEGREES[0] <= degrees % 360 <= HUE_HOLDOUT_DEGREES[1]

def sample_training_domain(rng: np.random.Generator) -> ColourDomain:
    """One random domain of the training family (never a held-out one; see the module doc)."""
    negate = rng.uniform() < NEGATION_PROBABILITY
    while True:
        angle = float(rng.uniform(0, 360))
        near_zero = min(angle, 360 - angle) < NEGATION_MIN_HUE_DEGREES
        if not is_held_out_hue(angle) and not (negate and near_zero):
            break
    sat = float(rng.uniform(*SATURATION_RANGE))
    con = float(rng.uniform(*CONTRAST_RANGE))
    bri = float(rng.uniform(*BRIGHTNESS_RANGE))
    steps = [hue(angle), saturation(sat), contrast_brightness(con, bri)] + ([negation()] if negate else [])
    name = f'hue{angle:.0f}-sat{sat:.2f}-con{con:.2f}-bri{bri:+.2f}' + ('-neg' if negate else '')
    return compose(name, *steps)

#----------------------------------------------------------------------------

def r_squared(domain_img: torch.Tensor, target_img: torch.Tensor) -> float:
    """R^2 of interfaces.md section 5 (1 = the domain equals the target, 0 = only its colour
    statistics are right); the expansion wing's one definition."""
    return evaluation.r_squared(domain_img, target_img)

def mean_squared_error(domain_img: torch.Tensor, target_img: torch.Tensor) -> float:
    """Mean over images and C*H*W of the squared difference."""
    return float((domain_img.double() - target_img.double()).square().mean())

#----------------------------------------------------------------------------

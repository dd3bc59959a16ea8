"""Ground-truth colour domains for training and measuring the encoder on the CPU.

Every domain is an affine colour map of images in [-1, 1], `T(x) = M x + b` per pixel (not
clamped, like `image_transforms.hue_shift`), so the truth is known exactly and no pretrained
network is needed. The training family has three kinds of member, drawn with TRAINING_KINDS'
probabilities:
    'hsv':     a hue rotation, a saturation change, a contrast change, a brightness shift and
               (sometimes) a negation;
    'balance': colour balance, a gain and an offset per channel (colour temperature included);
    'tint':    a gray conversion (equal weights, Rec. 601 or Rec. 709 luma) times a random colour.
The held-out domains (hue 40-50 degrees, grayscale, negative, sepia) never occur in it:
    hue angles in [40, 50] degrees are rejected;
    saturation stays in [0.25, 1.75], so an 'hsv' member is never grayscale (0);
    negation is only composed with hue angles at least 20 degrees from 0 (mod 360), so the pure
    negative is never sampled;
    any member within HELD_OUT_RADIUS of a held-out domain (largest absolute difference of the
    3x4 maps [M | b]) is rejected and drawn again: a luma tint of sepia's colour is sepia up to
    0.04, and an equal-weight tint of a colour near white is grayscale.
"""

import dataclasses
import functools

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

def channel_gains(gains, offsets) -> tuple:
    """Colour balance: x -> gains * x + offsets per channel (all ones and zeros = identity)."""
    return torch.diag(torch.as_tensor(gains, dtype=torch.float64)), torch.as_tensor(offsets, dtype=torch.float64).clone()

# Gray conversions of the 'tint' kind: channel weights summing to 1.
GRAY_WEIGHTS = {
    'mean':   (1 / 3, 1 / 3, 1 / 3),
    'rec601': (0.299, 0.587, 0.114),
    'rec709': (0.2126, 0.7152, 0.0722),
}

def tint(colour, gray_weights=GRAY_WEIGHTS['mean']) -> tuple:
    """A gray image times `colour` in [0, 1] terms, u' = colour * (w . u); in [-1, 1] (x = 2u - 1,
    sum w = 1): x' = colour (w . x) + colour - 1. Colour (1, 1, 1) with equal weights is grayscale."""
    c = torch.as_tensor(colour, dtype=torch.float64)
    w = torch.as_tensor(gray_weights, dtype=torch.float64)
    if abs(float(w.sum()) - 1) > 1e-9:
        raise ValueError(f'gray_weights must sum to 1, got {tuple(w.tolist())} (sum {float(w.sum())})')
    return torch.outer(c, w), c - 1

#----------------------------------------------------------------------------

HUE_HOLDOUT_DEGREES = (40.0, 50.0)  # Hue angles never trained on.
SATURATION_RANGE = (0.25, 1.75)
CONTRAST_RANGE = (0.7, 1.3)
BRIGHTNESS_RANGE = (-0.3, 0.3)
NEGATION_PROBABILITY = 0.25
NEGATION_MIN_HUE_DEGREES = 20.0     # Negated domains keep at least this hue distance from 0.
TRAINING_KINDS = {'hsv': 0.5, 'balance': 0.25, 'tint': 0.25}  # Kind of a training member -> probability.
GAIN_RANGE = (0.6, 1.4)             # 'balance': per-channel gain.
OFFSET_RANGE = (-0.3, 0.3)          # 'balance': per-channel offset (in [-1, 1] units).
TINT_RANGE = (0.5, 1.5)             # 'tint': each channel of the colour (in [0, 1] terms).
HELD_OUT_RADIUS = 0.15              # Members this close to a held-out domain ([M | b], max abs) are redrawn.

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

def distance(a: ColourDomain, b: ColourDomain) -> float:
    """Largest absolute difference of the two 3x4 maps [M | b] (0 = the same domain)."""
    (Ma, ba), (Mb, bb) = a.tensors(), b.tensors()
    return float(torch.cat([Ma - Mb, (ba - bb)[:, None]], dim=1).abs().max())

@functools.lru_cache(maxsize=1)
def _held_out_maps() -> torch.Tensor:
    """The held-out domains' [M | b] maps `[H, 3, 4]`, built once (the sampler asks per draw)."""
    return torch.stack([torch.cat([M, b[:, None]], dim=1) for M, b in (h.tensors() for h in held_out_domains())])

def is_near_held_out(domain: ColourDomain, radius: float = HELD_OUT_RADIUS) -> bool:
    """Whether `domain` is within `radius` (see `distance`) of any held-out domain."""
    M, b = domain.tensors()
    return bool(((torch.cat([M, b[:, None]], dim=1) - _held_out_maps()).abs().amax(dim=[1, 2]) < radius).any())

def _sample_hsv(rng: np.random.Generator) -> ColourDomain:
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

def _sample_balance(rng: np.random.Generator) -> ColourDomain:
    gains, offsets = rng.uniform(*GAIN_RANGE, size=3), rng.uniform(*OFFSET_RANGE, size=3)
    name = 'gain' + ','.join(f'{g:.2f}' for g in gains) + '-offset' + ','.join(f'{o:+.2f}' for o in offsets)
    return compose(name, channel_gains(gains, offsets))

def _sample_tint(rng: np.random.Generator) -> ColourDomain:
    gray = str(rng.choice(list(GRAY_WEIGHTS)))
    colour = rng.uniform(*TINT_RANGE, size=3)
    return compose(f'tint-{gray}-' + ','.join(f'{c:.2f}' for c in colour), tint(colour, GRAY_WEIGHTS[gray]))

_SAMPLERS = {'hsv': _sample_hsv, 'balance': _sample_balance, 'tint': _sample_tint}

def sample_training_domain(rng: np.random.Generator) -> ColourDomain:
    """One random domain of the training family (never a held-out one; see the module doc)."""
    kinds = list(TRAINING_KINDS)
    while True:
        kind = kinds[int(rng.choice(len(kinds), p=list(TRAINING_KINDS.values())))]
        domain = _SAMPLERS[kind](rng)
        if not is_near_held_out(domain):
            return domain

#----------------------------------------------------------------------------

def r_squared(domain_img: torch.Tensor, target_img: torch.Tensor) -> float:
    """R^2 of interfaces.md section 5 (1 = the domain equals the target, 0 = only its colour
    statistics are right); the expansion wing's one definition."""
    return evaluation.r_squared(domain_img, target_img)

def mean_squared_error(domain_img: torch.Tensor, target_img: torch.Tensor) -> float:
    """Mean over images and C*H*W of the squared difference."""
    return float((domain_img.double() - target_img.double()).square().mean())

#----------------------------------------------------------------------------

"""Adaptive discriminator augmentation (ADA, Karras et al. 2020, "Training Generative Adversarial
Networks with Limited Data"): the differentiable augmentation pipeline applied to every image the
discriminator sees, its `--augpipe` presets, and the controller that adapts its strength `p`.

Pipeline stages, in order (paper appendix B): pixel blitting (x-flip, 90-degree rotations, integer
translation), general geometric transforms (isotropic scaling, arbitrary rotation, anisotropic
scaling, fractional translation), colour transforms (brightness, contrast, luma flip, hue,
saturation), image-space filtering, additive noise and cutout. Every transform is applied to each
sample independently with probability `p * <its strength>`, so all of them leak nothing when `p`
stays below about 0.8 (paper section 2.2).

Geometric design: blit and geometric transforms are composed into one inverse 3x3 matrix per sample
(pixel units, origin at the image centre). Samples whose matrix maps pixel centres onto pixel
centres (identity, flips, 90-degree rotations, integer shifts) are copied pixel-exactly by
indexing with reflection at the borders, so the `blit` group never blurs. All other samples are
resampled like the official pipeline: reflect-pad, upsample 2x with the sym6 low-pass (`Hz_geom`),
bilinear `grid_sample`, low-pass and downsample 2x. Upsampling first keeps the bilinear lookup
from aliasing; reflection keeps the padding free of black borders that D could learn.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import misc
from torch_utils import persistence
from torch_utils.ops import upfirdn2d

# ---------------------------------------------------------------------------------------------
# Wavelet low-pass (decomposition) filters, as published (Daubechies 1992; the values used by
# PyWavelets). sym2 equals db2. Each sums to sqrt(2) and has unit energy.

WAVELET_SYM2 = [
    -0.12940952255092145, 0.22414386804185735, 0.836516303737469, 0.48296291314469025,
]
WAVELET_SYM6 = [
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
]

# Expected power of natural images in the four `imgfilter` bands (lowest band first); the random
# per-band gains are renormalised so the expected total power stays 1.
IMGFILTER_EXPECTED_POWER = [10 / 13, 1 / 13, 1 / 13, 1 / 13]

# ---------------------------------------------------------------------------------------------
# `--augpipe` presets: the augmentation strengths set to 1 (all others stay 0).

_BLIT = dict(xflip=1, rotate90=1, xint=1)
_GEOM = dict(scale=1, rotate=1, aniso=1, xfrac=1)
_COLOR = dict(brightness=1, contrast=1, lumaflip=1, hue=1, saturation=1)
_FILTER = dict(imgfilter=1)
_NOISE = dict(noise=1)
_CUTOUT = dict(cutout=1)

AUGPIPE_SPECS = {
    'blit':   dict(**_BLIT),
    'geom':   dict(**_GEOM),
    'color':  dict(**_COLOR),
    'filter': dict(**_FILTER),
    'noise':  dict(**_NOISE),
    'cutout': dict(**_CUTOUT),
    'bg':     dict(**_BLIT, **_GEOM),
    'bgc':    dict(**_BLIT, **_GEOM, **_COLOR),
    'bgcf':   dict(**_BLIT, **_GEOM, **_COLOR, **_FILTER),
    'bgcfn':  dict(**_BLIT, **_GEOM, **_COLOR, **_FILTER, **_NOISE),
    'bgcfnc': dict(**_BLIT, **_GEOM, **_COLOR, **_FILTER, **_NOISE, **_CUTOUT),
}


def augpipe_kwargs(name: str) -> dict:
    """Constructor kwargs of the `--augpipe` preset `name`; unknown names list the valid ones."""
    if name not in AUGPIPE_SPECS:
        raise ValueError(f"--augpipe: unknown preset '{name}'; choose one of {', '.join(AUGPIPE_SPECS)}")
    return dict(AUGPIPE_SPECS[name])

# ---------------------------------------------------------------------------------------------
# Filter construction (float64 numpy, stored as float32 buffers).


def geom_lowpass(wavelet=WAVELET_SYM6) -> np.ndarray:
    """The 1-D anti-aliasing filter of the geometric stage: the wavelet low-pass scaled to sum 1."""
    taps = np.asarray(wavelet, dtype=np.float64)
    return taps / taps.sum()


def imgfilter_bank(wavelet=WAVELET_SYM2, num_bands: int = 4) -> np.ndarray:
    """Octave filter bank `[num_bands, taps]` for `imgfilter`; row 0 is the lowest band.

    From the wavelet low-pass `lo` and its quadrature mirror `hi[k] = (-1)^k lo[k]`, the zero-phase
    half-band pair `lo2 = (lo * reversed lo) / 2`, `hi2 = (hi * reversed hi) / 2` satisfies
    `lo2 + hi2 = delta` (orthogonality). Starting from a delta in band 0, each round stretches all
    bands by one octave (zero insertion), low-passes them with `lo2`, and puts `hi2` into the next
    band, so band k passes octave k and the rows always sum to a delta (they partition the
    spectrum). Four bands from sym2 give 43 taps.
    """
    lo = np.asarray(wavelet, dtype=np.float64)
    hi = lo * (-1.0) ** np.arange(lo.size)
    lo2 = np.convolve(lo, lo[::-1]) / 2
    hi2 = np.convolve(hi, hi[::-1]) / 2
    bank = np.zeros([num_bands, 1])
    bank[0, 0] = 1
    for band in range(1, num_bands):
        stretched = np.zeros([num_bands, bank.shape[1] * 2 - 1])
        stretched[:, ::2] = bank
        bank = np.stack([np.convolve(row, lo2) for row in stretched])
        start = (bank.shape[1] - hi2.size) // 2
        bank[band, start: start + hi2.size] += hi2
    return bank

# ---------------------------------------------------------------------------------------------
# Batched homogeneous matrices. Each element is a Python number or a `[N]` tensor.


def _matrix(rows: list, batch_size: int, device: torch.device) -> torch.Tensor:
    """Stack a nested list of scalars / `[N]` tensors into `[N, R, C]` float32."""
    cols = [torch.as_tensor(e, dtype=torch.float32, device=device).expand(batch_size) for row in rows for e in row]
    return torch.stack(cols, dim=-1).reshape(batch_size, len(rows), len(rows[0]))


def _translate2d(tx, ty, n, dev):
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], n, dev)


def _scale2d(sx, sy, n, dev):
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], n, dev)


def _rotate2d(theta, n, dev):
    c, s = torch.cos(theta), torch.sin(theta)
    return _matrix([[c, -s, 0], [s, c, 0], [0, 0, 1]], n, dev)


def _translate3d(t, n, dev):
    return _matrix([[1, 0, 0, t], [0, 1, 0, t], [0, 0, 1, t], [0, 0, 0, 1]], n, dev)


def _scale3d(s, n, dev):
    return _matrix([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]], n, dev)


def _rotate3d(axis: torch.Tensor, theta: torch.Tensor, n, dev):
    """Rotation by `theta` [N] about the unit 3-vector `axis` (Rodrigues' formula), homogeneous 4x4."""
    x, y, z = axis[0], axis[1], axis[2]
    c, s = torch.cos(theta), torch.sin(theta)
    d = 1 - c
    return _matrix([[x * x * d + c, x * y * d - z * s, x * z * d + y * s, 0],
                    [y * x * d + z * s, y * y * d + c, y * z * d - x * s, 0],
                    [z * x * d - y * s, z * y * d + x * s, z * z * d + c, 0],
                    [0, 0, 0, 1]], n, dev)


def _reflect_index(idx: torch.Tensor, size: int) -> torch.Tensor:
    """Map integer indices onto [0, size) by mirroring about the edge pixels (like F.pad 'reflect',
    but for any distance)."""
    if size == 1:
        return torch.zeros_like(idx)
    period = 2 * (size - 1)
    idx = torch.remainder(idx, period)
    return torch.where(idx >= size, period - idx, idx)


def _reflect_pad(x: torch.Tensor, pad_x0: int, pad_x1: int, pad_y0: int, pad_y1: int) -> torch.Tensor:
    """Reflection padding of `[N, C, H, W]` that, unlike F.pad, allows pads wider than the image."""
    H, W = x.shape[2], x.shape[3]
    ix = _reflect_index(torch.arange(-pad_x0, W + pad_x1, device=x.device), W)
    iy = _reflect_index(torch.arange(-pad_y0, H + pad_y1, device=x.device), H)
    return x.index_select(3, ix).index_select(2, iy)

# ---------------------------------------------------------------------------------------------


class _Draws:
    """Random parameters for one batch; with `debug_percentile` every draw is that quantile instead,
    and every enabled transform applies to every sample (for visualising a fixed strength)."""

    def __init__(self, batch_size: int, device: torch.device, debug_percentile):
        self.n = batch_size
        self.device = device
        self.debug = None
        if debug_percentile is not None:
            self.debug = torch.as_tensor(debug_percentile, dtype=torch.float32, device=device)

    def gate(self, prob) -> torch.Tensor:
        """`[N]` bool: which samples get a transform applied with probability `prob` (a tensor)."""
        if self.debug is not None:
            return torch.ones([self.n], dtype=torch.bool, device=self.device)
        return torch.rand([self.n], device=self.device) < prob

    def uniform(self, *shape) -> torch.Tensor:
        """U(0, 1) of shape `[N, *shape]`."""
        if self.debug is not None:
            return self.debug.expand(self.n, *shape).clone()
        return torch.rand([self.n, *shape], device=self.device)

    def normal(self, *shape) -> torch.Tensor:
        """N(0, 1) of shape `[N, *shape]` (debug: the normal quantile of the percentile)."""
        if self.debug is not None:
            q = torch.erfinv(self.debug * 2 - 1) * math.sqrt(2)
            return q.expand(self.n, *shape).clone()
        return torch.randn([self.n, *shape], device=self.device)

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel noise; a fixed-seed generator on the debug path so it is reproducible too."""
        if self.debug is None:
            return torch.randn_like(x)
        gen = torch.Generator(device=x.device).manual_seed(0)
        return torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)


def _where(mask: torch.Tensor, value: torch.Tensor, neutral: float) -> torch.Tensor:
    """`value` for gated samples, `neutral` (the transform's identity parameter) elsewhere."""
    while mask.ndim < value.ndim:
        mask = mask[..., None]
    return torch.where(mask, value, torch.full_like(value, neutral))

# ---------------------------------------------------------------------------------------------


@persistence.persistent_class
class AugmentPipe(torch.nn.Module):
    """The ADA augmentation pipeline. Each strength below multiplies the overall probability `p`
    (buffer; the training loop / `AdaptiveAugment` sets it). Constructor names and defaults match
    the official pipeline, so its pickles load here."""

    def __init__(self,
        xflip=0,                # Probability multiplier for x-flip.
        rotate90=0,             # Probability multiplier for rotations by multiples of 90 degrees.
        xint=0,                 # Probability multiplier for integer translation.
        xint_max=0.125,         # Range of integer translation, as a fraction of the image size.
        scale=0,                # Probability multiplier for isotropic scaling.
        rotate=0,               # Probability multiplier for arbitrary rotation.
        aniso=0,                # Probability multiplier for anisotropic scaling.
        xfrac=0,                # Probability multiplier for fractional translation.
        scale_std=0.2,          # Log2 standard deviation of isotropic scaling.
        rotate_max=1,           # Range of arbitrary rotation, 1 = full circle.
        aniso_std=0.2,          # Log2 standard deviation of anisotropic scaling.
        xfrac_std=0.125,        # Standard deviation of fractional translation, relative to image size.
        brightness=0,           # Probability multiplier for brightness.
        contrast=0,             # Probability multiplier for contrast.
        lumaflip=0,             # Probability multiplier for luma flip.
        hue=0,                  # Probability multiplier for hue rotation.
        saturation=0,           # Probability multiplier for saturation.
        brightness_std=0.2,     # Standard deviation of brightness (additive, [-1, 1] pixel units).
        contrast_std=0.5,       # Log2 standard deviation of contrast.
        hue_max=1,              # Range of hue rotation, 1 = full circle.
        saturation_std=1,       # Log2 standard deviation of saturation.
        imgfilter=0,            # Probability multiplier for image-space filtering.
        imgfilter_bands=[1, 1, 1, 1],  # Probability multipliers of the four frequency bands.
        imgfilter_std=1,        # Log2 standard deviation of the band gains.
        noise=0,                # Probability multiplier for additive RGB noise.
        cutout=0,               # Probability multiplier for cutout.
        noise_std=0.1,          # Standard deviation of the noise.
        cutout_size=0.5,        # Size of the cutout square, relative to the image size.
    ):
        super().__init__()
        self.register_buffer('p', torch.ones([]))  # Overall augmentation probability.

        # Pixel blitting.
        self.xflip = float(xflip)
        self.rotate90 = float(rotate90)
        self.xint = float(xint)
        self.xint_max = float(xint_max)

        # General geometric transforms.
        self.scale = float(scale)
        self.rotate = float(rotate)
        self.aniso = float(aniso)
        self.xfrac = float(xfrac)
        self.scale_std = float(scale_std)
        self.rotate_max = float(rotate_max)
        self.aniso_std = float(aniso_std)
        self.xfrac_std = float(xfrac_std)

        # Colour transforms.
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.lumaflip = float(lumaflip)
        self.hue = float(hue)
        self.saturation = float(saturation)
        self.brightness_std = float(brightness_std)
        self.contrast_std = float(contrast_std)
        self.hue_max = float(hue_max)
        self.saturation_std = float(saturation_std)

        # Image-space filtering.
        self.imgfilter = float(imgfilter)
        self.imgfilter_bands = list(imgfilter_bands)
        self.imgfilter_std = float(imgfilter_std)

        # Image-space corruptions.
        self.noise = float(noise)
        self.cutout = float(cutout)
        self.noise_std = float(noise_std)
        self.cutout_size = float(cutout_size)

        self.register_buffer('Hz_geom', torch.as_tensor(geom_lowpass(), dtype=torch.float32))    # [12]
        self.register_buffer('Hz_fbank', torch.as_tensor(imgfilter_bank(), dtype=torch.float32))  # [4, 43]
        if len(self.imgfilter_bands) != self.Hz_fbank.shape[0]:
            raise ValueError(f'AugmentPipe: imgfilter_bands needs {self.Hz_fbank.shape[0]} entries, '
                             f'got {self.imgfilter_bands}')

    def extra_repr(self) -> str:
        flags = ['xflip', 'rotate90', 'xint', 'scale', 'rotate', 'aniso', 'xfrac', 'brightness', 'contrast',
                 'lumaflip', 'hue', 'saturation', 'imgfilter', 'noise', 'cutout']
        enabled = [f'{name}={getattr(self, name):g}' for name in flags if getattr(self, name) > 0]
        return f'p={float(self.p):.4f}, ' + (', '.join(enabled) if enabled else 'no augmentations')

    def forward(self, images: torch.Tensor, debug_percentile=None) -> torch.Tensor:
        """Augment `images` `[N, C, H, W]` (float, [-1, 1] range); differentiable w.r.t. them.

        `debug_percentile` (float in [0, 1] or None): apply every enabled transform to every
        sample with all random parameters set to that quantile; the output is then deterministic.
        """
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
            raise ValueError(f'AugmentPipe: expected a float tensor [N, C, H, W], got '
                             f'{getattr(images, "dtype", type(images))} {list(getattr(images, "shape", []))}')
        draws = _Draws(images.shape[0], images.device, debug_percentile)
        images = self._geometric(images, draws)
        images = self._color(images, draws)
        images = self._filter(images, draws)
        images = self._corrupt(images, draws)
        return images

    # -----------------------------------------------------------------------------------------
    # Blit + geometric transforms (paper appendix B.1, B.2).

    def _geometric(self, images: torch.Tensor, d: _Draws) -> torch.Tensor:
        N, _C, H, W = images.shape
        dev = images.device
        if max(self.xflip, self.rotate90, self.xint, self.scale, self.rotate, self.aniso, self.xfrac) == 0:
            return images

        # G_inv maps output pixel coordinates (origin at the centre) to input coordinates. Each
        # transform T right-multiplies T^-1, so the first one listed is applied first to the image.
        G_inv = torch.eye(3, device=dev).expand(N, 3, 3)
        if self.xflip > 0:
            flip = torch.floor(d.uniform() * 2)  # 0 or 1
            flip = _where(d.gate(self.xflip * self.p), flip, 0)
            G_inv = G_inv @ _scale2d(1 - 2 * flip, 1, N, dev)
        if self.rotate90 > 0:
            quarter = torch.floor(d.uniform() * 4)  # 0..3 quarter turns
            quarter = _where(d.gate(self.rotate90 * self.p), quarter, 0)
            G_inv = G_inv @ _rotate2d(-np.pi / 2 * quarter, N, dev)
        if self.xint > 0:
            t = (d.uniform(2) * 2 - 1) * self.xint_max
            t = _where(d.gate(self.xint * self.p), t, 0)
            G_inv = G_inv @ _translate2d(-torch.round(t[:, 0] * W), -torch.round(t[:, 1] * H), N, dev)
        if self.scale > 0:
            s = torch.exp2(d.normal() * self.scale_std)
            s = _where(d.gate(self.scale * self.p), s, 1)
            G_inv = G_inv @ _scale2d(1 / s, 1 / s, N, dev)
        # Arbitrary rotation happens twice (before and after the anisotropic scaling), each with a
        # probability chosen so that "at least one rotation" has probability rotate * p.
        p_rot = 1 - torch.sqrt((1 - self.rotate * self.p).clamp(0, 1))
        if self.rotate > 0:
            theta = (d.uniform() * 2 - 1) * np.pi * self.rotate_max
            theta = _where(d.gate(p_rot), theta, 0)
            G_inv = G_inv @ _rotate2d(-theta, N, dev)
        if self.aniso > 0:
            s = torch.exp2(d.normal() * self.aniso_std)
            s = _where(d.gate(self.aniso * self.p), s, 1)
            G_inv = G_inv @ _scale2d(1 / s, s, N, dev)
        if self.rotate > 0:
            theta = (d.uniform() * 2 - 1) * np.pi * self.rotate_max
            theta = _where(d.gate(p_rot), theta, 0)
            if d.debug is not None:
                theta = torch.zeros_like(theta)  # The debug view shows one rotation, not two.
            G_inv = G_inv @ _rotate2d(-theta, N, dev)
        if self.xfrac > 0:
            t = d.normal(2) * self.xfrac_std
            t = _where(d.gate(self.xfrac * self.p), t, 0)
            G_inv = G_inv @ _translate2d(-t[:, 0] * W, -t[:, 1] * H, N, dev)
        return self._apply_affine(images, G_inv)

    def _apply_affine(self, images: torch.Tensor, G_inv: torch.Tensor) -> torch.Tensor:
        """Warp each sample by its `G_inv` [N, 3, 3]; pixel-exact where possible (see module doc)."""
        N, _C, H, W = images.shape
        src_x, src_y = _source_pixels(G_inv.round(), H, W)  # [N, H*W] each
        exact = (G_inv - G_inv.round()).abs().amax(dim=[1, 2]) < 1e-4
        exact &= ((src_x - src_x.round()).abs().amax(dim=1) < 1e-4) & ((src_y - src_y.round()).abs().amax(dim=1) < 1e-4)
        identity = (G_inv - torch.eye(3, device=G_inv.device)).abs().amax(dim=[1, 2]) < 1e-6
        if bool(identity.all()):
            return images

        out = torch.zeros_like(images)
        exact_idx = torch.nonzero(exact).flatten()
        warp_idx = torch.nonzero(~exact).flatten()
        if exact_idx.numel() > 0:
            ix = _reflect_index(src_x[exact_idx].round().long(), W)
            iy = _reflect_index(src_y[exact_idx].round().long(), H)
            flat = (iy * W + ix)[:, None, :].expand(-1, images.shape[1], -1)  # [n, C, H*W]
            blit = images[exact_idx].flatten(2).gather(2, flat).reshape(-1, *images.shape[1:])
            out = out.index_copy(0, exact_idx, blit)
        if warp_idx.numel() > 0:
            warped = self._resample(images[warp_idx], G_inv[warp_idx])
            out = out.index_copy(0, warp_idx, warped)
        return out

    def _resample(self, images: torch.Tensor, G_inv: torch.Tensor) -> torch.Tensor:
        """Reflect-pad, upsample 2x (Hz_geom), bilinear lookup through G_inv, low-pass + downsample 2x."""
        N, _C, H, W = images.shape
        taps = self.Hz_geom.shape[0]
        if taps % 4 != 0:
            raise ValueError(f'AugmentPipe: Hz_geom must have a multiple of 4 taps, got {taps}')
        ext = taps // 4  # Extra output pixels per side so the final low-pass sees real samples.

        # sym6 is not symmetric: its centroid sits `delay` input pixels off the nominal centre.
        # Upsampling by convolution shifts the content by `delay`; downsampling by correlation
        # (flip_filter=True below) shifts it back. Conjugating G_inv with that shift makes the two
        # cancel for every warp, not only for translations (flips would otherwise move by 2*delay).
        k = torch.arange(taps, device=images.device, dtype=torch.float32)
        delay = float(((k * self.Hz_geom).sum() / self.Hz_geom.sum() - (taps - 1) / 2) / 2)
        G_inv = _translate2d(delay, delay, N, images.device) @ G_inv @ _translate2d(-delay, -delay, N, images.device)

        # How far outside the image the (extended) output corners reach in the input, plus `ext`
        # pixels for the upsampling filter's support; never more than 2x the image (memory bound).
        cx, cy = W / 2 + ext, H / 2 + ext
        corners = torch.tensor([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]],
                               dtype=torch.float32, device=images.device)
        reach = (G_inv[:, :2, :] @ corners.t()).transpose(1, 2).reshape(-1, 2)  # [N*4, xy]
        lo, hi = reach.amin(dim=0), reach.amax(dim=0)
        limits = torch.tensor([W / 2, H / 2], device=images.device)
        margin_lo = torch.ceil((-limits - lo).clamp(min=0)) + ext
        margin_hi = torch.ceil((hi - limits).clamp(min=0)) + ext
        mx0, my0 = [int(v) for v in margin_lo.clamp(max=2 * max(H, W)).tolist()]
        mx1, my1 = [int(v) for v in margin_hi.clamp(max=2 * max(H, W)).tolist()]
        padded = _reflect_pad(images, mx0, mx1, my0, my1)
        big = upfirdn2d.upsample2d(padded, self.Hz_geom.float(), up=2)  # [N, C, 2*(H+my), 2*(W+mx)]

        # Output sampling grid at 2x density over the extended output, in centred pixel units.
        Wo, Ho = 2 * (W + 2 * ext), 2 * (H + 2 * ext)
        xs = (torch.arange(Wo, device=images.device) + 0.5) / 2 - ext - W / 2
        ys = (torch.arange(Ho, device=images.device) + 0.5) / 2 - ext - H / 2
        gy, gx = torch.meshgrid(ys, xs, indexing='ij')
        coords = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).reshape(-1, 3)  # [Ho*Wo, 3]
        src = coords @ G_inv[:, :2, :].transpose(1, 2)  # [N, Ho*Wo, 2]
        # Normalise to grid_sample's [-1, 1] over the padded image (align_corners=False).
        centre = torch.tensor([(mx1 - mx0) / 2, (my1 - my0) / 2], device=images.device)
        half = torch.tensor([(W + mx0 + mx1) / 2, (H + my0 + my1) / 2], device=images.device)
        grid = ((src - centre) / half).reshape(N, Ho, Wo, 2).to(images.dtype)
        # Reflection only matters past the clamped margin (extreme scale draws).
        warped = F.grid_sample(big, grid, mode='bilinear', padding_mode='reflection', align_corners=False)
        out = upfirdn2d.downsample2d(warped, self.Hz_geom.float(), down=2, padding=-2 * ext, flip_filter=True)
        misc.assert_shape(out, [N, images.shape[1], H, W])
        return out

    # -----------------------------------------------------------------------------------------
    # Colour transforms (paper appendix B.3): one 4x4 homogeneous matrix per sample.

    def _color(self, images: torch.Tensor, d: _Draws) -> torch.Tensor:
        N, C, H, W = images.shape
        dev = images.device
        if max(self.brightness, self.contrast, self.lumaflip, self.hue, self.saturation) == 0:
            return images
        if C not in (1, 3):
            raise ValueError(f'AugmentPipe: colour transforms need 1 or 3 channels, got {C}; '
                             f'use an --augpipe preset without colour (e.g. bg)')

        M = torch.eye(4, device=dev).expand(N, 4, 4)
        luma_axis = torch.tensor([1, 1, 1, 0], dtype=torch.float32, device=dev) / math.sqrt(3)
        luma_proj = torch.outer(luma_axis, luma_axis)  # Projection onto the gray axis.
        if self.brightness > 0:
            b = d.normal() * self.brightness_std
            b = _where(d.gate(self.brightness * self.p), b, 0)
            M = _translate3d(b, N, dev) @ M
        if self.contrast > 0:
            c = torch.exp2(d.normal() * self.contrast_std)
            c = _where(d.gate(self.contrast * self.p), c, 1)
            M = _scale3d(c, N, dev) @ M
        if self.lumaflip > 0:
            flip = torch.floor(d.uniform() * 2)
            flip = _where(d.gate(self.lumaflip * self.p), flip, 0)
            M = (torch.eye(4, device=dev) - 2 * luma_proj * flip[:, None, None]) @ M  # Householder reflection.
        if self.hue > 0 and C > 1:
            theta = (d.uniform() * 2 - 1) * np.pi * self.hue_max
            theta = _where(d.gate(self.hue * self.p), theta, 0)
            M = _rotate3d(luma_axis, theta, N, dev) @ M  # Rotation about the gray axis.
        if self.saturation > 0 and C > 1:
            s = torch.exp2(d.normal() * self.saturation_std)
            s = _where(d.gate(self.saturation * self.p), s, 1)
            M = (luma_proj + (torch.eye(4, device=dev) - luma_proj) * s[:, None, None]) @ M

        M = M.to(images.dtype)
        flat = images.reshape(N, C, H * W)
        if C == 3:
            flat = M[:, :3, :3] @ flat + M[:, :3, 3:]
        else:  # Grayscale: average the matrix's effect over the three output channels.
            M = M[:, :3, :].mean(dim=1, keepdim=True)  # [N, 1, 4]
            flat = flat * M[:, :, :3].sum(dim=2, keepdim=True) + M[:, :, 3:]
        return flat.reshape(N, C, H, W)

    # -----------------------------------------------------------------------------------------
    # Image-space filtering (paper appendix B.4): random gains for four octave bands.

    def _filter(self, images: torch.Tensor, d: _Draws) -> torch.Tensor:
        N, C, H, W = images.shape
        if self.imgfilter == 0:
            return images
        num_bands, taps = self.Hz_fbank.shape
        power = torch.as_tensor(IMGFILTER_EXPECTED_POWER, dtype=torch.float32, device=images.device)
        gains = torch.ones([N, num_bands], device=images.device)
        any_gated = torch.zeros([N], dtype=torch.bool, device=images.device)
        for band, band_strength in enumerate(self.imgfilter_bands):
            g = torch.exp2(d.normal() * self.imgfilter_std)
            gate = d.gate(self.imgfilter * self.p * band_strength)
            if d.debug is not None and band_strength <= 0:
                gate = torch.zeros_like(gate)
            g = _where(gate, g, 1)
            any_gated |= gate
            t = torch.ones([N, num_bands], device=images.device)
            t[:, band] = g
            t = t / (power * t.square()).sum(dim=1, keepdim=True).sqrt()  # Keep expected power at 1.
            gains = gains * t
        if not bool(any_gated.any()):
            return images  # The bank sums to a delta only up to rounding; skip it when nothing applies.

        kernel = (gains @ self.Hz_fbank).to(images.dtype)  # [N, taps]
        kernel = kernel[:, None, :].expand(N, C, taps).reshape(N * C, 1, taps)
        half = taps // 2
        x = _reflect_pad(images, half, half, half, half).reshape(1, N * C, H + 2 * half, W + 2 * half)
        x = F.conv2d(x, kernel[:, :, None, :], groups=N * C)  # Along width.
        x = F.conv2d(x, kernel[:, :, :, None], groups=N * C)  # Along height.
        return x.reshape(N, C, H, W)

    # -----------------------------------------------------------------------------------------
    # Image-space corruptions (paper appendix B.5).

    def _corrupt(self, images: torch.Tensor, d: _Draws) -> torch.Tensor:
        N, _C, H, W = images.shape
        if self.noise > 0:
            sigma = d.normal().abs() * self.noise_std
            sigma = _where(d.gate(self.noise * self.p), sigma, 0)
            images = images + d.randn_like(images) * sigma[:, None, None, None].to(images.dtype)
        if self.cutout > 0:
            size = torch.full([N], self.cutout_size, device=images.device)
            size = _where(d.gate(self.cutout * self.p), size, 0)
            centre = d.uniform(2)
            ux = (torch.arange(W, device=images.device) + 0.5) / W
            uy = (torch.arange(H, device=images.device) + 0.5) / H
            keep_x = (ux[None, :] - centre[:, 0:1]).abs() >= size[:, None] / 2  # [N, W]
            keep_y = (uy[None, :] - centre[:, 1:2]).abs() >= size[:, None] / 2  # [N, H]
            keep = keep_x[:, None, None, :] | keep_y[:, None, :, None]
            images = images * keep.to(images.dtype)
        return images


def _source_pixels(G_inv: torch.Tensor, H: int, W: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Input pixel indices (float) read by each output pixel centre under `G_inv` [N, 3, 3]."""
    ys = torch.arange(H, device=G_inv.device, dtype=torch.float32) + 0.5 - H / 2
    xs = torch.arange(W, device=G_inv.device, dtype=torch.float32) + 0.5 - W / 2
    gy, gx = torch.meshgrid(ys, xs, indexing='ij')
    coords = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).reshape(-1, 3)  # [H*W, 3]
    src = coords @ G_inv[:, :2, :].transpose(1, 2)  # [N, H*W, 2]
    return src[..., 0] + W / 2 - 0.5, src[..., 1] + H / 2 - 0.5

# ---------------------------------------------------------------------------------------------


class AdaptiveAugment:
    """ADA controller (paper section 3): tunes `augment_pipe.p` from the overfitting heuristic
    r_t = E[sign(D(real))]. Every `interval` steps, `p += sign(r_t - target) * batch_size * interval
    / (speed_kimg * 1000)`, floored at 0, so p can go from 0 to 1 in `speed_kimg` thousand images.

    Usage in the loop: `ada.accumulate(real_logits)` in the D phase, `ada.step(batch_idx)` once per
    training step (all ranks in lockstep: with torch.distributed initialised, the sign statistics
    are summed over ranks, so every rank computes the same p). `state_dict()` / `load_state_dict()`
    carry p and the pending statistics for exact resume.
    """

    def __init__(self,
        augment_pipe: AugmentPipe,  # The pipe whose `p` buffer is adjusted in place.
        batch_size: int,            # Global batch size (images per step over all ranks).
        target: float = 0.6,        # ADA target value of E[sign(D(real))] (--target).
        interval: int = 4,          # Adjust p every this many steps.
        speed_kimg: float = 500,    # Thousands of images for p to move by 1 (100 when resuming).
    ):
        if not 0 <= target <= 1:
            raise ValueError(f'--target: ADA target must be in [0, 1], got {target}')
        if interval < 1 or speed_kimg <= 0 or batch_size < 1:
            raise ValueError(f'AdaptiveAugment: need interval >= 1, speed_kimg > 0 and batch_size >= 1, '
                             f'got {interval}, {speed_kimg}, {batch_size}')
        self.augment_pipe = augment_pipe
        self.batch_size = int(batch_size)
        self.target = float(target)
        self.interval = int(interval)
        self.speed_kimg = float(speed_kimg)
        self._sign_sum = 0.0    # Sum of sign(D(real)) since the last adjustment (this rank).
        self._count = 0.0       # Number of logits summed.
        self._pending = []      # Device tensors not yet read back (avoids a sync per step).
        self.last_rt = None     # r_t used by the latest adjustment, for logging.

    def accumulate(self, real_logits: torch.Tensor) -> None:
        """Record D's logits on real images (any shape; one value per logit)."""
        logits = real_logits.detach()
        self._pending.append(torch.stack([logits.sign().sum(), torch.tensor(float(logits.numel()), device=logits.device)]))

    def _flush(self) -> None:
        for pair in self._pending:
            s, c = pair.double().cpu().tolist()
            self._sign_sum += s
            self._count += c
        self._pending = []

    def step(self, batch_idx: int) -> bool:
        """Call once per training step with the number of steps done; adjusts p when
        `batch_idx % interval == 0`. Returns True when p was adjusted."""
        if batch_idx % self.interval != 0:
            return False
        self._flush()
        totals = torch.tensor([self._sign_sum, self._count], dtype=torch.float64)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            device = self.augment_pipe.p.device
            totals = totals.to(device)
            torch.distributed.all_reduce(totals)
            totals = totals.cpu()
        self._sign_sum, self._count = 0.0, 0.0
        if totals[1] == 0:
            return False
        self.last_rt = float(totals[0] / totals[1])
        adjust = np.sign(self.last_rt - self.target) * self.batch_size * self.interval / (self.speed_kimg * 1000)
        p = self.augment_pipe.p
        p.copy_((p + adjust).clamp(min=0))
        return True

    @property
    def p(self) -> float:
        return float(self.augment_pipe.p)

    def state_dict(self) -> dict:
        """Plain-Python state (p, pending statistics, settings) for snapshots."""
        self._flush()
        return dict(p=self.p, sign_sum=self._sign_sum, count=self._count, last_rt=self.last_rt,
                    target=self.target, interval=self.interval, speed_kimg=self.speed_kimg,
                    batch_size=self.batch_size)

    def load_state_dict(self, state: dict) -> None:
        """Restore p and the pending statistics; the settings come from the constructor."""
        self._pending = []
        self._sign_sum = float(state['sign_sum'])
        self._count = float(state['count'])
        self.last_rt = state.get('last_rt')
        self.augment_pipe.p.copy_(torch.as_tensor(state['p'], dtype=self.augment_pipe.p.dtype))

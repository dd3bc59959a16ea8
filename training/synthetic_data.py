"""Procedural image datasets for tests and the demo: no downloads, deterministic given a seed.

Two styles:
- `blobs`: a smooth two-colour gradient background with one to three soft coloured blobs.
- `shapes`: one to three sharp, saturated geometric shapes (disc, square, triangle) on a
  textured background (stripes or a checkerboard in two muted colours): content with edges and
  structure that a person recognises after a colour transform (the demo's source data).
With labels, the class decides the foreground hue (class k of K: hue k/K), so a conditional model
has something to learn; without labels the hues are random.
"""

import colorsys
import os

import numpy as np

from training.dataset import DatasetError, DatasetWriter


def synthetic_image(rng: np.random.Generator, resolution: int, class_idx: int = None, num_classes: int = 4,
                    channels: int = 3) -> np.ndarray:
    """One uint8 image [H, W, channels] drawn with `rng`."""
    u = (np.arange(resolution) + 0.5) / resolution
    gy, gx = np.meshgrid(u, u, indexing='ij')

    # Background: linear gradient between two muted colours along a random direction.
    angle = rng.uniform(0, 2 * np.pi)
    t = np.clip((gx - 0.5) * np.cos(angle) + (gy - 0.5) * np.sin(angle) + 0.5, 0, 1)[..., None]
    c0, c1 = rng.uniform(0.1, 0.5, size=3), rng.uniform(0.3, 0.7, size=3)
    image = c0 * (1 - t) + c1 * t

    # Blobs: Gaussian discs blended over the background.
    for _ in range(rng.integers(1, 4)):
        hue = class_idx / num_classes if class_idx is not None else rng.uniform()
        hue = (hue + rng.normal(0, 0.02)) % 1
        colour = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.6, 1), rng.uniform(0.7, 1)))
        cx, cy = rng.uniform(0.2, 0.8, size=2)
        radius = rng.uniform(0.08, 0.25)
        alpha = np.exp(-((gx - cx) ** 2 + (gy - cy) ** 2) / (2 * radius ** 2))[..., None]
        image = image * (1 - alpha) + colour * alpha

    if channels == 1:
        image = image.mean(axis=2, keepdims=True)
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


SHAPES_SUPERSAMPLING = 4  # `shapes` are drawn at 4x the resolution and box-filtered down (anti-aliased edges).


def _shape_mask(kind: str, gx: np.ndarray, gy: np.ndarray, cx: float, cy: float, size: float,
                angle: float) -> np.ndarray:
    """Binary mask [H, W] of one shape centred at (cx, cy) with half-size `size`, rotated by `angle`."""
    dx, dy = gx - cx, gy - cy
    u = dx * np.cos(angle) + dy * np.sin(angle)     # Coordinates in the shape's own frame.
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    if kind == 'disc':
        return u ** 2 + v ** 2 <= size ** 2
    if kind == 'square':
        return np.maximum(np.abs(u), np.abs(v)) <= size * 0.85
    # Equilateral triangle: inside all three half-planes at distance size/2 from the centre.
    inside = np.ones_like(u, dtype=bool)
    for k in range(3):
        phi = 2 * np.pi * k / 3 + np.pi / 2
        inside &= (u * np.cos(phi) + v * np.sin(phi)) <= size * 0.6
    return inside


def shapes_image(rng: np.random.Generator, resolution: int, class_idx: int = None, num_classes: int = 4,
                 channels: int = 3) -> np.ndarray:
    """One uint8 `shapes` image [H, W, channels] drawn with `rng` (see the module docstring)."""
    n = resolution * SHAPES_SUPERSAMPLING
    u = (np.arange(n) + 0.5) / n
    gy, gx = np.meshgrid(u, u, indexing='ij')

    # Background texture: stripes (random angle and period) or a checkerboard, two muted colours.
    c0, c1 = rng.uniform(0.15, 0.45, size=3), rng.uniform(0.35, 0.65, size=3)
    period = rng.uniform(0.15, 0.35)
    if rng.uniform() < 0.5:
        angle = rng.uniform(0, np.pi)
        t = (np.floor((gx * np.cos(angle) + gy * np.sin(angle)) / period) % 2)[..., None]
    else:
        t = ((np.floor(gx / period) + np.floor(gy / period)) % 2)[..., None]
    image = c0 * (1 - t) + c1 * t

    # Foreground: saturated shapes with a dark outline, painted in order.
    for _ in range(rng.integers(1, 4)):
        hue = class_idx / num_classes if class_idx is not None else rng.uniform()
        hue = (hue + rng.normal(0, 0.02)) % 1
        colour = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.7, 1), rng.uniform(0.75, 1)))
        kind = ('disc', 'square', 'triangle')[rng.integers(0, 3)]
        cx, cy = rng.uniform(0.25, 0.75, size=2)
        size, angle = rng.uniform(0.14, 0.28), rng.uniform(0, 2 * np.pi)
        outline = _shape_mask(kind, gx, gy, cx, cy, size + 0.03, angle)
        fill = _shape_mask(kind, gx, gy, cx, cy, size, angle)
        image = np.where(outline[..., None], 0.05, image)
        image = np.where(fill[..., None], colour, image)

    image = image.reshape(resolution, SHAPES_SUPERSAMPLING, resolution, SHAPES_SUPERSAMPLING, 3).mean(axis=(1, 3))
    if channels == 1:
        image = image.mean(axis=2, keepdims=True)
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


STYLES = {'blobs': synthetic_image, 'shapes': shapes_image}


def make_synthetic_dataset(dest: str, num_images: int, resolution: int, seed: int = 0, labels: bool = False,
                           num_classes: int = 4, channels: int = 3, style: str = 'blobs') -> str:
    """Write `num_images` procedural images in the official layout to `dest` (.zip or directory).

    Args:
        dest:        output .zip path or (empty / new) directory.
        num_images:  number of images.
        resolution:  width = height in pixels (a power of two for training).
        seed:        the same seed gives the same files.
        labels:      write class labels (ints in [0, num_classes)) to dataset.json.
        num_classes: number of classes when `labels` is set.
        channels:    1 (grayscale) or 3 (RGB).
        style:       'blobs' or 'shapes' (see the module docstring).
    Returns:
        the absolute path written.
    """
    if num_images < 1 or resolution < 1 or channels not in (1, 3) or num_classes < 1:
        raise DatasetError(f'make_synthetic_dataset: need num_images >= 1, resolution >= 1, channels 1 or 3, '
                           f'num_classes >= 1; got {num_images}, {resolution}, {channels}, {num_classes}')
    if style not in STYLES:
        raise DatasetError(f'make_synthetic_dataset: unknown style {style!r}; choose one of {", ".join(STYLES)}')
    draw = STYLES[style]
    rng = np.random.default_rng(seed)
    with DatasetWriter(dest, what='synthetic dataset') as writer:
        for idx in range(num_images):
            class_idx = idx % num_classes if labels else None
            writer.add_image(draw(rng, resolution, class_idx, num_classes, channels), label=class_idx)
    return os.path.abspath(dest)

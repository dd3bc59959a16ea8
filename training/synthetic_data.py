"""Procedural image datasets for tests and the demo: no downloads, deterministic given a seed.

Each image is a smooth two-colour gradient background with one to three soft coloured blobs.
With labels, the class decides the blobs' hue (class k of K: hue k/K), so a conditional model has
something to learn; without labels the hues are random.
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


def make_synthetic_dataset(dest: str, num_images: int, resolution: int, seed: int = 0, labels: bool = False,
                           num_classes: int = 4, channels: int = 3) -> str:
    """Write `num_images` procedural images in the official layout to `dest` (.zip or directory).

    Args:
        dest:        output .zip path or (empty / new) directory.
        num_images:  number of images.
        resolution:  width = height in pixels (a power of two for training).
        seed:        the same seed gives the same files.
        labels:      write class labels (ints in [0, num_classes)) to dataset.json.
        num_classes: number of classes when `labels` is set.
        channels:    1 (grayscale) or 3 (RGB).
    Returns:
        the absolute path written.
    """
    if num_images < 1 or resolution < 1 or channels not in (1, 3) or num_classes < 1:
        raise DatasetError(f'make_synthetic_dataset: need num_images >= 1, resolution >= 1, channels 1 or 3, '
                           f'num_classes >= 1; got {num_images}, {resolution}, {channels}, {num_classes}')
    rng = np.random.default_rng(seed)
    with DatasetWriter(dest, what='synthetic dataset') as writer:
        for idx in range(num_images):
            class_idx = idx % num_classes if labels else None
            writer.add_image(synthetic_image(rng, resolution, class_idx, num_classes, channels), label=class_idx)
    return os.path.abspath(dest)

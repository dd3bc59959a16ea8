"""The procedural `shapes` style (the demo's sharp source data): deterministic, well-formed, sharp."""

import numpy as np
import pytest

from training.dataset import DatasetError
from training.synthetic_data import make_synthetic_dataset, shapes_image, synthetic_image


def test_shapes_are_deterministic_and_well_formed():
    a = shapes_image(np.random.default_rng(5), 32)
    b = shapes_image(np.random.default_rng(5), 32)
    assert a.dtype == np.uint8 and a.shape == (32, 32, 3)
    assert np.array_equal(a, b)
    assert shapes_image(np.random.default_rng(5), 16, channels=1).shape == (16, 16, 1)


def test_shapes_have_sharper_edges_than_blobs():
    """Mean absolute difference of neighbouring pixels: shapes (outlined, textured) >> blobs."""
    def edge_energy(draw):
        rng = np.random.default_rng(0)
        images = np.stack([draw(rng, 32).astype(np.float64) for _ in range(16)])
        return np.abs(np.diff(images, axis=2)).mean()
    assert edge_energy(shapes_image) > 3 * edge_energy(synthetic_image)


def test_class_sets_the_foreground_hue():
    """With a class, every shape is drawn in (about) the class hue: the most saturated pixels agree."""
    rng = np.random.default_rng(1)
    image = shapes_image(rng, 32, class_idx=0, num_classes=3).astype(np.float64) / 255
    saturation = image.max(axis=2) - image.min(axis=2)
    vivid = image[saturation > 0.5]
    assert len(vivid) > 0
    assert np.all(vivid.argmax(axis=1) == 0)          # hue 0: red dominates


def test_dataset_style_choice(tmp_path):
    make_synthetic_dataset(str(tmp_path / 'shapes'), 3, 16, seed=2, style='shapes')
    assert len(list((tmp_path / 'shapes').rglob('*.png'))) == 3
    with pytest.raises(DatasetError, match="unknown style 'stars'; choose one of blobs, shapes"):
        make_synthetic_dataset(str(tmp_path / 'bad'), 3, 16, style='stars')

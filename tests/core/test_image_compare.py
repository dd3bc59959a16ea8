"""tests/image_compare.py: the tolerance helper for renders from different code paths passes
what it documents and fails everything else."""

import numpy as np
import PIL.Image
import pytest
import torch

from image_compare import FLOAT_ATOL, assert_images_close


def _image(seed=0, shape=(32, 32, 3)) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 256, size=shape).astype(np.uint8)


def test_uint8_one_level_on_a_few_values_passes():
    a = _image()
    b = a.copy()
    b.flat[[5, 100, 2000]] ^= 1                             # three values one level apart (of 3072)
    assert_images_close(a, b)
    assert_images_close(torch.from_numpy(a), torch.from_numpy(b))
    tiny = np.zeros([1, 1, 1], np.uint8)                    # one value: it may still differ by one
    assert_images_close(tiny, tiny + 1)


def test_uint8_failures_name_the_worst_value():
    a = _image()
    b = a.copy()
    b[4, 7, 2] = a[4, 7, 2] + 2 if a[4, 7, 2] < 254 else a[4, 7, 2] - 2
    with pytest.raises(AssertionError, match=r'grid: uint8 images differ: max 2 level\(s\) at \(4, 7, 2\)'):
        assert_images_close(a, b, msg='grid')
    many = a ^ 1                                            # every value one level off
    with pytest.raises(AssertionError, match='3072 of 3072 values differ'):
        assert_images_close(a, many)
    assert_images_close(a, many, max_diff_fraction=1.0)
    with pytest.raises(AssertionError, match='shapes differ'):
        assert_images_close(a, a[:16])
    with pytest.raises(AssertionError, match='one image is uint8'):
        assert_images_close(a, a.astype(np.float32))


def test_png_paths_and_pil_images(tmp_path):
    a = _image(1)
    PIL.Image.fromarray(a).save(tmp_path / 'a.png')
    b = a.copy()
    b[0, 0, 0] ^= 1
    assert_images_close(tmp_path / 'a.png', PIL.Image.fromarray(b))
    b[0, 0, 0] ^= 3
    with pytest.raises(AssertionError):
        assert_images_close(str(tmp_path / 'a.png'), b)


def test_float_renders_use_the_documented_tolerance():
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    assert_images_close(x, x + FLOAT_ATOL / 2)
    assert_images_close(x.numpy(), (x + 1e-6).numpy())
    with pytest.raises(AssertionError, match='render'):
        assert_images_close(x, x + 10 * FLOAT_ATOL, msg='render')

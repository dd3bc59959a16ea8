"""dataset_tool.py: conversions, transforms, label carry-over, atomic output, one-line CLI errors."""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

import dataset_tool
from conftest import REPO_ROOT
from dataset_tool import convert_dataset
from training.dataset import DatasetError, ImageFolderDataset


def _photo(path, width, height, mode='RGB'):
    """A gradient image whose left half is red and right half blue, so crops are checkable."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img = np.zeros([height, width, 3], np.uint8)
    img[:, : width // 2, 0] = 255
    img[:, width // 2:, 2] = 255
    img[:, :, 1] = np.linspace(0, 255, height, dtype=np.uint8)[:, None]
    PIL.Image.fromarray(img).convert(mode).save(path)


@pytest.fixture
def photos(tmp_path):
    src = tmp_path / 'photos'
    _photo(str(src / 'b/one.jpg'), 48, 32)
    _photo(str(src / 'a.png'), 40, 64)
    _photo(str(src / 'c.PNG'), 20, 20)
    with open(src / 'dataset.json', 'w') as f:
        json.dump({'labels': [['a.png', 2], ['b/one.jpg', 0], ['c.PNG', 1]]}, f)
    return src


def test_center_crop_to_zip_with_labels(photos, tmp_path):
    dest = tmp_path / 'out.zip'
    assert convert_dataset(str(photos), str(dest), resolution='16x16', transform='center-crop') == 3
    names = sorted(zipfile.ZipFile(dest).namelist())
    assert names == ['00000/img00000000.png', '00000/img00000001.png', '00000/img00000002.png', 'dataset.json']
    meta = json.loads(zipfile.ZipFile(dest).read('dataset.json'))
    # Sorted source order: a.png, b/one.jpg, c.PNG.
    assert meta == {'labels': [['00000/img00000000.png', 2], ['00000/img00000001.png', 0], ['00000/img00000002.png', 1]]}
    ds = ImageFolderDataset(str(dest), use_labels=True)
    assert ds.image_shape == [3, 16, 16] and ds.label_dim == 3
    image = ds[1][0]  # The 48x32 landscape, centre-cropped: red left, blue right.
    assert image[0, 8, 1] > 200 and image[2, 8, 1] < 50 and image[2, 8, 14] > 200
    assert sorted(os.listdir(tmp_path)) == ['out.zip', 'photos']  # No temporary leftovers.


def test_center_crop_wide_letterboxes(photos, tmp_path):
    dest = tmp_path / 'wide'
    convert_dataset(str(photos), str(dest), resolution='16x8', transform='center-crop-wide', max_images=2)
    ds = ImageFolderDataset(str(dest))
    assert len(ds) == 2 and ds.image_shape == [3, 16, 16]
    image = ds[0][0]
    assert image[:, :4].max() == 0 and image[:, 12:].max() == 0  # Black bars above and below.
    assert image[:, 4:12].mean() > 50


def test_plain_copy_grayscale_and_mixed_modes(tmp_path):
    src = tmp_path / 'src'
    _photo(str(src / '0.png'), 8, 8, mode='L')
    _photo(str(src / '1.png'), 8, 8, mode='L')
    convert_dataset(str(src), str(tmp_path / 'gray.zip'))
    gray = ImageFolderDataset(str(tmp_path / 'gray.zip'))
    assert gray.image_shape == [1, 8, 8] and not gray.has_labels
    np.testing.assert_array_equal(gray[0][0][0], np.asarray(PIL.Image.open(src / '0.png')))
    _photo(str(src / '2.png'), 8, 8, mode='RGBA')
    convert_dataset(str(src), str(tmp_path / 'rgb.zip'))
    assert ImageFolderDataset(str(tmp_path / 'rgb.zip')).image_shape == [3, 8, 8]
    # A zip source works too.
    convert_dataset(str(tmp_path / 'rgb.zip'), str(tmp_path / 'again'), resolution='4x4')
    assert ImageFolderDataset(str(tmp_path / 'again')).image_shape == [3, 4, 4]


@pytest.mark.parametrize('kwargs, message', [
    (dict(resolution='16by16'), "--resolution: expected WxH"),
    (dict(resolution='16x8'), 'must be square'),
    (dict(resolution='24x24'), 'power of two'),
    (dict(transform='center-crop'), 'requires --resolution'),
    (dict(), 'must be square'),                 # The first source image is 40x64.
    (dict(max_images=0), '--max-images'),
])
def test_errors_are_one_line_and_leave_nothing(photos, tmp_path, kwargs, message):
    with pytest.raises(DatasetError) as info:
        convert_dataset(str(photos), str(tmp_path / 'out.zip'), **kwargs)
    assert message in str(info.value) and '\n' not in str(info.value)
    assert sorted(os.listdir(tmp_path)) == ['photos']


def test_mismatched_sizes_abort_mid_way(tmp_path):
    src = tmp_path / 'src'
    _photo(str(src / '0.png'), 8, 8)
    _photo(str(src / '1.png'), 16, 16)
    with pytest.raises(DatasetError, match=r'0.png is 8x8, 1.png is 16x16'):
        convert_dataset(str(src), str(tmp_path / 'out'))
    assert sorted(os.listdir(tmp_path)) == ['src']
    with pytest.raises(DatasetError, match='no such file'):
        convert_dataset(str(tmp_path / 'nope'), str(tmp_path / 'out.zip'))


def test_cli(photos, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(dataset_tool.main, ['--source', str(photos), '--dest', str(tmp_path / 'o.zip'),
                                           '--resolution', '8x8', '--transform', 'center-crop'])
    assert ok.exit_code == 0 and 'Wrote 3 images' in ok.output
    again = runner.invoke(dataset_tool.main, ['--source', str(photos), '--dest', str(tmp_path / 'o.zip'),
                                              '--resolution', '8x8', '--transform', 'center-crop'])
    assert again.exit_code != 0 and 'already exists' in again.output.strip().splitlines()[-1]
    # The real command: no traceback, the message is the last line.
    proc = subprocess.run([sys.executable, 'dataset_tool.py', '--source', str(photos), '--dest',
                           str(tmp_path / 'x.zip'), '--resolution', '8x'], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "Error: --resolution: expected WxH with positive integers, e.g. 256x256, got '8x'"

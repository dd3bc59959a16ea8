"""dataset_tool.py with the official tool's sources and flags: CIFAR-10 and MNIST archives, an LSUN
LMDB folder (tiny synthetic files in those formats), --width/--height and --resize-filter."""

import gzip
import io
import os
import pickle
import tarfile

import numpy as np
import PIL.Image
import pytest

import dataset_tool
from conftest import run_cli_inprocess
from training.dataset import DatasetError, ImageFolderDataset


def _dataset(path) -> tuple[np.ndarray, np.ndarray | None]:
    """(images uint8 [N, C, H, W], labels int [N] or None) as training reads the archive."""
    ds = ImageFolderDataset(str(path), use_labels=True) if _has_labels(path) else ImageFolderDataset(str(path))
    images = np.stack([ds[i][0] for i in range(len(ds))])
    labels = np.array([int(np.argmax(ds.get_label(i))) for i in range(len(ds))]) if ds.has_labels else None
    ds.close()
    return images, labels


def _has_labels(path) -> bool:
    import json
    import zipfile
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read('dataset.json'))['labels'] is not None


def _write_cifar10(path, images: np.ndarray, labels: np.ndarray) -> None:
    """cifar-10-python.tar.gz layout: five pickled batches {'data': [n, 3072] uint8 (CHW rows), 'labels'}."""
    with tarfile.open(path, 'w:gz') as tar:
        for i, part in enumerate(np.array_split(np.arange(len(images)), 5)):
            batch = {'batch_label': f'training batch {i + 1} of 5', 'labels': [int(x) for x in labels[part]],
                     'data': images[part].transpose(0, 3, 1, 2).reshape(len(part), -1),
                     'filenames': [f'img{j}.png' for j in part]}
            blob = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f'cifar-10-batches-py/data_batch_{i + 1}')
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


def test_cifar10_archive(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, [10, 32, 32, 3], dtype=np.uint8)
    labels = rng.integers(0, 10, [10])
    src = tmp_path / 'cifar-10-python.tar.gz'
    _write_cifar10(src, images, labels)
    assert dataset_tool.convert_dataset(str(src), str(tmp_path / 'c.zip')) == 10
    got_images, got_labels = _dataset(tmp_path / 'c.zip')
    np.testing.assert_array_equal(got_images, images.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(got_labels, labels)


def test_cifar10_pickle_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ('touch pwned',))
    src = tmp_path / 'cifar-10-python.tar.gz'
    with tarfile.open(src, 'w:gz') as tar:
        blob = pickle.dumps({'data': Evil(), 'labels': [0]}, protocol=2)
        info = tarfile.TarInfo('cifar-10-batches-py/data_batch_1')
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    with pytest.raises(DatasetError, match=r"cifar-10-python.tar.gz.*(posix|os)\.system"):
        dataset_tool.convert_dataset(str(src), str(tmp_path / 'c.zip'))
    assert not (tmp_path / 'c.zip').exists() and not os.path.exists('pwned')


def _write_idx(path, magic: int, array: np.ndarray) -> None:
    header = np.array([magic, *array.shape], dtype='>i4').tobytes()
    with gzip.open(path, 'wb') as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_mnist_padded_to_32_with_labels(tmp_path):
    rng = np.random.default_rng(1)
    digits = rng.integers(1, 256, [3, 28, 28], dtype=np.uint8)
    _write_idx(tmp_path / 'train-images-idx3-ubyte.gz', 0x803, digits)
    _write_idx(tmp_path / 'train-labels-idx1-ubyte.gz', 0x801, np.array([7, 0, 3]))
    dataset_tool.convert_dataset(str(tmp_path / 'train-images-idx3-ubyte.gz'), str(tmp_path / 'm.zip'))
    images, labels = _dataset(tmp_path / 'm.zip')
    assert images.shape == (3, 1, 32, 32) and labels.tolist() == [7, 0, 3]
    np.testing.assert_array_equal(images[:, 0, 2:30, 2:30], digits)
    assert not images[:, :, :2].any() and not images[:, :, :, 30:].any()  # zero border

    os.remove(tmp_path / 'train-labels-idx1-ubyte.gz')
    with pytest.raises(DatasetError, match='train-labels-idx1-ubyte.gz'):
        dataset_tool.convert_dataset(str(tmp_path / 'train-images-idx3-ubyte.gz'), str(tmp_path / 'n.zip'))


def _encode(image: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(image).save(buffer, format=fmt, **({'lossless': True} if fmt == 'WEBP' else {}))
    return buffer.getvalue()


def test_lsun_lmdb_with_official_resize_flags(tmp_path, capsys):
    import lmdb  # in requirements.txt (training extra)
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, [32, 48, 3], dtype=np.uint8) for _ in range(3)]
    src = tmp_path / 'bedroom_train_lmdb'
    env = lmdb.open(str(src), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i, (image, fmt) in enumerate(zip(images, ('WEBP', 'PNG', 'WEBP'))):
            txn.put(f'{i:040x}'.encode(), _encode(image, fmt))
    env.close()

    code, out, err = run_cli_inprocess(dataset_tool.main, [
        '--source', str(src), '--dest', str(tmp_path / 'box.zip'), '--width', '16', '--height', '16',
        '--transform', 'center-crop', '--resize-filter', 'box'], capsys)
    assert code == 0, err
    got, labels = _dataset(tmp_path / 'box.zip')
    assert labels is None and got.shape == (3, 3, 16, 16)
    # center-crop keeps the middle 32x32; a box filter halving it averages each 2x2 block.
    blocks = np.stack([im[:, 8:40].reshape(16, 2, 16, 2, 3).astype(float).mean(axis=(1, 3)) for im in images])
    assert np.abs(got.transpose(0, 2, 3, 1) - blocks).max() <= 1

    dataset_tool.convert_dataset(str(src), str(tmp_path / 'lanczos.zip'), resolution=(16, 16), transform='center-crop')
    assert np.abs(_dataset(tmp_path / 'lanczos.zip')[0].astype(int) - got).max() > 1  # the filter matters


@pytest.mark.parametrize('flag', ['--max-images', '--max_images'])
def test_max_images_in_both_official_spellings(tmp_path, capsys, flag):
    """The official option is --max-images; its README's LSUN command types --max_images."""
    _write_cifar10(tmp_path / 'cifar-10-python.tar.gz', np.zeros([5, 32, 32, 3], np.uint8), np.arange(5))
    code, out, err = run_cli_inprocess(dataset_tool.main, [
        '--source', str(tmp_path / 'cifar-10-python.tar.gz'), '--dest', str(tmp_path / 'o.zip'), f'{flag}=2'], capsys)
    assert code == 0, err
    assert _dataset(tmp_path / 'o.zip')[1].tolist() == [0, 1]


@pytest.mark.parametrize('args, message', [
    (['--width', '16'], '--width and --height go together'),
    (['--width', '16', '--height', '16', '--resolution', '16x16'], '--resolution'),
    (['--resize-filter', 'bicubic'], '--resize-filter'),
])
def test_flag_errors(tmp_path, capsys, args, message):
    _write_cifar10(tmp_path / 'cifar-10-python.tar.gz', np.zeros([5, 32, 32, 3], np.uint8), np.zeros(5, int))
    code, out, err = run_cli_inprocess(dataset_tool.main, [
        '--source', str(tmp_path / 'cifar-10-python.tar.gz'), '--dest', str(tmp_path / 'o.zip'), *args], capsys)
    assert code != 0 and message in (out + err).strip().splitlines()[-1]
    assert not (tmp_path / 'o.zip').exists()

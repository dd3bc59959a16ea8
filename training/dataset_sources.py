"""Image sources that dataset_tool.py converts besides folders and zips, as the official tool does:
an LSUN LMDB folder, the CIFAR-10 python archive and the MNIST training set.

Each source offers what `training.dataset.ImageArchive` offers to the converter: sorted
`image_names`, `open(name)` (a binary file of an encoded image), `describe(name)`,
`read_labels()` (`{name: class index}` or None) and `close()`. `open_source(path)` picks the
reader from the path, with the official tool's rules:

| path | reader |
|---|---|
| a folder named `*_lmdb`, or holding `data.mdb` | LSUN LMDB: each value is an encoded image (WebP/JPEG), no labels |
| a file named `cifar-10-python.tar.gz` | CIFAR-10: the five training batches, 50000 RGB 32x32 images with class labels |
| a file named `train-images-idx3-ubyte.gz` | MNIST: 60000 gray 28x28 images padded to 32x32, labels from `train-labels-idx1-ubyte.gz` beside it |
| any other folder or zip | `ImageArchive` (PNG/JPEG files, labels from `dataset.json`) |

The CIFAR-10 batches are pickles: they are read with the allow-list unpickler of
`torch_utils.persistence` (numpy arrays, dicts, lists only; nothing named in them is imported).
"""

import gzip
import io
import os
import pickle
import tarfile

import numpy as np
import PIL.Image

from torch_utils import persistence
from training.dataset import DatasetError, ImageArchive

CIFAR10_NAME = 'cifar-10-python.tar.gz'
CIFAR10_BATCHES = [f'cifar-10-batches-py/data_batch_{i}' for i in range(1, 6)]
MNIST_IMAGES_NAME = 'train-images-idx3-ubyte.gz'
MNIST_LABELS_NAME = 'train-labels-idx1-ubyte.gz'
MNIST_PAD = 2  # 28x28 -> 32x32, zero border (as the official tool)


def open_source(path: str, what: str = '--source'):
    """The reader for `path` (see the module docstring); errors are one-line `DatasetError`s."""
    path = str(path)
    base = os.path.basename(os.path.normpath(path))
    if os.path.isdir(path) and (base.endswith('_lmdb') or os.path.isfile(os.path.join(path, 'data.mdb'))):
        return LmdbSource(path, what)
    if os.path.isfile(path) and base == CIFAR10_NAME:
        return ArraySource(path, what, *_read_cifar10(path, what))
    if os.path.isfile(path) and base == MNIST_IMAGES_NAME:
        return ArraySource(path, what, *_read_mnist(path, what))
    return ImageArchive(path, what=what)

# ---------------------------------------------------------------------------------------------


class ArraySource:
    """Images held in memory as uint8 `[N, H, W, C]` with int class labels; `open` encodes one as PNG."""

    def __init__(self, path: str, what: str, images: np.ndarray, labels: np.ndarray | None):
        self.path, self.what = path, what
        self.images, self.labels = images, labels
        self.image_names = [f'{i:08d}.png' for i in range(len(images))]
        self._index = {name: i for i, name in enumerate(self.image_names)}

    def open(self, name: str):
        image = self.images[self._index[name]]
        buffer = io.BytesIO()
        PIL.Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(buffer, format='PNG',
                                                                                    compress_level=0)
        buffer.seek(0)
        return buffer

    def describe(self, name: str) -> str:
        return f'{self.path}: image {self._index.get(name, name)}'

    def read_labels(self) -> dict | None:
        if self.labels is None:
            return None
        return {name: int(label) for name, label in zip(self.image_names, self.labels)}

    def close(self) -> None:
        pass


def _read_cifar10(path: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 `[50000, 32, 32, 3]` images and int64 labels of the five training batches."""
    images, labels = [], []
    try:
        with tarfile.open(path, 'r:gz') as tar:
            for member in CIFAR10_BATCHES:
                with tar.extractfile(member) as f:
                    unpickler = persistence.SafeUnpickler(f, f'{path}:{member}')
                    unpickler.encoding = 'latin1'  # written by Python 2 (byte strings)
                    batch = unpickler.load()
                data = np.asarray(batch['data'], dtype=np.uint8)
                images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
                labels.append(np.asarray(batch['labels'], dtype=np.int64))
    except KeyError as e:
        raise DatasetError(f'{what} {path}: not the CIFAR-10 python archive (missing {e}); download '
                           f'{CIFAR10_NAME} from the CIFAR-10 page and pass it unchanged') from None
    except (OSError, EOFError, tarfile.TarError, pickle.UnpicklingError, ValueError, TypeError) as e:
        raise DatasetError(f'{what} {path}: cannot read the CIFAR-10 archive ({type(e).__name__}: {e})') from None
    images, labels = np.concatenate(images), np.concatenate(labels)
    if len(images) != len(labels) or labels.min() < 0 or labels.max() > 9:
        raise DatasetError(f'{what} {path}: CIFAR-10 labels do not match the images (10 classes, one per image)')
    return images, labels


def _read_idx(path: str, magic: int, what: str) -> np.ndarray:
    """An MNIST idx file (gzip): big-endian int32 magic, dimension sizes, then uint8 data."""
    try:
        with gzip.open(path, 'rb') as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DatasetError(f'{what} {path}: cannot read ({type(e).__name__}: {e})') from None
    ndim = magic & 0xff
    header = np.frombuffer(data[:4 + 4 * ndim], dtype='>i4') if len(data) >= 4 + 4 * ndim else None
    if header is None or header[0] != magic:
        raise DatasetError(f'{what} {path}: not an MNIST idx file (expected magic number {magic:#010x})')
    shape = [int(n) for n in header[1:]]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DatasetError(f'{what} {path}: {body.size} bytes of data for shape {shape}; the file is truncated')
    return body.reshape(shape)


def _read_mnist(path: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 `[N, 32, 32, 1]` zero-padded digits and their labels (from the labels file beside them)."""
    labels_path = os.path.join(os.path.dirname(path), MNIST_LABELS_NAME)
    if not os.path.isfile(labels_path):
        raise DatasetError(f'{what} {path}: the labels file {labels_path} is missing; put {MNIST_LABELS_NAME} '
                           f'beside {MNIST_IMAGES_NAME}')
    images = _read_idx(path, 0x00000803, what)
    labels = _read_idx(labels_path, 0x00000801, what).astype(np.int64)
    if len(images) != len(labels):
        raise DatasetError(f'{what} {path}: {len(images)} images but {len(labels)} labels in {labels_path}')
    images = np.pad(images, [(0, 0), (MNIST_PAD, MNIST_PAD), (MNIST_PAD, MNIST_PAD)])
    return images[:, :, :, None], labels

# ---------------------------------------------------------------------------------------------


class LmdbSource:
    """An LSUN LMDB folder (e.g. `bedroom_train_lmdb`): every value is one encoded image."""

    def __init__(self, path: str, what: str):
        try:
            import lmdb
        except ImportError:
            raise DatasetError(f'{what} {path} is an LMDB folder; reading it needs the lmdb package: '
                               f'pip install lmdb') from None
        self.path, self.what = path, what
        try:
            self._env = lmdb.open(path, readonly=True, lock=False, readahead=False, max_readers=1)
            with self._env.begin(write=False) as txn:
                keys = [bytes(key) for key, _ in txn.cursor()]
        except lmdb.Error as e:
            raise DatasetError(f'{what} {path}: cannot read the LMDB database ({type(e).__name__}: {e})') from None
        self._keys = {key.decode('ascii', 'backslashreplace'): key for key in keys}
        self.image_names = sorted(self._keys)

    def open(self, name: str):
        with self._env.begin(write=False) as txn:
            return io.BytesIO(txn.get(self._keys[name]))

    def describe(self, name: str) -> str:
        return f'{self.path}: key {name}'

    def read_labels(self) -> None:
        return None

    def close(self) -> None:
        self._env.close()

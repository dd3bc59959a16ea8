"""Image datasets in the official StyleGAN2-ADA layout (a directory or a zip of PNG/JPEG files plus
an optional `dataset.json` with labels), a deterministic resumable infinite sampler, and a writer
for such archives (used by `dataset_tool.py` and the synthetic test data).

`dataset.json` holds `{"labels": [[relative/path.png, label], ...]}` with `label` an int (class
index, returned one-hot) or a list of numbers (returned as float32), or `{"labels": null}`.
Every problem with the data is a `DatasetError` whose one-line message names the path and the fix.
"""

import io
import json
import os
import shutil
import zipfile

import numpy as np
import PIL.Image
import torch

import dnnlib

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')  # Compared case-insensitively.
_CHANNELS_BY_MODE = {'L': 1, 'RGB': 3}        # PIL modes we read as-is; anything else is rejected.


MAX_CLASS_LABEL = 2**16 - 1        # Largest class index in dataset.json (labels become one-hot vectors).
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)  # Read by zipfile.


class DatasetError(dnnlib.util.UserError, ValueError):
    """Bad training data or dataset options; the message is meant for the user as it is.

    Always one line: text from the data cannot break it, and when a DataLoader worker re-raises
    one in the main process (as "Caught DatasetError in DataLoader worker ...\n<traceback>"), only
    the original message is kept.
    """

    def __init__(self, message: str = ''):
        message = str(message)
        if message.startswith('Caught DatasetError') and 'DatasetError: ' in message:
            message = message.rstrip().rsplit('DatasetError: ', 1)[1]
        super().__init__(dnnlib.util.one_line(message))

# ---------------------------------------------------------------------------------------------
# Reading a directory or a zip archive.


class ImageArchive:
    """Read access to the images of a directory (searched recursively) or a zip archive.

    Names are relative paths with '/' separators, sorted. Pickles without the open zip handle, so
    DataLoader workers each reopen it.
    """

    def __init__(self, path: str, what: str = '--data'):
        self.path = str(path)
        self.what = what  # Flag or role named in error messages.
        self._zipfile = None  # Opened on first use (per process).
        self._zipfile_pid = None
        if not os.path.exists(self.path):
            raise DatasetError(f'{what} {self.path}: no such file or directory')
        if os.path.isdir(self.path):
            self.kind = 'dir'
            names = []
            for root, _dirs, files in os.walk(self.path):
                names += [os.path.relpath(os.path.join(root, f), self.path).replace(os.sep, '/') for f in files]
        elif zipfile.is_zipfile(self.path):
            self.kind = 'zip'
            names = self._check_zip_directory()
        else:
            raise DatasetError(f'{what} {self.path}: not a directory or a .zip archive')
        self.all_names = set(names)
        self.image_names = sorted(n for n in names if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS)

    def _check_zip_directory(self) -> list[str]:
        """Member names of the zip, after checking its directory: readable, every member stored with
        a compression method zipfile reads, none encrypted."""
        try:
            infos = self._zip().infolist()
        except Exception as e:  # BadZipFile, OSError, EOFError, struct.error, ...: the directory bytes are damaged.
            raise DatasetError(f'{self.what} {self.path}: the zip directory is damaged ({type(e).__name__}: {e}); '
                               f'recreate the archive (e.g. with dataset_tool.py)') from None
        for info in infos:
            if info.compress_type not in _ZIP_METHODS:
                raise DatasetError(f'{self.path}:{info.filename}: zip compression method {info.compress_type} is not '
                                   f'supported (use stored or deflate); recreate the archive with dataset_tool.py')
            if info.flag_bits & 0x1:
                raise DatasetError(f'{self.path}:{info.filename}: the member is encrypted; '
                                   f'recreate the archive without a password')
        return [info.filename for info in infos]

    def _zip(self) -> zipfile.ZipFile:
        # One handle per process: a handle inherited through fork shares its file offset with the
        # parent, so DataLoader workers reading through it would corrupt each other's reads.
        if self._zipfile is None or self._zipfile_pid != os.getpid():
            self._zipfile = zipfile.ZipFile(self.path)
            self._zipfile_pid = os.getpid()
        return self._zipfile

    def __getstate__(self) -> dict:
        return {**self.__dict__, '_zipfile': None}  # reopened where it is unpickled (spawned workers)

    def open(self, name: str):
        """Binary file object for the member `name`."""
        if self.kind == 'dir':
            return open(os.path.join(self.path, name), 'rb')
        return self._zip().open(name, 'r')

    def describe(self, name: str) -> str:
        """`name` as the user would find it (a path, or archive.zip:member)."""
        if self.kind == 'dir':
            return os.path.join(self.path, name)
        return f'{self.path}:{name}'

    def read_labels(self) -> dict | None:
        """`{image name: label}` from `dataset.json`, or None when it is absent or says null."""
        if 'dataset.json' not in self.all_names:
            return None
        where = self.describe('dataset.json')
        try:
            with self.open('dataset.json') as f:
                text = f.read()
        except Exception as e:  # OSError, BadZipFile, zlib.error, EOFError, ...: the file's bytes are damaged.
            raise DatasetError(f'{where}: cannot read the file ({type(e).__name__}: {e})') from None
        try:
            meta = json.loads(text)
        except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors.
            raise DatasetError(f'{where}: not valid JSON, or nested too deeply ({type(e).__name__}: {e})') from None
        if not isinstance(meta, dict) or 'labels' not in meta:
            raise DatasetError(f'{where}: expected an object with a "labels" key')
        labels = meta['labels']
        if labels is None:
            return None
        if not isinstance(labels, list) or not all(isinstance(e, list) and len(e) == 2 and isinstance(e[0], str)
                                                   for e in labels):
            raise DatasetError(f'{where}: "labels" must be null or a list of [file name, label] pairs')
        return {fname.replace('\\', '/'): label for fname, label in labels}

    def close(self) -> None:
        if self._zipfile is not None:
            self._zipfile.close()
        self._zipfile = None

    def __getstate__(self):
        return dict(self.__dict__, _zipfile=None)


def image_header(archive: ImageArchive, name: str) -> tuple[int, int, str]:
    """(width, height, PIL mode) of one image, reading only its header. A header claiming more
    pixels than PIL's decompression-bomb limit (`PIL.Image.MAX_IMAGE_PIXELS`) is an error."""
    try:
        with archive.open(name) as f:
            with PIL.Image.open(f) as img:
                return img.size[0], img.size[1], img.mode
    except PIL.Image.DecompressionBombError as e:
        raise DatasetError(f'{archive.describe(name)}: image header claims too many pixels ({e}); '
                           f'remove the file or shrink the image') from None
    except Exception as e:  # PIL and zipfile raise many types (OSError, SyntaxError, BadZipFile, ...).
        raise DatasetError(f'{archive.describe(name)}: cannot read image ({type(e).__name__}: {e})') from None


def decode_image(archive: ImageArchive, name: str) -> np.ndarray:
    """All pixels of one image as uint8 [H, W] or [H, W, C]; a one-line DatasetError naming the
    file when they cannot be decoded (damaged data, zip CRC error, bomb-sized header)."""
    try:
        with archive.open(name) as f:
            with PIL.Image.open(f) as img:
                return np.array(img)
    except Exception as e:  # Any decoding failure of file data is the data's problem, not ours.
        raise DatasetError(f'{archive.describe(name)}: cannot decode image ({type(e).__name__}: {e})') from None


def labels_to_array(values: list, names: list[str], where: str) -> np.ndarray:
    """dataset.json labels of `names` -> int64 [N] class indices in [0, MAX_CLASS_LABEL], or
    float32 [N, D] finite vectors. Anything else is a one-line DatasetError naming `where` and
    the first bad item."""
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        for name, v in zip(names, values):
            if not 0 <= v <= MAX_CLASS_LABEL:
                raise DatasetError(f'{where}: class label of {name} is {v}; class labels must be integers in '
                                   f'[0, {MAX_CLASS_LABEL}]')
        return np.array(values, dtype=np.int64)
    vector_rule = 'labels must all be integers (classes) or all lists of numbers of the same length'
    for name, v in zip(names, values):
        if not isinstance(v, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            raise DatasetError(f'{where}: label of {name} is not a list of numbers; {vector_rule}')
    try:
        with np.errstate(over='ignore'):
            array = np.array(values, dtype=np.float32)
    except (TypeError, ValueError, OverflowError):
        raise DatasetError(f'{where}: {vector_rule}') from None
    if array.ndim != 2:
        raise DatasetError(f'{where}: {vector_rule}')
    bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if bad.size:
        raise DatasetError(f'{where}: label of {names[bad[0]]} is not finite in float32 (NaN, inf or beyond '
                           f'+-3.4e38; {bad.size} such label(s)); fix the labels')
    return array


def is_power_of_two(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0

# ---------------------------------------------------------------------------------------------


class Dataset(torch.utils.data.Dataset):
    """Base class: index bookkeeping (max_size subset, x-flip doubling) and labels.

    Subclasses provide `_load_raw_image(raw_idx) -> uint8 [C, H, W]` and `_load_raw_labels() ->
    array or None` (int64 [N] class indices or float32 [N, D]).
    """

    def __init__(self,
        name: str,                  # Name of the dataset (file name without extension).
        raw_shape: list,            # [num_images, C, H, W] of the stored images.
        max_size: int = None,       # Use a random subset of at most this many images; None = all.
        use_labels: bool = False,   # Return labels (--cond); else every label is a [0] array.
        xflip: bool = False,        # Append an x-flipped copy of every image (--mirror), doubling len.
        random_seed: int = 0,       # Seed of the max_size subset.
    ):
        if max_size is not None and int(max_size) < 1:
            raise DatasetError(f'max_size must be at least 1 (or None for all images), got {max_size}')
        self._name = name
        self._raw_shape = list(raw_shape)
        self._use_labels = bool(use_labels)
        self._raw_labels = None
        self._label_shape = None

        # Deterministic subset: a seeded shuffle, then back to file order.
        self._raw_idx = np.arange(self._raw_shape[0], dtype=np.int64)
        if max_size is not None and self._raw_idx.size > max_size:
            rnd = np.random.RandomState(random_seed)
            self._raw_idx = np.sort(rnd.permutation(self._raw_idx)[:max_size])

        # The mirrored half: item k + n shows item k flipped.
        self._xflip = np.zeros(self._raw_idx.size, dtype=np.uint8)
        if xflip:
            self._raw_idx = np.tile(self._raw_idx, 2)
            self._xflip = np.concatenate([self._xflip, np.ones_like(self._xflip)])

    def _get_raw_labels(self) -> np.ndarray:
        if self._raw_labels is None:
            labels = self._load_raw_labels() if self._use_labels else None
            if labels is None:
                labels = np.zeros([self._raw_shape[0], 0], dtype=np.float32)
            labels = np.asarray(labels)
            assert labels.shape[0] == self._raw_shape[0], 'one label per stored image'
            assert labels.dtype in (np.float32, np.int64), 'labels are float32 vectors or int64 classes'
            if labels.dtype == np.int64:
                assert labels.ndim == 1 and np.all(labels >= 0), 'class labels are non-negative ints'
            self._raw_labels = labels
        return self._raw_labels

    def close(self) -> None:
        """Release open files (optional)."""

    def _load_raw_image(self, raw_idx: int) -> np.ndarray:
        raise NotImplementedError

    def _load_raw_labels(self):
        raise NotImplementedError

    def __getstate__(self):
        return dict(self.__dict__, _raw_labels=None)

    def __len__(self) -> int:
        return self._raw_idx.size

    def __getitem__(self, idx: int) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 image [C, H, W], float32 label [label_dim]) of item `idx`."""
        image = self._load_raw_image(self._raw_idx[idx])
        assert isinstance(image, np.ndarray) and list(image.shape) == self.image_shape and image.dtype == np.uint8, \
            f'raw image {self._raw_idx[idx]} has shape {getattr(image, "shape", None)}, expected {self.image_shape}'
        if self._xflip[idx]:
            image = image[:, :, ::-1]
        return image.copy(), self.get_label(idx)

    def get_label(self, idx: int) -> np.ndarray:
        """float32 label of item `idx` (one-hot for class labels)."""
        label = self._get_raw_labels()[self._raw_idx[idx]]
        if label.dtype == np.int64:
            onehot = np.zeros(self.label_shape, dtype=np.float32)
            onehot[label] = 1
            label = onehot
        return label.copy()

    def get_details(self, idx: int) -> dict:
        """Where item `idx` comes from: raw index, whether it is mirrored, its raw label."""
        return dict(raw_idx=int(self._raw_idx[idx]), xflip=bool(self._xflip[idx]),
                    raw_label=self._get_raw_labels()[self._raw_idx[idx]].copy())

    @property
    def name(self) -> str:
        return self._name

    @property
    def image_shape(self) -> list:
        """[C, H, W]."""
        return list(self._raw_shape[1:])

    @property
    def num_channels(self) -> int:
        return self.image_shape[0]

    @property
    def resolution(self) -> int:
        assert self.image_shape[1] == self.image_shape[2], 'square images'
        return self.image_shape[1]

    @property
    def label_shape(self) -> list:
        if self._label_shape is None:
            raw = self._get_raw_labels()
            self._label_shape = [int(raw.max()) + 1] if raw.dtype == np.int64 else list(raw.shape[1:])
        return list(self._label_shape)

    @property
    def label_dim(self) -> int:
        assert len(self.label_shape) == 1, 'labels are vectors'
        return self.label_shape[0]

    @property
    def has_labels(self) -> bool:
        return any(x != 0 for x in self.label_shape)

    @property
    def has_onehot_labels(self) -> bool:
        return self._get_raw_labels().dtype == np.int64

# ---------------------------------------------------------------------------------------------


class ImageFolderDataset(Dataset):
    """PNG/JPEG images from a directory (recursively) or a zip, e.g. written by dataset_tool.py.

    All images are checked up front (headers only): same size, square, power-of-two resolution,
    1 (grayscale) or 3 (RGB) channels, and labels present when `use_labels` is set.
    """

    def __init__(self,
        path: str,                  # Directory or .zip archive.
        resolution: int = None,     # Expected resolution; None = take it from the data.
        use_labels: bool = False,   # Read labels from dataset.json (--cond); an error when it has none.
        max_size: int = None,       # Use a random subset of at most this many images; None = all.
        xflip: bool = False,        # Append x-flipped copies (--mirror), doubling len.
        random_seed: int = 0,       # Seed of the max_size subset.
    ):
        self._path = str(path)
        self._archive = ImageArchive(self._path)
        self._image_fnames = self._archive.image_names
        if len(self._image_fnames) == 0:
            raise DatasetError(f'--data {self._path}: no PNG or JPEG images found (searched recursively)')
        channels, height, width = self._check_images(resolution)
        name = os.path.splitext(os.path.basename(os.path.normpath(self._path)))[0]
        super().__init__(name=name, raw_shape=[len(self._image_fnames), channels, height, width],
                         max_size=max_size, use_labels=use_labels, xflip=xflip, random_seed=random_seed)
        if self._use_labels:
            self._get_raw_labels()  # Fail now, not in the first training step.

    def _check_images(self, resolution) -> tuple[int, int, int]:
        """Scan every header; return (channels, height, width) or raise a one-line DatasetError."""
        first = None
        for fname in self._image_fnames:
            w, h, mode = image_header(self._archive, fname)
            if mode not in _CHANNELS_BY_MODE:
                raise DatasetError(
                    f'{self._archive.describe(fname)}: image mode {mode} is not supported; images must have 1 '
                    f'(grayscale, mode L) or 3 (RGB) channels: convert the data with dataset_tool.py')
            if first is None:
                first = (fname, w, h, mode)
                continue
            fname0, w0, h0, mode0 = first
            if (w, h) != (w0, h0):
                raise DatasetError(
                    f'--data {self._path}: images have different resolutions: {fname0} is {w0}x{h0} but '
                    f'{fname} is {w}x{h}; resize them all with dataset_tool.py --resolution')
            if _CHANNELS_BY_MODE[mode] != _CHANNELS_BY_MODE[mode0]:
                raise DatasetError(
                    f'--data {self._path}: images have different channel counts: {fname0} is {mode0} but '
                    f'{fname} is {mode}; convert them with dataset_tool.py')
        fname0, w, h, mode = first
        if w != h:
            raise DatasetError(f'--data {self._path}: images must be square, but they are {w}x{h} (e.g. {fname0}); '
                               f'use dataset_tool.py --transform center-crop --resolution')
        if not is_power_of_two(w):
            raise DatasetError(f'--data {self._path}: image resolution {w}x{h} is not a power of two; '
                               f'resize with dataset_tool.py --resolution')
        if resolution is not None and resolution != w:
            raise DatasetError(f'--data {self._path}: images are {w}x{h}, but resolution {resolution} was requested')
        return _CHANNELS_BY_MODE[mode], h, w

    def _load_raw_image(self, raw_idx: int) -> np.ndarray:
        fname = self._image_fnames[raw_idx]
        image = decode_image(self._archive, fname)
        if image.ndim == 2:
            image = image[:, :, np.newaxis]  # HW => HWC
        image = image.transpose(2, 0, 1)     # HWC => CHW
        if list(image.shape) != self.image_shape or image.dtype != np.uint8:
            raise DatasetError(f'{self._archive.describe(fname)}: decodes to {image.dtype} {list(image.shape)} '
                               f'(CHW), but the dataset is uint8 {self.image_shape}; convert it with dataset_tool.py')
        return image

    def _load_raw_labels(self) -> np.ndarray:
        labels = self._archive.read_labels()
        where = self._archive.describe('dataset.json')
        if labels is None:
            raise DatasetError(f'--cond requires dataset.json labels, but {self._path} has none '
                               f'(no dataset.json, or "labels": null); drop --cond or add labels')
        missing = [f for f in self._image_fnames if f not in labels]
        if missing:
            raise DatasetError(f'{where}: no label for {len(missing)} image(s), e.g. {missing[0]}')
        return labels_to_array([labels[f] for f in self._image_fnames], self._image_fnames, where)

    def close(self) -> None:
        self._archive.close()

# ---------------------------------------------------------------------------------------------


class InfiniteSampler(torch.utils.data.Sampler):
    """Endless, deterministic stream of dataset indices, split between replicas, resumable.

    The shared stream walks a shuffled order cyclically; after each step, the item just visited is
    swapped with a random one at most `window_size * len(dataset)` places earlier, so the order
    keeps changing from pass to pass without epoch boundaries. Replica `rank` takes the stream's
    steps `rank, rank + num_replicas, ...`.

    Position: `start_index` (and `sampler_from(position)`) counts the items **this replica has
    already yielded**. A sampler started at position P yields exactly what a fresh one yields after
    its first P items. Starting at P replays the swaps of the first P * num_replicas steps (about 0.2 s
    per million steps on one CPU core), so no sampler state needs to be saved besides P; for a training
    run, P = images consumed by this rank = cur_nimg // num_replicas.
    """

    _DRAW_CHUNK = 4096  # Random swap offsets are drawn in blocks of this many steps.

    def __init__(self,
        dataset,                    # Anything with len(); only its length is used.
        rank: int = 0,              # This replica's index.
        num_replicas: int = 1,      # Number of replicas sharing the stream.
        shuffle: bool = True,       # False: 0, 1, 2, ... cyclically.
        seed: int = 0,              # Seed of the initial order and of the swaps.
        window_size: float = 0.5,   # Swap window as a fraction of the dataset (0 = fixed order).
        start_index: int = 0,       # Items this replica has already yielded (see class doc).
    ):
        size = len(dataset)
        if size < 1:
            raise DatasetError('InfiniteSampler: the dataset is empty')
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f'InfiniteSampler: need 0 <= rank < num_replicas, got rank={rank}, num_replicas={num_replicas}')
        if not 0 <= window_size <= 1:
            raise ValueError(f'InfiniteSampler: window_size must be in [0, 1], got {window_size}')
        if start_index < 0:
            raise ValueError(f'InfiniteSampler: start_index must be >= 0, got {start_index}')
        super().__init__()
        self.dataset_size = size
        self.rank = int(rank)
        self.num_replicas = int(num_replicas)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.window_size = float(window_size)
        self.start_index = int(start_index)

    def sampler_from(self, position: int) -> 'InfiniteSampler':
        """The same stream, starting after this replica's first `position` items."""
        return InfiniteSampler(range(self.dataset_size), rank=self.rank, num_replicas=self.num_replicas,
                               shuffle=self.shuffle, seed=self.seed, window_size=self.window_size,
                               start_index=position)

    def __iter__(self):
        n = self.dataset_size
        order = list(range(n))
        window = 0
        if self.shuffle:
            order = np.random.RandomState(self.seed).permutation(n).tolist()
            window = int(np.rint(n * self.window_size))
        draws = np.random.default_rng([self.seed, 1])  # Independent of the initial permutation.
        step = 0
        skip = self.start_index * self.num_replicas  # Steps replayed without yielding.
        while True:
            offsets = draws.integers(0, window, size=self._DRAW_CHUNK).tolist() if window >= 2 else None
            for k in range(self._DRAW_CHUNK):
                i = step % n
                if step >= skip and step % self.num_replicas == self.rank:
                    yield order[i]
                if offsets is not None:
                    j = (i - offsets[k]) % n
                    order[i], order[j] = order[j], order[i]
                step += 1

# ---------------------------------------------------------------------------------------------
# Full scan (dataset_tool.py --check).


def scan_dataset(path: str, what: str = '--check') -> tuple[int, list[str]]:
    """Read every item of the dataset at `path` completely: the archive's directory, every image
    (all bytes, so a zip CRC error shows, then every pixel), dataset.json and its labels.

    Returns (items checked, one-line problems). Images must agree with the first one in size and
    channel count, as `ImageFolderDataset` requires.
    """
    try:
        archive = ImageArchive(path, what=what)
    except DatasetError as e:
        return 0, [str(e)]
    problems, first, checked = [], None, 0
    try:
        for name in archive.image_names:
            checked += 1
            try:
                shape = _scan_image(archive, name)
            except DatasetError as e:
                problems.append(str(e))
                continue
            first = first or (name, shape)
            if shape != first[1]:
                problems.append(f'{archive.describe(name)}: image is {shape[1]}x{shape[0]} with {shape[2]} channel(s), '
                                f'but {first[0]} is {first[1][1]}x{first[1][0]} with {first[1][2]}')
        if not archive.image_names:
            problems.append(f'{what} {path}: no PNG or JPEG images found (searched recursively)')
        if 'dataset.json' in archive.all_names:
            checked += 1
            problems += _scan_labels(archive)
    finally:
        archive.close()
    return checked, problems


def _scan_image(archive: ImageArchive, name: str) -> tuple[int, int, int]:
    """(H, W, C) of one fully decoded image; DatasetError naming it when anything is wrong."""
    width, height, mode = image_header(archive, name)
    if mode not in _CHANNELS_BY_MODE:
        raise DatasetError(f'{archive.describe(name)}: image mode {mode} is not supported (1 or 3 channels)')
    try:
        with archive.open(name) as f:
            data = f.read()  # To the end: zipfile checks the CRC there.
        with PIL.Image.open(io.BytesIO(data)) as img:
            pixels = np.array(img)
    except Exception as e:  # Damaged file data in any way PIL or zipfile can report it.
        raise DatasetError(f'{archive.describe(name)}: cannot decode image ({type(e).__name__}: {e})') from None
    shape = (*pixels.shape[:2], 1 if pixels.ndim == 2 else pixels.shape[2])
    if shape != (height, width, _CHANNELS_BY_MODE[mode]) or pixels.dtype != np.uint8:
        raise DatasetError(f'{archive.describe(name)}: decodes to {pixels.dtype} {list(pixels.shape)}, but its header '
                           f'says {width}x{height} {mode}')
    return shape


def _scan_labels(archive: ImageArchive) -> list[str]:
    where = archive.describe('dataset.json')
    try:
        labels = archive.read_labels()
        if labels is None:
            return []
        missing = [n for n in archive.image_names if n not in labels]
        if missing:
            return [f'{where}: no label for {len(missing)} image(s), e.g. {missing[0]}']
        labels_to_array([labels[n] for n in archive.image_names], archive.image_names, where)
    except DatasetError as e:
        return [str(e)]
    return []

# ---------------------------------------------------------------------------------------------
# Writing archives in the official layout.


class DatasetWriter:
    """Writes `00000/img00000000.png`, `00000/img00000001.png`, ... and `dataset.json` into a .zip
    or a directory, atomically: everything goes to a temporary sibling that is renamed into place
    on `close()`; on error (`abort()`, or an exception inside a `with` block) nothing is left.

    Refuses an existing .zip and a non-empty directory as the destination.
    """

    def __init__(self, dest: str, what: str = '--dest'):
        self.dest = os.path.abspath(str(dest))
        self.is_zip = self.dest.lower().endswith('.zip')
        if self.is_zip and os.path.exists(self.dest):
            raise DatasetError(f'{what} {dest}: already exists; remove it or choose another name')
        if not self.is_zip and os.path.isfile(self.dest):
            raise DatasetError(f'{what} {dest}: is a file; give a directory or a .zip path')
        if not self.is_zip and os.path.isdir(self.dest) and os.listdir(self.dest):
            raise DatasetError(f'{what} {dest}: directory is not empty; remove it or choose another path')
        parent = os.path.dirname(self.dest)
        # Folders made for the destination, deepest first: abort() removes them again, so a failed
        # conversion leaves nothing behind.
        self._new_parents = []
        folder = parent
        while not os.path.exists(folder) and os.path.dirname(folder) != folder:
            self._new_parents.append(folder)
            folder = os.path.dirname(folder)
        try:
            os.makedirs(parent, exist_ok=True)
            # Built beside the destination, renamed over it by close(); default modes (not 0o600).
            if self.is_zip:
                self._tmp = dnnlib.util.create_temp_file_beside(self.dest)
                self._zip = zipfile.ZipFile(self._tmp, 'w', compression=zipfile.ZIP_STORED)
            else:
                self._tmp = dnnlib.util.create_temp_dir_beside(self.dest)
        except OSError as e:
            self._remove_new_parents()
            raise DatasetError(f'{what} {dest}: cannot write there ({e.strerror or e}); choose another path') from None
        self._labels = []
        self._closed = False

    def _write(self, name: str, data: bytes) -> None:
        if self.is_zip:
            self._zip.writestr(name, data)
        else:
            path = os.path.join(self._tmp, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'wb') as f:
                f.write(data)

    def add_image(self, image: np.ndarray, label=None) -> str:
        """Append one uint8 image, [H, W] or [H, W, 1|3]; `label` an int, a list of numbers, or None.
        Returns its name in the archive."""
        assert image.dtype == np.uint8 and image.ndim in (2, 3), 'uint8 [H, W] or [H, W, C] image'
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        idx = len(self._labels)
        name = f'{idx // 1000:05d}/img{idx:08d}.png'
        buf = io.BytesIO()
        PIL.Image.fromarray(image).save(buf, format='png')
        self._write(name, buf.getvalue())
        self._labels.append([name, label])
        return name

    def close(self) -> str:
        """Write dataset.json (labels null unless every image has one) and move into place."""
        if any(label is None for _, label in self._labels):
            if any(label is not None for _, label in self._labels):
                self.abort()
                raise DatasetError(f'{self.dest}: either every image or no image must have a label')
            labels = None
        else:
            labels = self._labels
        self._write('dataset.json', json.dumps({'labels': labels}).encode('utf-8'))
        if self.is_zip:
            self._zip.close()
        if not self.is_zip and os.path.isdir(self.dest):
            os.rmdir(self.dest)  # Checked empty in the constructor; rename cannot replace it otherwise.
        os.replace(self._tmp, self.dest)
        self._closed = True
        return self.dest

    def abort(self) -> None:
        """Discard everything written so far."""
        if self._closed:
            return
        self._closed = True
        if self.is_zip:
            self._zip.close()
            os.remove(self._tmp)
        else:
            shutil.rmtree(self._tmp, ignore_errors=True)
        self._remove_new_parents()

    def _remove_new_parents(self) -> None:
        for folder in self._new_parents:
            try:
                os.rmdir(folder)  # Only while empty.
            except OSError:
                return

    def __len__(self) -> int:
        return len(self._labels)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        elif not self._closed:
            self.close()

"""ImageFolderDataset (dir and zip, labels, mirror, max_size, checks), InfiniteSampler (exact
resume, replicas), the archive writer and the synthetic data generator."""

import itertools
import json
import os
import pickle
import zipfile

import numpy as np
import PIL.Image
import torch
import pytest

from training.dataset import DatasetError, DatasetWriter, ImageFolderDataset, InfiniteSampler
from training.synthetic_data import make_synthetic_dataset


def _save(path, size, mode='RGB', value=128):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    PIL.Image.new(mode, size, value if mode == 'L' else (value, 0, 255 - value)[:len(mode)]).save(path)


@pytest.fixture(scope='module')
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp('synth')
    zip_path = make_synthetic_dataset(str(root / 'shapes.zip'), num_images=12, resolution=16, seed=3, labels=True)
    dir_path = make_synthetic_dataset(str(root / 'shapes_dir'), num_images=12, resolution=16, seed=3, labels=True)
    return zip_path, dir_path

# ---------------------------------------------------------------------------------------------


def test_properties_items_and_official_layout(synth):
    zip_path, dir_path = synth
    names = zipfile.ZipFile(zip_path).namelist()
    assert '00000/img00000000.png' in names and '00000/img00000011.png' in names and 'dataset.json' in names
    ds = ImageFolderDataset(zip_path, use_labels=True)
    assert len(ds) == 12 and ds.name == 'shapes'
    assert ds.image_shape == [3, 16, 16] and ds.num_channels == 3 and ds.resolution == 16
    assert ds.label_shape == [4] and ds.label_dim == 4 and ds.has_labels and ds.has_onehot_labels
    image, label = ds[5]
    assert image.dtype == np.uint8 and image.shape == (3, 16, 16)
    assert label.dtype == np.float32 and label.tolist() == [0, 1, 0, 0]  # Class 5 % 4.
    # The directory copy holds the same pixels and labels.
    ds_dir = ImageFolderDataset(dir_path, use_labels=True, resolution=16)
    for idx in range(12):
        np.testing.assert_array_equal(ds[idx][0], ds_dir[idx][0])
        np.testing.assert_array_equal(ds[idx][1], ds_dir[idx][1])
    # Without --cond the labels are empty even though dataset.json has some.
    plain = ImageFolderDataset(zip_path)
    assert plain.label_shape == [0] and not plain.has_labels and plain[0][1].shape == (0,)


def test_xflip_doubles_and_mirrors(synth):
    ds = ImageFolderDataset(synth[0], xflip=True)
    assert len(ds) == 24
    for idx in (0, 7):
        np.testing.assert_array_equal(ds[idx + 12][0], ds[idx][0][:, :, ::-1])
        assert ds.get_details(idx + 12)['xflip'] and not ds.get_details(idx)['xflip']


def test_max_size_is_a_deterministic_subset(synth):
    subset = lambda seed: [ImageFolderDataset(synth[0], max_size=5, random_seed=seed).get_details(i)['raw_idx']
                           for i in range(5)]
    a = subset(0)
    assert len(set(a)) == 5 and a == sorted(a) and a == subset(0)
    assert any(subset(s) != a for s in (1, 2, 3))
    assert len(ImageFolderDataset(synth[0], max_size=100)) == 12
    with pytest.raises(DatasetError, match='max_size'):
        ImageFolderDataset(synth[0], max_size=0)


def test_vector_labels_and_grayscale(tmp_path):
    for i in range(3):
        _save(str(tmp_path / 'g' / f'sub/{i}.png'), (8, 8), mode='L', value=40 * i)
    with open(tmp_path / 'g' / 'dataset.json', 'w') as f:
        json.dump({'labels': [[f'sub/{i}.png', [i, 0.5]] for i in range(3)]}, f)
    ds = ImageFolderDataset(str(tmp_path / 'g'), use_labels=True)
    assert ds.image_shape == [1, 8, 8] and ds.label_shape == [2] and not ds.has_onehot_labels
    image, label = ds[2]
    assert image.shape == (1, 8, 8) and image[0, 0, 0] == 80
    assert label.dtype == np.float32 and label.tolist() == [2.0, 0.5]


def test_dataset_pickles_for_worker_processes(synth):
    ds = ImageFolderDataset(synth[0], use_labels=True)
    first = ds[0]
    clone = pickle.loads(pickle.dumps(ds))  # Without the open zip handle.
    np.testing.assert_array_equal(clone[0][0], first[0])
    np.testing.assert_array_equal(clone[0][1], first[1])

# ---------------------------------------------------------------------------------------------
# Errors: one line, naming the path and the fix.


def _error(path, **kwargs) -> str:
    with pytest.raises(DatasetError) as info:
        ImageFolderDataset(str(path), **kwargs)
    message = str(info.value)
    assert '\n' not in message
    return message


def test_errors_name_the_problem(tmp_path, synth):
    assert 'no such file' in _error(tmp_path / 'missing.zip')
    (tmp_path / 'empty').mkdir()
    assert 'no PNG or JPEG images' in _error(tmp_path / 'empty')

    _save(str(tmp_path / 'mixed/a.png'), (16, 16))
    _save(str(tmp_path / 'mixed/b.png'), (32, 32))
    message = _error(tmp_path / 'mixed')
    assert 'a.png is 16x16' in message and 'b.png is 32x32' in message

    _save(str(tmp_path / 'wide/a.png'), (32, 16))
    assert 'must be square' in _error(tmp_path / 'wide') and 'center-crop' in _error(tmp_path / 'wide')
    _save(str(tmp_path / 'odd/a.jpg'), (24, 24))
    assert 'not a power of two' in _error(tmp_path / 'odd')
    _save(str(tmp_path / 'rgba/a.png'), (16, 16), mode='RGBA')
    assert 'RGBA' in _error(tmp_path / 'rgba') and '1 (grayscale' in _error(tmp_path / 'rgba')
    _save(str(tmp_path / 'chan/a.png'), (16, 16), mode='L')
    _save(str(tmp_path / 'chan/b.png'), (16, 16), mode='RGB')
    assert 'different channel counts' in _error(tmp_path / 'chan')

    assert 'resolution 32 was requested' in _error(synth[0], resolution=32)
    _save(str(tmp_path / 'nolabel/a.png'), (16, 16))
    assert '--cond requires dataset.json labels' in _error(tmp_path / 'nolabel', use_labels=True)
    with zipfile.ZipFile(tmp_path / 'nolabels.zip', 'w') as z:
        z.write(tmp_path / 'mixed/a.png', 'x/a.png')
        z.writestr('dataset.json', '{"labels": null}')
    assert '--cond requires dataset.json labels' in _error(tmp_path / 'nolabels.zip', use_labels=True)
    assert len(ImageFolderDataset(str(tmp_path / 'nolabels.zip'))) == 1
    (tmp_path / 'notes.txt').write_text('hi')
    assert 'not a directory or a .zip' in _error(tmp_path / 'notes.txt')

# ---------------------------------------------------------------------------------------------
# Sampler.


def _take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


@pytest.mark.parametrize('size', [7, 37, 1000])
def test_sampler_resumes_exactly(size):
    sampler = InfiniteSampler(range(size), seed=5)
    stream = _take(sampler, 100)
    assert _take(sampler, 40) + _take(sampler.sampler_from(40), 60) == stream
    assert _take(InfiniteSampler(range(size), seed=5, start_index=40), 60) == stream[40:]
    assert _take(InfiniteSampler(range(size), seed=6), 100) != stream
    # Long runs: resuming after several draw blocks of swaps still matches.
    long = _take(sampler, 10_000)
    assert _take(sampler.sampler_from(9_000), 1_000) == long[9_000:]


def test_sampler_replicas_split_one_stream():
    single = _take(InfiniteSampler(range(37), seed=2), 300)
    ranks = [_take(InfiniteSampler(range(37), rank=r, num_replicas=3, seed=2), 100) for r in range(3)]
    assert [x for triple in zip(*ranks) for x in triple] == single
    resumed = InfiniteSampler(range(37), rank=1, num_replicas=3, seed=2).sampler_from(30)
    assert _take(resumed, 70) == ranks[1][30:]


def test_sampler_visits_every_item_and_order_modes():
    counts = np.bincount(_take(InfiniteSampler(range(50), seed=0), 5000), minlength=50)
    assert counts.min() > 50 and counts.max() < 150  # 100 on average.
    assert _take(InfiniteSampler(range(4), shuffle=False), 10) == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    fixed = _take(InfiniteSampler(range(10), seed=1, window_size=0), 20)
    assert fixed[:10] == fixed[10:] and sorted(fixed[:10]) == list(range(10))
    with pytest.raises(ValueError, match='rank'):
        InfiniteSampler(range(4), rank=2, num_replicas=2)

# ---------------------------------------------------------------------------------------------
# Writer and synthetic data.


def test_writer_is_atomic(tmp_path):
    dest = tmp_path / 'out.zip'
    with pytest.raises(RuntimeError):
        with DatasetWriter(str(dest)) as writer:
            writer.add_image(np.zeros([8, 8, 3], np.uint8))
            raise RuntimeError('interrupted')
    assert os.listdir(tmp_path) == []  # Neither the archive nor a temporary file.
    with pytest.raises(DatasetError, match='either every image or no image'):
        with DatasetWriter(str(tmp_path / 'dir')) as writer:
            writer.add_image(np.zeros([8, 8], np.uint8), label=1)
            writer.add_image(np.zeros([8, 8], np.uint8))
    assert os.listdir(tmp_path) == []
    make_synthetic_dataset(str(dest), 2, 8)
    with pytest.raises(DatasetError, match='already exists'):
        DatasetWriter(str(dest))


def test_synthetic_data_is_deterministic(tmp_path):
    a = make_synthetic_dataset(str(tmp_path / 'a'), 6, 16, seed=1, labels=True, num_classes=3)
    b = make_synthetic_dataset(str(tmp_path / 'b'), 6, 16, seed=1, labels=True, num_classes=3)
    c = make_synthetic_dataset(str(tmp_path / 'c'), 6, 16, seed=2, labels=False, channels=1)
    da, db, dc = ImageFolderDataset(a, use_labels=True), ImageFolderDataset(b, use_labels=True), ImageFolderDataset(c)
    assert all(np.array_equal(da[i][0], db[i][0]) for i in range(6))
    assert da.label_shape == [3] and [int(da[i][1].argmax()) for i in range(6)] == [0, 1, 2, 0, 1, 2]
    assert dc.image_shape == [1, 16, 16] and not dc.has_labels
    assert json.load(open(os.path.join(c, 'dataset.json'))) == {'labels': None}
    assert np.std(np.stack([da[i][0] for i in range(6)]).astype(float)) > 10  # Not blank images.


def test_zip_handles_are_per_process(tmp_path):
    """DataLoader workers forked after the first read must not share the parent's zip handle."""
    from training.synthetic_data import make_synthetic_dataset
    path = str(tmp_path / 'd.zip')
    make_synthetic_dataset(path, 16, 16, seed=0)
    dataset = ImageFolderDataset(path)
    reference = [dataset[i][0] for i in range(len(dataset))]  # opens the zip in this process
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2, shuffle=False)
    for _ in range(3):
        images = torch.cat([batch[0] for batch in loader]).numpy()
        np.testing.assert_array_equal(images, np.stack(reference))

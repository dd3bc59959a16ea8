"""metrics/prdc.py: precision, recall, density, coverage against the authors' `prdc` package,
closed-form cases, errors, and the registered metric on raw-pixel features."""

import numpy as np
import prdc  # The authors' package (a test dependency in requirements.txt).
import pytest
import torch

from metrics import metric_main
from metrics.prdc import compute_prdc
from training import synthetic_data
from training import dataset as dataset_module

pytestmark = pytest.mark.usefixtures('one_thread')

KEYS = ('precision', 'recall', 'density', 'coverage')


@pytest.mark.parametrize('num_real, num_fake, dim, k, shift', [(200, 150, 16, 5, 0.5), (120, 300, 64, 3, 0.0),
                                                               (80, 80, 2, 5, 2.0)])
def test_matches_prdc_package(num_real, num_fake, dim, k, shift):
    rng = np.random.RandomState(num_real + dim)
    real = rng.randn(num_real, dim).astype(np.float32)
    fake = (rng.randn(num_fake, dim) * 1.2 + shift).astype(np.float32)
    ours = compute_prdc(real, fake, nearest_k=k)
    theirs = prdc.compute_prdc(real_features=real, fake_features=fake, nearest_k=k)
    for key in KEYS:
        assert abs(ours[key] - float(theirs[key])) <= 1e-6, (key, ours[key], theirs[key])
    assert 0 < ours['coverage'] < 1 and 0 < ours['precision'] <= 1


def test_identical_sets_score_one_and_far_sets_zero():
    real = np.random.RandomState(0).randn(50, 8)
    assert compute_prdc(real, real.copy(), 5) == dict(precision=1.0, recall=1.0, density=1.0, coverage=1.0)
    far = compute_prdc(real, real + 100.0, 5)
    assert far == dict(precision=0.0, recall=0.0, density=0.0, coverage=0.0)


def test_density_counts_balls_on_a_line():
    # Real points 0..9 on a line, k = 1: every real radius is 1 (strict <). Fakes 4.5 and 4.51 lie
    # in the balls of 4 and 5 (2 each); fakes near 100 in none. M = 4 fakes: precision 2/4,
    # density (2 + 2) / (1 * 4) = 1, coverage 2/10 (reals 4 and 5).
    real = np.arange(10, dtype=np.float64)[:, None]
    fake = np.array([[4.5], [100.0]])
    r = compute_prdc(real, np.concatenate([fake, fake + 0.01]), nearest_k=1)
    assert r['precision'] == 0.5 and r['coverage'] == 0.2 and r['density'] == 1.0


def test_bad_inputs_raise_one_line_errors():
    with pytest.raises(ValueError, match='expected real'):
        compute_prdc(np.zeros([10, 3]), np.zeros([10, 4]))
    with pytest.raises(ValueError, match='nearest_k=5 needs more than 5'):
        compute_prdc(np.random.randn(5, 3), np.random.randn(10, 3))

# ---------------------------------------------------------------------------------------------
# The registered metric, raw-pixel features (no detector download).

RES, NUM_IMAGES = 16, 24


class ReplayGenerator(torch.nn.Module):
    """Returns the dataset's images in order (so fake features equal real ones)."""

    def __init__(self, path: str):
        super().__init__()
        ds = dataset_module.ImageFolderDataset(path=path)
        images = np.stack([ds[i][0] for i in range(len(ds))])
        # +0.5: the metrics' (x * 127.5 + 128) -> uint8 truncation gives back the pixel exactly.
        self.register_buffer('images', (torch.from_numpy(images).float() + 0.5 - 128) / 127.5)
        self.z_dim, self.c_dim, self.img_resolution, self.img_channels = 4, 0, RES, 3
        self.next_idx = 0

    def forward(self, z, c, **kwargs):
        idx = (torch.arange(len(z)) + self.next_idx) % len(self.images)
        self.next_idx += len(z)
        return self.images[idx]


def test_registered_prdc_tiny_on_pixels(tmp_path):
    assert 'prdc_tiny' in metric_main.list_valid_metrics() and 'prdc10k_full' in metric_main.list_valid_metrics()
    data = synthetic_data.make_synthetic_dataset(str(tmp_path / 'data.zip'), num_images=NUM_IMAGES, resolution=RES, seed=0)
    opts = dict(dataset_kwargs=dict(class_name='training.dataset.ImageFolderDataset', path=data, resolution=RES),
                device='cpu', progress=False, cache=False, num_workers=0, tiny_num_items=NUM_IMAGES,
                extra=dict(prdc_features='pixels'))
    replay = metric_main.calc_metric('prdc_tiny', G=ReplayGenerator(data), **opts).results
    assert replay == {f'prdc_tiny_{key}': 1.0 for key in KEYS}
    with pytest.raises(ValueError, match='--features'):
        metric_main.calc_metric('prdc_tiny', G=ReplayGenerator(data), **dict(opts, extra=dict(prdc_features='bogus')))


def test_calc_metrics_features_pixels(tmp_path):
    import calc_metrics
    from tiny_nets import snapshot_data, tiny_discriminator, tiny_generator
    from training.snapshot_io import save_network_pkl
    data = synthetic_data.make_synthetic_dataset(str(tmp_path / 'data.zip'), num_images=NUM_IMAGES, resolution=RES, seed=0)
    pkl = str(tmp_path / 'net.pkl')
    save_network_pkl(snapshot_data(tiny_generator(8, resolution=RES, seed=0), tiny_discriminator(resolution=RES)), pkl)
    results = calc_metrics.calc_metrics(pkl, metrics='prdc_tiny', data=data, verbose=False, cache=False, num_workers=0,
                                        tiny_items=NUM_IMAGES, features='pixels')
    values = results[0].results
    assert set(values) == {f'prdc_tiny_{key}' for key in KEYS}
    assert all(0 <= values[f'prdc_tiny_{key}'] <= 1 for key in ('precision', 'recall', 'coverage'))
    assert (tmp_path / 'metric-prdc_tiny.jsonl').is_file()

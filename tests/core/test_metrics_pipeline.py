"""End-to-end metric runs on a procedural dataset with tiny random feature networks: known
outcomes (a generator that replays the dataset has FID 0 and precision = recall = 1), the
real-statistics cache, progress reporting, calc_metrics.py, and two gloo processes."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import calc_metrics
import legacy
from conftest import REPO_ROOT, require_fixtures, scriptable_copy
from metrics import feature_networks
from metrics import kernel_inception_distance
from metrics import metric_main
from training import dataset as dataset_module
from training import synthetic_data

RES = 32
NUM_IMAGES = 40


pytestmark = pytest.mark.usefixtures('one_thread')

# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def data_zip(tmp_path_factory) -> str:
    return synthetic_data.make_synthetic_dataset(str(tmp_path_factory.mktemp('data') / 'shapes.zip'),
                                                 num_images=NUM_IMAGES, resolution=RES, seed=0)


@pytest.fixture
def random_detectors():
    """Random networks in place of Inception and VGG16 (nothing is downloaded)."""
    feature_networks.register_detector(feature_networks.INCEPTION_URL, feature_networks.RandomDetector(seed=0))
    feature_networks.register_detector(feature_networks.VGG16_URL, feature_networks.RandomDetector(seed=1))
    yield
    feature_networks.unregister_detector(feature_networks.INCEPTION_URL)
    feature_networks.unregister_detector(feature_networks.VGG16_URL)


def _dataset_kwargs(path: str) -> dict:
    return dict(class_name='training.dataset.ImageFolderDataset', path=path, resolution=RES, use_labels=False)


class ReplayGenerator(torch.nn.Module):
    """Returns the dataset's images in order, one pass per NUM_IMAGES generated images."""

    def __init__(self, path: str):
        super().__init__()
        ds = dataset_module.ImageFolderDataset(path=path)
        images = np.stack([ds[i][0] for i in range(len(ds))])
        # +0.5 so that the metrics' (x * 127.5 + 128) -> uint8 truncation gives back the pixel.
        self.register_buffer('images', (torch.from_numpy(images).to(torch.float32) + 0.5 - 128) / 127.5)
        self.z_dim, self.c_dim, self.img_resolution, self.img_channels = 4, 0, RES, 3
        self.next_idx = 0

    def forward(self, z, c, **kwargs):
        idx = (torch.arange(len(z)) + self.next_idx) % len(self.images)
        self.next_idx += len(z)
        return self.images[idx]


class ConstantGenerator(torch.nn.Module):
    """Every image is the same flat gray."""

    def __init__(self):
        super().__init__()
        self.z_dim, self.c_dim, self.img_resolution, self.img_channels = 4, 0, RES, 3

    def forward(self, z, c, **kwargs):
        return torch.zeros([len(z), 3, RES, RES]) + 0.1


def _calc(metric, G, data_zip, tmp_path, **kwargs):
    opts = dict(G=G, dataset_kwargs=_dataset_kwargs(data_zip), device='cpu', progress=False,
                cache_dir=str(tmp_path / 'cache'), num_workers=0, tiny_num_items=NUM_IMAGES)
    opts.update(kwargs)
    return metric_main.calc_metric(metric, **opts).results

# ---------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings('ignore:Matrix is singular')  # the constant images' covariance is 0
def test_replayed_dataset_scores_perfectly_and_constant_images_do_not(data_zip, tmp_path, random_detectors):
    replay, constant = ReplayGenerator(data_zip), ConstantGenerator()
    assert abs(_calc('fid_tiny', replay, data_zip, tmp_path)['fid_tiny']) < 1e-6
    fid_constant = _calc('fid_tiny', constant, data_zip, tmp_path)['fid_tiny']
    assert fid_constant > 1e-3

    assert _calc('pr_tiny', replay, data_zip, tmp_path) == dict(pr_tiny_precision=1.0, pr_tiny_recall=1.0)
    # A collapsed generator may well be precise (inside the real manifold), but it recalls nothing:
    # its manifold is one point with radius 0.
    assert _calc('pr_tiny', constant, data_zip, tmp_path)['pr_tiny_recall'] == 0.0

    # KID of a set against itself (every subset holds all m items): with S the sum of the kernel
    # matrix and T its trace, 2 (S - T) / (m (m - 1)) - 2 S / m^2 = 2 (S - m T) / (m^2 (m - 1)).
    kid_replay = _calc('kid_tiny', replay, data_zip, tmp_path)['kid_tiny']
    ds = dataset_module.ImageFolderDataset(path=data_zip)
    images = torch.from_numpy(np.stack([ds[i][0] for i in range(len(ds))]))
    features = feature_networks.RandomDetector(seed=0)(images, return_features=True).detach().double().numpy()
    kernel = kernel_inception_distance.polynomial_kernel(features, features)
    m = len(features)
    assert kid_replay == pytest.approx(2 * (kernel.sum() - m * np.trace(kernel)) / (m * m * (m - 1)), rel=1e-4)
    kid_constant = _calc('kid_tiny', constant, data_zip, tmp_path)['kid_tiny']
    assert kid_constant > 5 * abs(kid_replay)

    # One class for every image: IS is exactly 1.
    is_constant = _calc('is_tiny', constant, data_zip, tmp_path)
    assert is_constant['is_tiny_mean'] == pytest.approx(1.0, abs=1e-5)


class CountingDetector(feature_networks.RandomDetector):
    """Counts the images it has seen."""
    num_images = 0

    def forward(self, images, **kwargs):
        CountingDetector.num_images += len(images)
        return super().forward(images, **kwargs)


@pytest.mark.filterwarnings('ignore:Matrix is singular')  # the constant images' covariance is 0
def test_real_image_statistics_are_cached(data_zip, tmp_path):
    cache_dir = tmp_path / 'cache'
    feature_networks.register_detector(feature_networks.INCEPTION_URL, CountingDetector(seed=0))
    try:
        CountingDetector.num_images = 0
        first = _calc('fid_tiny', ConstantGenerator(), data_zip, tmp_path)
        assert CountingDetector.num_images == NUM_IMAGES * 2          # real + generated
        assert len(list(cache_dir.glob('shapes-inception-2015-12-05-*.npz'))) == 1

        CountingDetector.num_images = 0
        second = _calc('fid_tiny', ConstantGenerator(), data_zip, tmp_path)
        assert CountingDetector.num_images == NUM_IMAGES              # generated only: reals from the cache
        assert second == first

        # Other detector weights -> other statistics, never the cached ones.
        feature_networks.register_detector(feature_networks.INCEPTION_URL, CountingDetector(seed=7))
        CountingDetector.num_images = 0
        _calc('fid_tiny', ConstantGenerator(), data_zip, tmp_path)
        assert CountingDetector.num_images == NUM_IMAGES * 2
        assert len(list(cache_dir.glob('*.npz'))) == 2

        # cache=False neither reads nor writes.
        CountingDetector.num_images = 0
        _calc('fid_tiny', ConstantGenerator(), data_zip, tmp_path, cache=False)
        assert CountingDetector.num_images == NUM_IMAGES * 2
        assert len(list(cache_dir.glob('*.npz'))) == 2
    finally:
        feature_networks.unregister_detector(feature_networks.INCEPTION_URL)


def test_official_network_metrics_are_seeded_and_report_progress(data_zip, tmp_path, random_detectors):
    G = legacy.load_network_pkl(str(require_fixtures('stylegan2_tiny', 'tiny32_snapshot.pkl')))['G_ema']
    events = []
    progress = lambda tag, done, total: events.append((tag, done, total))
    a = _calc('fid_tiny', G, data_zip, tmp_path, progress=progress, tiny_num_items=24)['fid_tiny']
    assert events[0] == ('FID: real images', 0, NUM_IMAGES) and ('FID: real images', NUM_IMAGES, NUM_IMAGES) in events
    assert events[-1] == ('FID: generated images', 24, 24)
    assert _calc('fid_tiny', G, data_zip, tmp_path, tiny_num_items=24)['fid_tiny'] == a
    assert _calc('fid_tiny', G, data_zip, tmp_path, tiny_num_items=24, seed=1)['fid_tiny'] != a
    assert a > 0

    is_result = _calc('is_tiny', G, data_zip, tmp_path, tiny_num_items=24)
    assert 1.0 <= is_result['is_tiny_mean'] <= 10.0    # between 1 and the number of classes
    ppl = _calc('ppl_tiny', G, data_zip, tmp_path, tiny_num_items=8)['ppl_tiny']
    assert np.isfinite(ppl) and ppl > 0

# ---------------------------------------------------------------------------------------------
# calc_metrics.py


@pytest.fixture(scope='module')
def detector_dir(tmp_path_factory) -> str:
    """Random detectors saved as TorchScript under the official file names."""
    path = tmp_path_factory.mktemp('detectors')
    RandomDetector = scriptable_copy(feature_networks.RandomDetector, tmp_path_factory.mktemp('src'))
    for url, seed in [(feature_networks.INCEPTION_URL, 0), (feature_networks.VGG16_URL, 1)]:
        with pytest.warns(FutureWarning):  # torch.jit.script/save are deprecated, but the format is TorchScript
            torch.jit.save(torch.jit.script(RandomDetector(seed=seed)), str(path / os.path.basename(url)))
    return str(path)


@pytest.fixture
def run_dir_pkl(tmp_path) -> str:
    run_dir = tmp_path / '00000-run'
    run_dir.mkdir()
    pkl = run_dir / 'network-snapshot-000000.pkl'
    shutil.copy(require_fixtures('stylegan2_tiny', 'tiny32_snapshot.pkl'), pkl)
    return str(pkl)


def test_calc_metrics_function_reports_to_run_dir(data_zip, detector_dir, run_dir_pkl, tmp_path):
    results = calc_metrics.calc_metrics(run_dir_pkl, metrics='fid_tiny,pr_tiny', data=data_zip, verbose=False,
                                        detector_dir=detector_dir, num_workers=0, tiny_items=16, cache=False)
    assert [r.metric for r in results] == ['fid_tiny', 'pr_tiny']
    run_dir = Path(run_dir_pkl).parent
    record = json.loads((run_dir / 'metric-fid_tiny.jsonl').read_text().splitlines()[-1])
    assert record['snapshot_pkl'] == 'network-snapshot-000000.pkl'
    assert record['results']['fid_tiny'] == results[0].results.fid_tiny > 0
    assert set(json.loads((run_dir / 'metric-pr_tiny.jsonl').read_text())['results']) == {'pr_tiny_precision', 'pr_tiny_recall'}
    assert calc_metrics.calc_metrics(run_dir_pkl, metrics='none', verbose=False) == []


def test_calc_metrics_input_errors(run_dir_pkl, data_zip, tmp_path):
    import click
    # The pickle records '/data/tiny32.zip', which does not exist here.
    with pytest.raises(click.UsageError, match='--data: not given.*/data/tiny32.zip'):
        calc_metrics.calc_metrics(run_dir_pkl, metrics='fid_tiny', verbose=False)
    with pytest.raises(click.UsageError, match="--data: no such file"):
        calc_metrics.calc_metrics(run_dir_pkl, metrics='fid_tiny', data=str(tmp_path / 'missing.zip'), verbose=False)
    with pytest.raises(click.UsageError, match="--network: file not found"):
        calc_metrics.calc_metrics(str(tmp_path / 'missing.pkl'), metrics='fid_tiny', verbose=False)
    with pytest.raises(ValueError, match="--metrics: unknown metric 'fid'"):
        calc_metrics.calc_metrics(run_dir_pkl, metrics='fid', verbose=False)


def test_calc_metrics_needs_data_only_for_metrics_with_real_images(run_dir_pkl, detector_dir, monkeypatch):
    import click
    G = legacy.load_network_pkl(run_dir_pkl)['G_ema']
    monkeypatch.setattr(calc_metrics, 'load_network', lambda pkl, flag='--network': dict(G_ema=G, training_set_kwargs=None))
    with pytest.raises(click.UsageError, match='--data: required for fid_tiny, kid_tiny'):
        calc_metrics.calc_metrics(run_dir_pkl, metrics='is_tiny,fid_tiny,kid_tiny', verbose=False)
    # IS needs no real images (an unconditional G needs no labels either).
    results = calc_metrics.calc_metrics(run_dir_pkl, metrics='is_tiny', verbose=False, detector_dir=detector_dir,
                                        tiny_items=8)
    assert results[0].results.is_tiny_mean >= 1.0


def _run_cli(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, 'calc_metrics.py', *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, env=env)


def test_cli_runs_and_fails_with_one_line(data_zip, detector_dir, run_dir_pkl):
    proc = _run_cli('--metrics', 'kid_tiny', '--network', run_dir_pkl, '--data', data_zip, '--mirror', '0',
                    '--detector-dir', detector_dir, '--tiny-items', '12', '--workers', '0', '--verbose', '0',
                    '--cache', '0')
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    assert record['metric'] == 'kid_tiny' and np.isfinite(record['results']['kid_tiny'])
    assert (Path(run_dir_pkl).parent / 'metric-kid_tiny.jsonl').is_file()

    proc = _run_cli('--metrics', 'fid_tiny,bogus', '--network', run_dir_pkl)
    assert proc.returncode != 0 and 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("Error: --metrics: unknown metric 'bogus'; valid: fid50k_full")

# ---------------------------------------------------------------------------------------------
# Two processes (gloo): the same numbers as one process.


def test_two_gloo_processes_match_one(data_zip, detector_dir, tmp_path):
    results = {}
    for gpus in (1, 2):
        run_dir = tmp_path / f'run{gpus}'
        run_dir.mkdir()
        pkl = run_dir / 'net.pkl'
        shutil.copy(require_fixtures('stylegan2_tiny', 'tiny32_snapshot.pkl'), pkl)
        calc_metrics.calc_metrics(str(pkl), metrics='fid_tiny,pr_tiny', data=data_zip, gpus=gpus, verbose=False,
                                  detector_dir=detector_dir, num_workers=0, tiny_items=20, cache=False)
        results[gpus] = {name: json.loads((run_dir / f'metric-{name}.jsonl').read_text())
                         for name in ('fid_tiny', 'pr_tiny')}
    for name in ('fid_tiny', 'pr_tiny'):
        assert results[2][name]['num_gpus'] == 2
        for key, value in results[1][name]['results'].items():
            assert results[2][name]['results'][key] == pytest.approx(value, rel=1e-5), key

# ---------------------------------------------------------------------------------------------

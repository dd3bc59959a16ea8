"""Metric math against closed forms (FID, KID, precision/recall, IS, PPL), feature statistics,
the registry, and detector injection / loading. End-to-end runs: test_metrics_pipeline.py."""

import json
import os

import numpy as np
import pytest
import torch

import dnnlib
from conftest import scriptable_copy
from metrics import feature_networks
from metrics import frechet_inception_distance
from metrics import inception_score
from metrics import kernel_inception_distance
from metrics import metric_main
from metrics import metric_utils
from metrics import perceptual_path_length
from metrics import precision_recall

# ---------------------------------------------------------------------------------------------
# FID


def _random_rotation(d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.RandomState(seed).randn(d, d))
    return q


def test_fid_of_identical_statistics_is_zero():
    x = np.random.RandomState(0).randn(500, 12) @ np.random.RandomState(1).randn(12, 12)
    stats = metric_utils.FeatureStats(capture_mean_cov=True)
    stats.append(x)
    mu, sigma = stats.get_mean_cov()
    assert abs(frechet_inception_distance.fid_from_stats(mu, sigma, mu, sigma)) < 1e-8 * np.trace(sigma)


def test_fid_matches_closed_form_for_diagonal_and_rotated_gaussians():
    rnd = np.random.RandomState(2)
    d = 6
    mu1, mu2 = rnd.randn(d), rnd.randn(d)
    var1, var2 = rnd.uniform(0.1, 3, d), rnd.uniform(0.1, 3, d)
    # ||mu1 - mu2||^2 + sum(v1 + v2 - 2 sqrt(v1 v2)): with diagonal covariances the matrix square
    # root is elementwise.
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))
    fid = frechet_inception_distance.fid_from_stats(mu1, np.diag(var1), mu2, np.diag(var2))
    assert fid == pytest.approx(expected, rel=1e-9)
    # Rotating both distributions by the same orthogonal Q changes nothing (commuting covariances
    # Q D Q^T: the square root is Q sqrt(D1 D2) Q^T), but exercises the full sqrtm.
    q = _random_rotation(d, 3)
    fid_rot = frechet_inception_distance.fid_from_stats(q @ mu1, q @ np.diag(var1) @ q.T, q @ mu2, q @ np.diag(var2) @ q.T)
    assert fid_rot == pytest.approx(expected, rel=1e-7)


def test_fid_from_sampled_gaussians_approaches_formula():
    rnd = np.random.RandomState(4)
    n, d = 40000, 3
    mu1, mu2 = np.zeros(d), np.array([1.0, -0.5, 0.25])
    std1, std2 = np.array([1.0, 2.0, 0.5]), np.array([1.5, 1.0, 0.5])
    a = metric_utils.FeatureStats(capture_mean_cov=True)
    b = metric_utils.FeatureStats(capture_mean_cov=True)
    a.append(mu1 + std1 * rnd.randn(n, d))
    b.append(mu2 + std2 * rnd.randn(n, d))
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((std1 - std2) ** 2)  # sqrt(v1 v2) = std1 std2
    assert frechet_inception_distance.fid_from_stats(*a.get_mean_cov(), *b.get_mean_cov()) == pytest.approx(expected, abs=0.05)


def test_fid_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match='shapes'):
        frechet_inception_distance.fid_from_stats(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))

# ---------------------------------------------------------------------------------------------
# Feature statistics


def test_feature_stats_mean_cov_truncation_and_round_trip(tmp_path):
    x = np.random.RandomState(5).randn(50, 4).astype(np.float32)
    stats = metric_utils.FeatureStats(capture_all=True, capture_mean_cov=True, max_items=37)
    stats.append(x[:20])
    assert not stats.is_full()
    stats.append(x[20:])                                  # only 17 of these 30 rows are kept
    assert stats.is_full() and stats.num_items == 37
    np.testing.assert_array_equal(stats.get_all(), x[:37])
    mu, sigma = stats.get_mean_cov()
    np.testing.assert_allclose(mu, x[:37].astype(np.float64).mean(0), rtol=1e-6)
    # Normalised by N (not N-1), like the official metrics.
    np.testing.assert_allclose(sigma, np.cov(x[:37].astype(np.float64), rowvar=False, bias=True), rtol=1e-6, atol=1e-9)

    path = str(tmp_path / 'stats.npz')
    stats.save(path)
    loaded = metric_utils.FeatureStats.load(path)
    assert loaded.num_items == 37 and loaded.max_items == 37
    np.testing.assert_array_equal(loaded.get_all(), x[:37])
    for got, want in zip(loaded.get_mean_cov(), (mu, sigma)):
        np.testing.assert_array_equal(got, want)
    assert [p.name for p in tmp_path.iterdir()] == ['stats.npz']  # no temporary file left behind


def test_feature_stats_rejects_changing_feature_count():
    stats = metric_utils.FeatureStats(capture_all=True)
    stats.append(np.zeros([2, 3]))
    with pytest.raises(ValueError, match='3'):
        stats.append(np.zeros([2, 4]))

# ---------------------------------------------------------------------------------------------
# KID


def _mmd2_unbiased_direct(x: np.ndarray, y: np.ndarray) -> float:
    # Textbook O(n^2) loops: 1/(m(m-1)) sum_{i!=j} k(x_i,x_j) + same for y - 2/m^2 sum_{i,j} k(x_i,y_j).
    d = x.shape[1]
    k = lambda a, b: (float(np.dot(a, b)) / d + 1) ** 3
    m = len(x)
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
    return kxx / (m * (m - 1)) + kyy / (m * (m - 1)) - 2 * kxy / (m * m)


def test_kid_single_full_subset_matches_direct_computation():
    rnd = np.random.RandomState(6)
    real = rnd.randn(7, 3)
    gen = rnd.randn(7, 3) + 0.7
    # One subset of all 7 points: a permutation, which the estimate does not depend on.
    kid = kernel_inception_distance.kid_from_features(real, gen, num_subsets=1, max_subset_size=7)
    assert kid == pytest.approx(_mmd2_unbiased_direct(gen, real), rel=1e-10)
    assert kid > 0


def test_kid_is_unbiased_for_identical_distributions():
    # Averaged over independent draws from the same distribution, the unbiased estimate is 0
    # within its standard error; a biased (V-statistic) estimate would be clearly positive.
    rnd = np.random.RandomState(7)
    estimates = [kernel_inception_distance.kid_from_features(rnd.randn(20, 4), rnd.randn(20, 4),
                                                             num_subsets=1, max_subset_size=20)
                 for _ in range(300)]
    mean, sem = np.mean(estimates), np.std(estimates) / np.sqrt(len(estimates))
    assert abs(mean) < 3 * sem
    shifted = kernel_inception_distance.kid_from_features(rnd.randn(200, 4), rnd.randn(200, 4) + 1.0,
                                                          num_subsets=5, max_subset_size=100)
    assert shifted > 20 * sem


def test_kid_needs_two_items():
    with pytest.raises(ValueError, match='at least 2'):
        kernel_inception_distance.kid_from_features(np.zeros([1, 3]), np.zeros([5, 3]))

# ---------------------------------------------------------------------------------------------
# Precision / recall


def test_precision_recall_identical_sets_are_one():
    x = np.random.RandomState(8).randn(40, 5)
    assert precision_recall.precision_recall_from_features(x, x.copy(), nhood_size=3) == (1.0, 1.0)


def test_precision_recall_far_apart_sets_are_zero():
    rnd = np.random.RandomState(9)
    real, gen = rnd.randn(40, 5), rnd.randn(30, 5) + 100
    assert precision_recall.precision_recall_from_features(real, gen, nhood_size=3) == (0.0, 0.0)


def test_precision_recall_hand_computed_1d_case():
    real = np.array([[0.0], [1.0], [2.0], [3.0]])    # 1-NN radius of every real point: 1
    gen = np.array([[0.5], [0.9], [10.0], [10.5]])   # 1-NN radii: 0.4, 0.4, 0.5, 0.5
    precision, recall = precision_recall.precision_recall_from_features(real, gen, nhood_size=1,
                                                                        row_batch_size=3, col_batch_size=2)
    assert precision == 0.5    # 0.5 and 0.9 lie within 1 of a real point; 10 and 10.5 do not
    assert recall == 0.25      # only real 1 lies within 0.4 of a generated point (0.9)


def test_precision_recall_needs_more_points_than_neighbours():
    with pytest.raises(ValueError, match='nhood_size=3'):
        precision_recall.precision_recall_from_features(np.zeros([3, 2]), np.zeros([10, 2]), nhood_size=3)

# ---------------------------------------------------------------------------------------------
# Inception score


def test_inception_score_uniform_predictions_is_one():
    mean, std = inception_score.inception_score_from_probs(np.full([100, 7], 1 / 7), num_splits=10)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_confident_balanced_predictions_is_num_classes():
    num_classes = 5
    probs = np.eye(num_classes)[np.tile(np.arange(num_classes), 8)]   # 40 one-hot rows, classes cycling
    mean, std = inception_score.inception_score_from_probs(probs, num_splits=4)  # 10 rows, 2 of each class per split
    assert mean == pytest.approx(num_classes, rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_hand_computed_case():
    probs = np.array([[1.0, 0.0], [0.5, 0.5]])
    marginal = np.array([0.75, 0.25])
    kl0 = np.log(1 / marginal[0])
    kl1 = 0.5 * np.log(0.5 / marginal[0]) + 0.5 * np.log(0.5 / marginal[1])
    mean, _ = inception_score.inception_score_from_probs(probs, num_splits=1)
    assert mean == pytest.approx(np.exp((kl0 + kl1) / 2), rel=1e-12)

# ---------------------------------------------------------------------------------------------
# PPL


class LinearGenerator(torch.nn.Module):
    """ws = z M (broadcast over num_ws), img = ws[:, 0] A reshaped: every path is linear in w."""

    def __init__(self, z_dim=6, num_ws=3, resolution=4, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.z_dim, self.w_dim, self.c_dim, self.num_ws = z_dim, z_dim, 0, num_ws
        self.img_resolution, self.img_channels = resolution, 3
        self.register_buffer('M', torch.randn([z_dim, z_dim], generator=gen) / z_dim ** 0.5)
        self.register_buffer('A', torch.randn([z_dim, 3 * resolution * resolution], generator=gen) * 0.1)
        self.mapping = self._mapping
        self.synthesis = self._synthesis

    def _mapping(self, z, c, **kwargs):
        return (z @ self.M).unsqueeze(1).repeat([1, self.num_ws, 1])

    def _synthesis(self, ws, **kwargs):
        return (ws[:, 0] @ self.A).reshape([-1, 3, self.img_resolution, self.img_resolution])

    def forward(self, z, c, **kwargs):
        return self._synthesis(self._mapping(z, c))


class FlattenPerceptual(torch.nn.Module):
    """'LPIPS' embedding = pixels / 255, so the squared distance is a plain pixel distance."""

    def forward(self, img, resize_images=True, return_lpips=False):
        assert not resize_images and return_lpips
        return img.flatten(1) / 255


def test_ppl_w_end_matches_closed_form_for_linear_generator():
    G = LinearGenerator()
    z0, z1 = torch.randn([5, G.z_dim], dtype=torch.float64), torch.randn([5, G.z_dim], dtype=torch.float64)
    G = G.double()
    c = torch.zeros([5, 0], dtype=torch.float64)
    # img(t) in [0, 255] is 127.5 (x(t) + 1) and the embedding divides by 255: a step of eps in t
    # moves the embedding by eps * ((z1 - z0) M A) / 2, so dist = ||(z1 - z0) M A||^2 / 4.
    expected = (((z1 - z0) @ G.M @ G.A) ** 2).sum(1) / 4
    for eps in (1e-2, 1e-4):  # linear in w: the 1/eps^2 scaling makes the result eps-independent
        for sampling in ('end', 'full'):
            sampler = perceptual_path_length.PPLSampler(G, {}, FlattenPerceptual(), epsilon=eps, space='w',
                                                        sampling=sampling, crop=False)
            dist = sampler(z0, z1, torch.rand([5], dtype=torch.float64), c)
            torch.testing.assert_close(dist, expected, rtol=1e-6, atol=0)


class FlatColourGenerator(LinearGenerator):
    """Each image is one flat colour, linear in w: crops and box filters keep pixel values."""

    def _synthesis(self, ws, **kwargs):
        colour = ws[:, 0] @ self.A[:, :3]                                               # [N, 3]
        return colour[:, :, None, None].expand(-1, -1, self.img_resolution, self.img_resolution)


def test_ppl_crop_and_downsampling_at_512px():
    # 512 px: the face crop keeps 256 x 256 pixels, then the 512 // 256 = 2 box filter leaves
    # 128 x 128 (without crop: 256 x 256); each pixel contributes the same squared step.
    G = FlatColourGenerator(resolution=512).double()
    z0, z1 = torch.randn([3, G.z_dim], dtype=torch.float64), torch.randn([3, G.z_dim], dtype=torch.float64)
    per_pixel = (((z1 - z0) @ G.M @ G.A[:, :3]) ** 2).sum(1) / 4
    for crop, num_pixels in [(True, 128 * 128), (False, 256 * 256)]:
        sampler = perceptual_path_length.PPLSampler(G, {}, FlattenPerceptual(), epsilon=1e-4, space='w',
                                                    sampling='end', crop=crop)
        dist = sampler(z0, z1, torch.zeros([3], dtype=torch.float64), torch.zeros([3, 0], dtype=torch.float64))
        torch.testing.assert_close(dist, per_pixel * num_pixels, rtol=1e-6, atol=0)


def test_ppl_z_end_matches_slerp_derivative():
    # With t = 0 the slerp path starts at z0/|z0| with speed theta (the angle between z0 and z1)
    # along the unit vector orthogonal to z0 in the (z0, z1) plane.
    G = LinearGenerator().double()
    z0, z1 = torch.randn([4, G.z_dim], dtype=torch.float64), torch.randn([4, G.z_dim], dtype=torch.float64)
    a, b = z0 / z0.norm(dim=1, keepdim=True), z1 / z1.norm(dim=1, keepdim=True)
    cos = (a * b).sum(1, keepdim=True)
    ortho = b - cos * a
    velocity = torch.acos(cos) * ortho / ortho.norm(dim=1, keepdim=True)
    expected = ((velocity @ G.M @ G.A) ** 2).sum(1) / 4
    sampler = perceptual_path_length.PPLSampler(G, {}, FlattenPerceptual(), epsilon=1e-6, space='z',
                                                sampling='end', crop=False)
    dist = sampler(z0, z1, torch.zeros([4], dtype=torch.float64), torch.zeros([4, 0], dtype=torch.float64))
    torch.testing.assert_close(dist, expected, rtol=1e-4, atol=0)


def test_slerp_end_points_and_unit_norm():
    a, b = torch.randn([3, 5], dtype=torch.float64), torch.randn([3, 5], dtype=torch.float64)
    unit = lambda v: v / v.norm(dim=1, keepdim=True)
    torch.testing.assert_close(perceptual_path_length.slerp(a, b, torch.zeros([3, 1], dtype=torch.float64)), unit(a))
    torch.testing.assert_close(perceptual_path_length.slerp(a, b, torch.ones([3, 1], dtype=torch.float64)), unit(b))
    mid = perceptual_path_length.slerp(a, b, torch.full([3, 1], 0.5, dtype=torch.float64))
    torch.testing.assert_close(mid, unit(unit(a) + unit(b)))


def test_ppl_outlier_filter_drops_extremes():
    dist = np.concatenate([np.full(200, 3.0), [1e9, -1e9]])
    assert perceptual_path_length.ppl_from_distances(dist) == 3.0
    values = np.arange(1000, dtype=np.float64)
    # 1st percentile ('lower') is 9, 99th ('higher') is 990: the mean of 9..990.
    assert perceptual_path_length.ppl_from_distances(values) == pytest.approx(np.arange(9, 991).mean())

# ---------------------------------------------------------------------------------------------
# Registry and reporting


def test_registry_lists_the_official_and_small_metrics():
    names = metric_main.list_valid_metrics()
    for name in ['fid50k_full', 'kid50k_full', 'pr50k3_full', 'is50k', 'ppl2_wend', 'kid1k_full', 'fid10k_full',
                 'fid50k', 'ppl_zfull', 'fid_tiny', 'kid_tiny', 'pr_tiny', 'is_tiny', 'ppl_tiny']:
        assert metric_main.is_valid_metric(name), name
        assert metric_main.describe_metric(name), name
    assert not metric_main.is_valid_metric('fid')
    assert not metric_main.metric_needs_real_images('is50k')
    assert not metric_main.metric_needs_real_images('ppl2_wend')
    assert metric_main.metric_needs_real_images('pr50k3_full')


def test_parse_metric_list_none_and_unknown():
    assert metric_main.parse_metric_list('none') == []
    assert metric_main.parse_metric_list('') == []
    assert metric_main.parse_metric_list('fid50k_full, kid50k_full') == ['fid50k_full', 'kid50k_full']
    with pytest.raises(ValueError) as info:
        metric_main.parse_metric_list('fid50k_full,fid51k')
    message = str(info.value)
    assert '\n' not in message and '--metrics' in message and "'fid51k'" in message and 'kid50k_full' in message


def test_register_custom_metric_and_calc_and_report(tmp_path):
    @metric_main.register_metric
    def constant_test_metric(opts):
        """A metric for this test."""
        return dict(constant_test_metric=np.float32(1.5), other=2)
    try:
        result = metric_main.calc_metric('constant_test_metric', device='cpu')
        assert result.results == dict(constant_test_metric=1.5, other=2.0)
        assert result.metric == 'constant_test_metric' and result.num_gpus == 1
        assert result.total_time >= 0 and isinstance(result.total_time_str, str)

        run_dir = tmp_path / 'run'
        run_dir.mkdir()
        metric_main.report_metric(result, run_dir=str(run_dir), snapshot_pkl=str(run_dir / 'network-snapshot-000004.pkl'))
        metric_main.report_metric(result, run_dir=str(run_dir), snapshot_pkl=str(run_dir / 'network-snapshot-000008.pkl'))
        lines = (run_dir / 'metric-constant_test_metric.jsonl').read_text().splitlines()
        assert len(lines) == 2
        record = json.loads(lines[1])
        assert record['snapshot_pkl'] == 'network-snapshot-000008.pkl'
        assert record['results'] == {'constant_test_metric': 1.5, 'other': 2.0}
        assert record['metric'] == 'constant_test_metric' and 'timestamp' in record
    finally:
        metric_main._metric_dict.pop('constant_test_metric')


def test_calc_metric_errors_are_one_line():
    with pytest.raises(ValueError, match='device='):
        metric_main.calc_metric('fid_tiny')
    with pytest.raises(ValueError, match="Unknown metric 'nope'"):
        metric_main.calc_metric('nope', device='cpu')
    with pytest.raises(ValueError, match='needs real images.*--data'):
        metric_main.calc_metric('fid_tiny', device='cpu', G=LinearGenerator())
    with pytest.raises(ValueError, match='needs a generator'):
        metric_main.calc_metric('ppl_tiny', device='cpu')

# ---------------------------------------------------------------------------------------------
# Detectors


def test_random_detector_outputs():
    det = feature_networks.RandomDetector(feature_dim=16, num_classes=10)
    images = torch.randint(0, 256, [4, 3, 20, 20], dtype=torch.uint8)
    assert det(images, return_features=True).shape == (4, 16)
    probs = det(images, no_output_bias=True)
    assert probs.shape == (4, 10)
    torch.testing.assert_close(probs.sum(1), torch.ones(4))
    # Same seed, same network; another seed, another network.
    torch.testing.assert_close(feature_networks.RandomDetector(seed=0)(images, return_features=True),
                               feature_networks.RandomDetector(seed=0)(images, return_features=True))
    assert not torch.allclose(feature_networks.RandomDetector(seed=1)(images, return_features=True),
                              det(images, return_features=True))


def test_registered_detector_is_used_and_fingerprinted():
    url = 'https://example.invalid/metrics/fake-detector.pt'
    assert feature_networks.detector_fingerprint(url) == url
    det = feature_networks.RandomDetector(seed=3)
    feature_networks.register_detector(url, det)
    try:
        loaded = feature_networks.load_detector(url, torch.device('cpu'))
        images = torch.randint(0, 256, [2, 3, 8, 8], dtype=torch.uint8)
        torch.testing.assert_close(loaded(images, return_features=True), det(images, return_features=True))
        assert feature_networks.load_detector(url, torch.device('cpu')) is loaded   # loaded once per device
        fp3 = feature_networks.detector_fingerprint(url)
        feature_networks.register_detector(url, feature_networks.RandomDetector(seed=4))
        assert feature_networks.detector_fingerprint(url) != fp3                    # weights are in the key
        assert feature_networks.load_detector(url, torch.device('cpu')) is not loaded
    finally:
        feature_networks.unregister_detector(url)


@pytest.mark.filterwarnings('ignore:`torch.jit:FutureWarning')  # TorchScript is deprecated, but it is the format
def test_torchscript_detector_loads_from_detector_dir(tmp_path, monkeypatch):
    monkeypatch.delenv(feature_networks.DETECTOR_DIR_ENV, raising=False)
    # The real loading path (torch.jit.load of a TorchScript archive), offline via detector_dir.
    src_dir = tmp_path / 'src'
    src_dir.mkdir()
    RandomDetector = scriptable_copy(feature_networks.RandomDetector, src_dir)
    det = RandomDetector(seed=5)
    torch.jit.save(torch.jit.script(det), str(tmp_path / 'vgg16.pt'))
    try:
        loaded = feature_networks.load_detector(feature_networks.VGG16_URL, torch.device('cpu'), detector_dir=str(tmp_path))
        images = torch.randint(0, 256, [2, 3, 16, 16], dtype=torch.uint8)
        torch.testing.assert_close(loaded(images, return_features=True), det(images, return_features=True))
        # Cached statistics are keyed by the file's contents, not only by the URL it stands for.
        fingerprint = feature_networks.detector_fingerprint(feature_networks.VGG16_URL, str(tmp_path))
        assert fingerprint.startswith(feature_networks.VGG16_URL + ':sha256:')
        other = tmp_path / 'other'
        other.mkdir()
        torch.jit.save(torch.jit.script(RandomDetector(seed=6)), str(other / 'vgg16.pt'))
        assert feature_networks.detector_fingerprint(feature_networks.VGG16_URL, str(other)) != fingerprint
        assert feature_networks.detector_fingerprint(feature_networks.VGG16_URL) == feature_networks.VGG16_URL
    finally:
        feature_networks._forget_loaded(feature_networks.VGG16_URL)


def test_missing_detector_errors_name_url_and_place(tmp_path, monkeypatch):
    with pytest.raises(feature_networks.DetectorUnavailableError) as info:
        feature_networks.load_detector(feature_networks.INCEPTION_URL, torch.device('cpu'), detector_dir=str(tmp_path))
    message = str(info.value)
    assert '\n' not in message and 'inception-2015-12-05.pt' in message and str(tmp_path) in message
    assert feature_networks.INCEPTION_URL in message

    # Offline download: dnnlib's error (URL + cache path) plus the detector_dir hint, one line.
    def offline_open_url(url, *args, **kwargs):
        raise dnnlib.util.DownloadError(f'Cannot download {url} (offline); place it at /cache/x_{os.path.basename(url)}')
    monkeypatch.setattr(dnnlib.util, 'open_url', offline_open_url)
    monkeypatch.delenv(feature_networks.DETECTOR_DIR_ENV, raising=False)
    with pytest.raises(feature_networks.DetectorUnavailableError) as info:
        feature_networks.load_detector(feature_networks.INCEPTION_URL, torch.device('cpu'))
    message = str(info.value)
    assert '\n' not in message and feature_networks.INCEPTION_URL in message and '/cache/' in message
    assert feature_networks.DETECTOR_DIR_ENV in message

# ---------------------------------------------------------------------------------------------

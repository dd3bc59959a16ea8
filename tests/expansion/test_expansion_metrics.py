"""Expansion metrics: closed forms (CLIP error, Semantic-Score, Diversity, intra-cluster
diversity), subspace rendering parity with the official projection, and end-to-end runs on the
tiny expanded snapshot with stand-in CLIP / LPIPS / Inception networks."""

import math

import numpy as np
import PIL.Image
import pytest
import torch

import calc_metrics
import legacy
from conftest import require_fixtures
from training.expansion import evaluation
from metrics import feature_networks
from metrics import metric_main

pytestmark = pytest.mark.usefixtures('one_thread')

# ---------------------------------------------------------------------------------------------
# Closed forms


def test_diversity_of_identical_embeddings_is_zero_and_of_orthonormal_is_one():
    same = torch.randn([1, 8]).repeat([6, 1]) * 3
    assert evaluation.pairwise_diversity(same) == pytest.approx(0.0, abs=1e-12)
    q, _ = torch.linalg.qr(torch.randn([8, 8], dtype=torch.float64))
    assert evaluation.pairwise_diversity(q[:5] * 2.5) == pytest.approx(1.0, abs=1e-12)
    # Two pairs at 90 degrees and one identical pair: (1 + 1 + 0) / 3.
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
    assert evaluation.pairwise_diversity(e) == pytest.approx(2 / 3, abs=1e-12)
    with pytest.raises(ValueError, match='at least 2'):
        evaluation.pairwise_diversity(e[:1])


def test_semantic_score_and_clip_error_on_known_angles():
    angles = torch.tensor([0.0, math.pi / 3, math.pi / 2], dtype=torch.float64)
    emb = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1) * torch.tensor([[1.0], [4.0], [0.5]], dtype=torch.float64)
    ref = torch.tensor([2.0, 0.0], dtype=torch.float64)
    assert evaluation.semantic_score(emb, ref) == pytest.approx((1 + 0.5 + 0) / 3, abs=1e-12)
    assert evaluation.clip_error(emb, ref) == pytest.approx(1 - (1 + 0.5 + 0) / 3, abs=1e-12)


def test_intra_cluster_diversity_hand_computed_case():
    # 1-D "images" with absolute difference as the distance. Centres 0 and 10:
    # cluster 0 = {0, 1, 2} (pairs 1, 2, 1 -> 4/3), cluster 10 = {10, 14} (pair 4 -> 4), and
    # cluster of centre 100 stays empty: (4/3 + 4) / 2.
    images = torch.tensor([0.0, 14.0, 1.0, 10.0, 2.0]).reshape(5, 1)
    centers = torch.tensor([0.0, 10.0, 100.0]).reshape(3, 1)
    distance = lambda x, y: (x - y).abs().reshape(-1)
    assert evaluation.intra_cluster_diversity(images, centers, distance, batch_size=2) == pytest.approx(8 / 3)
    with pytest.raises(ValueError, match='no cluster received two images'):
        evaluation.intra_cluster_diversity(images[:2], centers, distance)

# ---------------------------------------------------------------------------------------------
# Rendering subspaces


@pytest.fixture(scope='module')
def expanded():
    return legacy.load_network_pkl(str(require_fixtures('stylegan2_tiny', 'tiny32_expanded_snapshot.pkl')))


def test_subspace_generator_matches_official_projection_renders(expanded):
    ref = np.load(require_fixtures('stylegan2_tiny', 'reference_outputs.npz'))
    exp = np.load(require_fixtures('stylegan2_tiny', 'expansion_outputs.npz'))
    G = expanded['G_ema']
    z, c = torch.from_numpy(ref['z']), torch.from_numpy(ref['c'])
    # The fixture renders the projection of the W latent broadcast to all layers; mapping gives
    # identical rows at psi 1, so projecting W+ row-wise is the same computation.
    base = evaluation.SubspaceGenerator(G, exp['sefa_basis'], exp['repurposed_dims'], float(exp['subspace_distance']))
    torch.testing.assert_close(base(z, c, noise_mode='const'), torch.from_numpy(exp['img_base_const']), atol=1e-4, rtol=0)
    for k in range(2):
        edit = evaluation.SubspaceGenerator(G, exp['sefa_basis'], exp['repurposed_dims'], 20.0, domain=k)
        torch.testing.assert_close(edit(z, c, noise_mode='const'), torch.from_numpy(exp['img_edit_const'][k]),
                                   atol=1e-4, rtol=0)
    # A composition with weight s on one domain only is that domain's subspace.
    compose = evaluation.SubspaceGenerator(G, exp['sefa_basis'], exp['repurposed_dims'], 20.0, weights=[0.0, 20.0])
    torch.testing.assert_close(compose(z, c, noise_mode='const'), torch.from_numpy(exp['img_edit_const'][1]),
                               atol=1e-4, rtol=0)


def test_domains_come_from_the_snapshot_config(expanded):
    opts_extra = dict(expansion={k: expanded[k] for k in ('latent_basis', 'repurposed_dims', 'subspace_distance',
                                                          'expansion_cfg')})
    from metrics import metric_utils
    opts = metric_utils.MetricOptions(device='cpu', extra=opts_extra)
    _, domains = evaluation.expansion_inputs(opts, 'm')
    assert [(d.index, d.name, d.key, d.text) for d in domains] == [
        (0, 'watercolor painting', 'watercolor_painting', 'watercolor painting'),
        (1, 'marble statue', 'marble_statue', 'marble statue')]
    opts = metric_utils.MetricOptions(device='cpu', extra=dict(opts_extra, domain_texts={'zombie': 'a zombie'}))
    with pytest.raises(ValueError, match="unknown domains \\['zombie'\\]"):
        evaluation.expansion_inputs(opts, 'm')
    with pytest.raises(ValueError, match='needs an expanded generator'):
        evaluation.expansion_inputs(metric_utils.MetricOptions(device='cpu'), 'clip_error1k')

# ---------------------------------------------------------------------------------------------
# End-to-end with stand-in encoders


class StandInClip:
    """Image embeddings: a random conv net's features; text embeddings: a seeded random vector
    per string. Same interface as training.expansion.tasks.shared_models.ClipEncoder."""

    def __init__(self, dim=16):
        self.net = feature_networks.RandomDetector(feature_dim=dim, seed=11)
        self.dim = dim

    def encode_images(self, images):
        return torch.nn.functional.normalize(self.net((images + 1) * 127.5, return_features=True), dim=1)

    def encode_texts(self, texts):
        vectors = [torch.randn([self.dim], generator=torch.Generator().manual_seed(sum(map(ord, t)))) for t in texts]
        return torch.nn.functional.normalize(torch.stack(vectors), dim=1)


class ConstantClip:
    """Every image and text maps to the same unit vector."""

    def encode_images(self, images):
        return torch.ones([len(images), 4]) / 2

    def encode_texts(self, texts):
        return torch.ones([len(texts), 4]) / 2


def _opts(expanded, **extra):
    info = {k: expanded[k] for k in ('latent_basis', 'repurposed_dims', 'subspace_distance', 'expansion_cfg')}
    return dict(G=expanded['G_ema'], device='cpu', progress=False, tiny_num_items=12, num_workers=0,
                extra=dict(expansion=info, **extra))


def test_clip_error_and_composition_end_to_end(expanded):
    clip = StandInClip()
    extra = dict(clip_encoders={'ViT-L/14': clip})
    results = metric_main.calc_metric('clip_error_tiny', **_opts(expanded, **extra)).results
    assert set(results) == {'clip_error_tiny_watercolor_painting', 'clip_error_tiny_marble_statue',
                            'clip_error_tiny_base_watercolor_painting', 'clip_error_tiny_base_marble_statue',
                            'clip_error_tiny_mean'}
    # Recompute one domain by hand from the same seeded images.
    from metrics import metric_utils
    opts = metric_utils.MetricOptions(**_opts(expanded, **extra))
    G = evaluation.SubspaceGenerator(expanded['G_ema'], expanded['latent_basis'], expanded['repurposed_dims'],
                                            20.0, domain=1)
    images = evaluation.render_images(opts, G, 12).float() / 127.5 - 1
    with torch.no_grad():
        expected = 1 - (clip.encode_images(images) @ clip.encode_texts(['marble statue'])[0]).mean()
    assert results['clip_error_tiny_marble_statue'] == pytest.approx(float(expected), rel=1e-5)
    assert results['clip_error_tiny_mean'] == pytest.approx(
        (results['clip_error_tiny_watercolor_painting'] + results['clip_error_tiny_marble_statue']) / 2)

    compose = metric_main.calc_metric('clip_compose_tiny', **_opts(expanded, **extra)).results
    assert set(compose) == {'clip_compose_tiny_kept', 'clip_compose_tiny_added'}
    assert all(np.isfinite(v) and v > 0 for v in compose.values())

    # Domain texts can be overridden, and then enter the embedding.
    other = metric_main.calc_metric('clip_error_tiny', **_opts(expanded, clip_encoders=extra['clip_encoders'],
                                    domain_texts={'marble statue': 'a statue'})).results
    assert other['clip_error_tiny_marble_statue'] != results['clip_error_tiny_marble_statue']
    assert other['clip_error_tiny_watercolor_painting'] == results['clip_error_tiny_watercolor_painting']


def test_semantic_diversity_end_to_end(expanded, tmp_path):
    ref = tmp_path / 'ref.png'
    PIL.Image.fromarray(np.full([32, 32, 3], 128, np.uint8)).save(ref)
    # A constant encoder: every image equals the reference -> score 1, diversity 0.
    results = metric_main.calc_metric('semantic_diversity_tiny', **_opts(
        expanded, clip_encoders={'ViT-B/16': ConstantClip()}, reference_images={'marble statue': str(ref)})).results
    assert results == pytest.approx({'semantic_diversity_tiny_diversity_watercolor_painting': 0.0,
                                     'semantic_diversity_tiny_diversity_marble_statue': 0.0,
                                     'semantic_diversity_tiny_score_marble_statue': 1.0}, abs=1e-12)
    results = metric_main.calc_metric('semantic_diversity_tiny', **_opts(
        expanded, clip_encoders={'ViT-B/16': StandInClip()})).results
    assert all(0 < v < 2 for v in results.values()) and len(results) == 2


def test_lpips_diversity_end_to_end(expanded):
    mse = lambda x, y: (x - y).square().mean(dim=[1, 2, 3])
    results = metric_main.calc_metric('lpips_diversity_tiny', **_opts(expanded, lpips=mse)).results
    assert set(results) == {'lpips_diversity_tiny_watercolor_painting', 'lpips_diversity_tiny_marble_statue',
                            'lpips_diversity_tiny_mean'}
    assert all(v > 0 for v in results.values())
    # A distance that sees no difference anywhere gives zero diversity.
    zero = lambda x, y: torch.zeros(len(x))
    results = metric_main.calc_metric('lpips_diversity_tiny', **_opts(expanded, lpips=zero)).results
    assert all(v == 0 for v in results.values())


def test_base_fid_end_to_end(expanded, tmp_path):
    feature_networks.register_detector(feature_networks.INCEPTION_URL, feature_networks.RandomDetector(seed=0))
    try:
        base = evaluation.SubspaceGenerator(expanded['G_ema'], expanded['latent_basis'],
                                                   expanded['repurposed_dims'], 20.0)
        # The parent rendered through the same projection, with the same latents: FID exactly 0.
        same = metric_main.calc_metric('fid_base_parent_tiny', **_opts(expanded, parent_G=base)).results
        assert abs(same['fid_base_parent_tiny']) < 1e-6
        differs = metric_main.calc_metric('fid_base_parent_tiny', **_opts(expanded, parent_G=expanded['G_ema'])).results
        assert differs['fid_base_parent_tiny'] > 1e-4
        with pytest.raises(ValueError, match='needs the parent generator: calc_metrics.py --parent'):
            metric_main.calc_metric('fid_base_parent_tiny', **_opts(expanded))
    finally:
        feature_networks.unregister_detector(feature_networks.INCEPTION_URL)


def test_calc_metrics_passes_expansion_keys_and_parent(expanded):
    pkl = str(require_fixtures('stylegan2_tiny', 'tiny32_expanded_snapshot.pkl'))
    extra = calc_metrics.expansion_extra(expanded, parent_pkl=str(require_fixtures('stylegan2_tiny', 'tiny32_snapshot.pkl')))
    assert set(extra) == {'expansion', 'parent_G'}
    assert extra['expansion']['repurposed_dims'].tolist() == [31, 30]
    assert extra['expansion']['subspace_distance'] == 20.0
    assert calc_metrics.expansion_extra({'G_ema': None}, parent_pkl=None) == {}
    import click
    with pytest.raises(click.UsageError, match='--parent: file not found'):
        calc_metrics.calc_metrics(pkl, metrics='fid_base_parent_tiny', parent_pkl='/nonexistent.pkl', verbose=False)

# ---------------------------------------------------------------------------------------------

"""generate.py, projector.py and calc_metrics.py on an official StyleGAN3 pickle (the stylegan3_tiny fixtures)."""

import os
import shutil

import numpy as np
import PIL.Image
import pytest
import torch

import generate
import legacy
import projector
import sg3_fixture
from conftest import require_fixtures, run_cli_inprocess
from torch_utils import image_utils
from training import projection

pytestmark = pytest.mark.usefixtures('one_thread')


def _pixels(path) -> np.ndarray:
    return np.asarray(PIL.Image.open(path)).astype(int)


def test_generate_renders_G_ema_of_a_stylegan3_pickle(tmp_path):
    pkl = str(sg3_fixture.path('r', 'snapshot.pkl'))
    paths = generate.generate_images(pkl, [0, 1], str(tmp_path / 'out'), truncation_psi=0.7, class_idx=2)
    G = legacy.load_network_pkl(pkl)['G_ema']
    z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in (0, 1)])).float()
    c = torch.eye(3)[[2, 2]]
    expected = image_utils.to_uint8(G(z, c, truncation_psi=0.7))
    for path, image in zip(paths, expected):
        assert np.abs(_pixels(path) - image.astype(int)).max() <= 1   # batch of 2 vs 1: rounding only


def test_translate_and_rotate_set_the_input_transform(tmp_path, capsys):
    """The fixture's stored transform is the official one for translate (0.1, -0.05), rotate 10 degrees:
    asking for it reproduces the stored-transform images; another transform changes them."""
    pkl = str(sg3_fixture.path('t', 'snapshot.pkl'))
    stored = generate.generate_images(pkl, [3], str(tmp_path / 'stored'))
    code, out, err = run_cli_inprocess(generate.main, ['--network', pkl, '--seeds', '3', '--outdir',
                                                       str(tmp_path / 'same'), '--translate', '0.1,-0.05',
                                                       '--rotate', '10'], capsys)
    assert code == 0, err
    assert np.abs(_pixels(tmp_path / 'same' / 'seed0003.png') - _pixels(stored[0])).max() <= 1
    rotated = generate.generate_images(pkl, [3], str(tmp_path / 'rot'), rotate_deg=45.0)
    assert np.abs(_pixels(rotated[0]) - _pixels(stored[0])).mean() > 5


def test_translate_errors(tmp_path, capsys):
    sg2 = str(require_fixtures('stylegan2_tiny', 'tiny32_snapshot.pkl'))
    code, out, err = run_cli_inprocess(generate.main, ['--network', sg2, '--seeds', '0', '--outdir',
                                                       str(tmp_path / 'a'), '--rotate', '5'], capsys)
    assert code != 0 and 'StyleGAN2 generator' in (out + err).strip().splitlines()[-1]
    assert '--translate/--rotate' in (out + err).strip().splitlines()[-1]
    sg3 = str(sg3_fixture.path('t', 'snapshot.pkl'))
    code, out, err = run_cli_inprocess(generate.main, ['--network', sg3, '--seeds', '0', '--outdir',
                                                       str(tmp_path / 'b'), '--translate', '0.1'], capsys)
    assert code != 0 and "--translate: cannot parse '0.1'" in (out + err).strip().splitlines()[-1]
    assert not (tmp_path / 'a').exists() and not (tmp_path / 'b').exists()


def test_projector_moves_towards_a_stylegan3_image(tmp_path):
    pkl = str(sg3_fixture.path('t', 'snapshot.pkl'))
    target = generate.generate_images(pkl, [5], str(tmp_path / 'target'))[0]
    written = projector.project_images(pkl, target, str(tmp_path / 'proj'), num_steps=12, metric='l2')
    by_name = {os.path.basename(path): path for path in written['seed0005']}
    latent_path, proj_png = by_name['seed0005.pt'], by_name['seed0005_proj.png']
    G = legacy.load_network_pkl(pkl)['G_ema']
    latent = torch.load(latent_path)
    assert latent.shape == (G.w_dim,)
    target_float = torch.from_numpy(_pixels(target)).permute(2, 0, 1)[None].float() / 127.5 - 1
    w_avg, _ = projection.w_statistics(G.mapping, torch.zeros([1, 0]), 1000)
    start = projection.pixel_l2(projection.render_latent(G.synthesis, w_avg), target_float).item()
    end = projection.pixel_l2(projection.render_latent(G.synthesis, latent), target_float).item()
    assert end < 0.7 * start
    assert os.path.exists(proj_png)


def test_calc_metrics_takes_a_stylegan3_pickle(tmp_path):
    """fid_tiny of the official T fixture on a procedural 32 px dataset, with a random detector in
    place of Inception (nothing downloaded): it runs, is finite and positive, and is seeded."""
    import calc_metrics
    from metrics import feature_networks
    from training import synthetic_data
    data = synthetic_data.make_synthetic_dataset(str(tmp_path / 'shapes.zip'), num_images=16, resolution=32, seed=0)
    pkl = tmp_path / 'sg3t.pkl'  # a copy: calc_metrics writes metric-*.jsonl beside the pickle
    shutil.copy(sg3_fixture.path('t', 'snapshot.pkl'), pkl)
    feature_networks.register_detector(feature_networks.INCEPTION_URL, feature_networks.RandomDetector(seed=0))
    try:
        runs = [calc_metrics.calc_metrics(str(pkl), metrics='fid_tiny', data=data,
                                          verbose=False, num_workers=0, tiny_items=16, cache=False)
                for _ in range(2)]
    finally:
        feature_networks.unregister_detector(feature_networks.INCEPTION_URL)
    fid = [run[0].results.fid_tiny for run in runs]
    assert np.isfinite(fid[0]) and fid[0] > 0 and fid[0] == fid[1]

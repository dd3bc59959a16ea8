"""PRDC on latents as a registered metric option: calc_metrics.py --features w with a file of real
W / W+ latents, against the mapping network's latents or a black-box sampler's (--sampler)."""

import numpy as np
import pytest
import torch

import dnnlib

import calc_metrics
from conftest import run_cli_inprocess
from metrics.prdc import compute_prdc
from tiny_nets import snapshot_data, tiny_discriminator, tiny_generator
from training.blackbox import mixing
from training.blackbox import pipeline
from training.blackbox.sampler import LatentSampler, save_sampler_snapshot
from training.snapshot_io import save_network_pkl

pytestmark = pytest.mark.usefixtures('one_thread')

W_DIM, RES, NUM = 8, 16, 200
KEYS = ('precision', 'recall', 'density', 'coverage')


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """A tiny generator pickle and real latents drawn from its own mapping (other z than the metric's)."""
    root = tmp_path_factory.mktemp('prdc_w')
    G = tiny_generator(W_DIM, resolution=RES, seed=0).eval().requires_grad_(False)
    pkl = str(root / 'net.pkl')
    save_network_pkl(snapshot_data(G, tiny_discriminator(resolution=RES)), pkl)
    with torch.no_grad():
        ws = G.mapping(torch.randn([NUM, G.z_dim], generator=torch.Generator().manual_seed(123)), None)
    return dict(root=root, pkl=pkl, G=G, ws=ws.double().numpy())          # ws: [NUM, num_ws, w_dim]


def _prdc_w(setup, data, **kwargs):
    results = calc_metrics.calc_metrics(setup['pkl'], metrics='prdc_tiny', data=str(data), verbose=False,
                                        tiny_items=NUM, features='w', **kwargs)
    return {key: results[0].results[f'prdc_tiny_{key}'] for key in KEYS}


def test_latents_from_the_generators_distribution_score_high_and_shifted_ones_low(setup):
    w = setup['ws'][:, 0]                                                   # W [NUM, w_dim]
    np.save(setup['root'] / 'w.npy', w)
    same = _prdc_w(setup, setup['root'] / 'w.npy')
    assert same['precision'] > 0.8 and same['recall'] > 0.8 and same['coverage'] > 0.8, same
    assert 0.7 < same['density'] < 1.3, same
    shifted = w + 3 * w.std(axis=0)                                         # 3 sigma in every coordinate
    np.savez(setup['root'] / 'shifted.npz', shifted)
    far = _prdc_w(setup, setup['root'] / 'shifted.npz')
    assert far['precision'] < 0.1 and far['recall'] < 0.1 and far['coverage'] < 0.1, far
    # W+ latents (the mapping broadcasts one w): the same comparison in [num_ws * w_dim].
    np.save(setup['root'] / 'ws.npy', setup['ws'])
    plus = _prdc_w(setup, setup['root'] / 'ws.npy')
    assert plus['precision'] > 0.8 and plus['recall'] > 0.8, plus
    assert (setup['root'] / 'metric-prdc_tiny.jsonl').is_file()


def test_sampler_latents_are_what_generate_renders(setup):
    G, ws = setup['G'], torch.from_numpy(setup['ws']).float()
    torch.manual_seed(0)
    sampler = LatentSampler(dict(num_ws=G.synthesis.num_ws, w_dim=W_DIM, base_channels=8, channel_mults=(1, 2)),
                            dict(num_timesteps=4))
    sampler.normalizer.fit(ws)
    first = mixing.default_first_layer(G.synthesis.num_ws)
    path = str(setup['root'] / 'sampler.pt')
    save_sampler_snapshot(path, sampler, dnnlib.util.file_sha256(setup['pkl']), 0.1, first, {})
    np.save(setup['root'] / 'ws.npy', setup['ws'])
    ours = _prdc_w(setup, setup['root'] / 'ws.npy', sampler_pkl=path, seed=5)
    fake = pipeline.sample_latents(G, sampler.eval(), list(range(5, 5 + NUM)), 0.1, first)   # seeds 5 .. 204
    expected = compute_prdc(setup['ws'].reshape(NUM, -1), fake.double().flatten(1).numpy(), 5)
    for key in KEYS:
        assert abs(ours[key] - expected[key]) < 1e-9, (key, ours, expected)


def test_latent_options_fail_with_one_line_errors(setup, tmp_path):
    root = setup['root']
    np.save(tmp_path / 'wrong_dim.npy', np.zeros([50, W_DIM + 1]))
    np.savez(tmp_path / 'two.npz', a=np.zeros([50, W_DIM]), b=np.zeros([50, W_DIM]))
    np.save(tmp_path / 'nan.npy', np.full([50, W_DIM], np.nan))
    np.save(tmp_path / 'few.npy', np.zeros([3, W_DIM]))
    (tmp_path / 'latents.txt').write_text('1 2 3')
    (tmp_path / 'bad.npy').write_bytes(b'not numpy')
    np.save(root / 'w.npy', setup['ws'][:, 0])
    cases = [
        (dict(data=tmp_path / 'wrong_dim.npy'), f'expected W [N, {W_DIM}]'),
        (dict(data=tmp_path / 'two.npz'), 'holds 2 arrays'),
        (dict(data=tmp_path / 'nan.npy'), 'NaN'),
        (dict(data=tmp_path / 'few.npy'), 'more than 5 real latents'),
        (dict(data=tmp_path / 'latents.txt'), '.npy or .npz'),
        (dict(data=tmp_path / 'bad.npy'), 'cannot read latents'),
        (dict(data=None), 'pass --data LATENTS.npy'),
        (dict(data=root / 'w.npy', metrics='prdc_tiny,fid_tiny'), 'only the prdc* metrics'),
        (dict(data=root / 'w.npy', gpus=2), 'drop --gpus'),
        (dict(data=root / 'w.npy', sampler_pkl=str(tmp_path / 'missing.pt')), "--sampler: file not found"),
    ]
    for kwargs, match in cases:
        kwargs = dict(dict(metrics='prdc_tiny', features='w', verbose=False), **kwargs)
        kwargs['data'] = None if kwargs['data'] is None else str(kwargs['data'])
        with pytest.raises(Exception, match=match.replace('[', r'\[').replace('*', r'\*')) as info:
            calc_metrics.calc_metrics(setup['pkl'], **kwargs)
        assert '\n' not in str(info.value)
    with pytest.raises(Exception, match='only used with --features w'):
        calc_metrics.calc_metrics(setup['pkl'], metrics='prdc_tiny', sampler_pkl=str(root / 'w.npy'), verbose=False)


def test_cli_features_w(setup, capsys):
    np.save(setup['root'] / 'w.npy', setup['ws'][:, 0])
    code, out, _ = run_cli_inprocess(calc_metrics.main, ['--network', setup['pkl'], '--metrics', 'prdc_tiny',
                                     '--features', 'w', '--data', str(setup['root'] / 'w.npy'),
                                     '--tiny-items', str(NUM), '--verbose', 'false'], capsys)
    assert code == 0 and '"prdc_tiny_coverage"' in out
    code, out, err = run_cli_inprocess(calc_metrics.main, ['--network', setup['pkl'], '--metrics', 'prdc_tiny',
                                       '--features', 'w'], capsys)
    assert code != 0 and '--data' in err and 'Traceback' not in err

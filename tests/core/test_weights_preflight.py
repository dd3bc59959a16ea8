"""Fail in seconds when a pretrained weight is missing (issue 9, item 5): a run lists every file it
will load (metric detectors, CLIP models of NADA tasks, LPIPS) and checks them before any run
folder exists; offline (no network in tests, and $DNNLIB_OFFLINE set to be sure) that is one
line at once, with no download attempt and no hub retries."""

import json
import os
import subprocess
import sys
import time

import pytest

import dnnlib
from conftest import REPO_ROOT
from metrics import feature_networks, metric_main
from training import launch
from training.expansion import evaluation  # noqa: F401 (registers the expansion metrics)
from training.expansion.tasks import shared_models
from training.synthetic_data import make_synthetic_dataset

INCEPTION = ('detector', feature_networks.INCEPTION_URL)
VGG16 = ('detector', feature_networks.VGG16_URL)
EXPANSION_LOSS = 'training.expansion.loss.DomainExpansionLoss'


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """Empty download caches and the offline switch; any network attempt fails the test."""
    monkeypatch.setenv(dnnlib.util.OFFLINE_ENV, '1')
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'dnnlib_cache'))
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.delenv(feature_networks.DETECTOR_DIR_ENV, raising=False)
    import huggingface_hub
    from huggingface_hub import constants as hub_constants
    monkeypatch.setattr(hub_constants, 'HF_HUB_CACHE', str(tmp_path / 'hf_cache'))

    def no_network(*args, **kwargs):
        raise AssertionError('a download was attempted although the host is known to be unreachable')
    monkeypatch.setattr(dnnlib.util, '_download', no_network)
    monkeypatch.setattr(huggingface_hub, 'hf_hub_download', no_network)
    import open_clip.pretrained
    monkeypatch.setattr(open_clip.pretrained, 'hf_hub_download', no_network)


def _nada_options(metrics=(), lambda_recon_lpips=0.0, **loss_kwargs):
    cfg = {'tasks': [{'type': 'NADA', 'args': {'source_text': 'photo', 'target_text': 'sketch'}},
                     {'type': 'Transform', 'args': {'transform': 'grayscale'}}],
           'tasks_losses': {'NADA': {'clip_models': ['ViT-B/32']}}}
    return dict(metrics=list(metrics), loss_kwargs=dict(class_name=EXPANSION_LOSS, expansion_cfg=cfg,
                                                        lambda_recon_lpips=lambda_recon_lpips, **loss_kwargs))


def test_a_run_lists_the_weights_it_will_load():
    assert metric_main.pretrained_weights('fid50k_full') == (INCEPTION,)
    assert metric_main.pretrained_weights('pr50k3_full') == (VGG16,)
    assert metric_main.pretrained_weights('lpips_diversity1k') == (('lpips', 'alex'),)
    assert metric_main.pretrained_weights('clip_error1k') == (('clip', evaluation.CLIP_ERROR_MODEL),)
    # Every registered metric either declares its files or needs none of the detectors above.
    assert {w for m in metric_main.list_valid_metrics() for w in metric_main.pretrained_weights(m)} >= {INCEPTION, VGG16}

    options = _nada_options(metrics=['fid50k_full', 'kid50k_full'], lambda_recon_lpips=1.0)
    assert launch.pretrained_weights(options) == (INCEPTION, ('clip', 'ViT-B/32'), ('lpips', 'alex'))
    # NADA's default CLIP pair, MyStyle's LPIPS; a random LPIPS backbone needs no file.
    options['loss_kwargs']['expansion_cfg'] = {'tasks': [
        {'type': 'NADA', 'args': {'target_text': 'sketch'}},
        {'type': 'MyStyle', 'args': {'images_dir': 'x', 'anchors_dir': 'y'}}]}
    assert launch.pretrained_weights(options) == (INCEPTION, ('clip', 'ViT-B/32'), ('clip', 'ViT-B/16'),
                                                  ('lpips', 'alex'))
    options['loss_kwargs']['lpips_random_backbone'] = True
    assert launch.pretrained_weights(options) == (INCEPTION, ('clip', 'ViT-B/32'), ('clip', 'ViT-B/16'))
    assert launch.pretrained_weights(dict(metrics=[], loss_kwargs=dict(class_name='training.loss.StyleGAN2Loss'))) == ()


@pytest.mark.parametrize('what', ['detector', 'clip', 'lpips'])
def test_offline_missing_weight_is_one_line_at_once(offline, what):
    options = dict(detector=dict(metrics=['fid50k_full']),
                   clip=_nada_options(),
                   lpips=dict(metrics=['lpips_diversity_tiny']))[what]
    start = time.time()
    with pytest.raises(dnnlib.util.UserError) as info:
        launch.check_pretrained_weights(options)
    message = str(info.value)
    print(f'{what}: failed after {time.time() - start:.2f} s: {message}')
    assert '\n' not in message and 'offline' in message
    assert {'detector': 'inception-2015-12-05.pt', 'clip': "CLIP model 'ViT-B/32'",
            'lpips': 'alexnet-owt-7be5be79.pth'}[what] in message


def test_present_weights_pass_without_network(offline, tmp_path, monkeypatch):
    # A registered stand-in, a detector file in the detector dir, a cached LPIPS backbone file.
    detector_dir = tmp_path / 'detectors'
    detector_dir.mkdir()
    (detector_dir / os.path.basename(feature_networks.VGG16_URL)).write_bytes(b'not loaded by the check')
    monkeypatch.setenv(feature_networks.DETECTOR_DIR_ENV, str(detector_dir))
    url, target = shared_models._lpips_backbone_file('alex')
    os.makedirs(os.path.dirname(target))
    open(target, 'wb').close()
    feature_networks.register_detector(feature_networks.INCEPTION_URL, feature_networks.RandomDetector(seed=0))
    try:
        launch.check_pretrained_weights(dict(metrics=['fid50k_full', 'pr50k3_full', 'lpips_diversity_tiny']))
    finally:
        feature_networks.unregister_detector(feature_networks.INCEPTION_URL)
    os.remove(detector_dir / os.path.basename(feature_networks.VGG16_URL))
    with pytest.raises(feature_networks.DetectorUnavailableError, match=f'vgg16.pt.*{detector_dir}'):
        launch.check_pretrained_weights(dict(metrics=['pr50k3_full']))


def test_train_with_default_metrics_offline_fails_before_any_folder(tmp_path):
    data = make_synthetic_dataset(str(tmp_path / 'data.zip'), num_images=8, resolution=16, seed=1)
    outdir = tmp_path / 'runs'
    env = dict(os.environ, OMP_NUM_THREADS='1', DNNLIB_CACHE_DIR=str(tmp_path / 'cache'))
    env[dnnlib.util.OFFLINE_ENV] = '1'
    env.pop(feature_networks.DETECTOR_DIR_ENV, None)
    proc = subprocess.run([sys.executable, 'train.py', '--outdir', str(outdir), '--data', data, '--cfg', 'tiny',
                           '--workers', '0'], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)
    output = proc.stdout + proc.stderr
    last = output.strip().splitlines()[-1]
    assert proc.returncode != 0 and 'Traceback' not in output, output[-3000:]
    assert 'inception-2015-12-05.pt' in last and 'offline' in last and '--detector-dir' in last, last
    assert 'tick 0' not in output and not outdir.exists()
    assert json.loads(json.dumps(os.listdir(tmp_path))) == ['data.zip']


def test_demo_says_on_screen_when_lpips_falls_back(offline, capsys):
    import demo
    models = demo.lpips_models('cpu')
    assert models.lpips_random_backbone and models.lpips_backbone('alex') == 'random-init (offline)'
    out = capsys.readouterr().out
    assert 'random-init AlexNet backbone' in out and 'alexnet-owt-7be5be79.pth' in out

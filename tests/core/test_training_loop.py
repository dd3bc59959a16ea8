"""The training loop on a tiny model and a synthetic dataset, on CPU: outputs of a run, the
generated distribution moving toward the data, exact continuation from a snapshot, non-finite
detection, and the small formulas (EMA, ADA, lazy-regularisation optimizer settings)."""

import json
import os
import types

import numpy as np
import pytest
import torch

import legacy
from training import launch, run_options
from torch_utils import training_stats
from training import loop_setup
from training import loop_state
from training import presets
from training import training_loop as tl
from training.loss import Loss, StyleGAN2Loss
from training.synthetic_data import make_synthetic_dataset


pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def dataset_zip(tmp_path_factory):
    return make_synthetic_dataset(str(tmp_path_factory.mktemp('data') / 'shapes16.zip'), num_images=32,
                                  resolution=16, seed=1)


def tiny_options(data, outdir, **flags):
    flags = dict(dict(cfg='tiny', metrics='none', workers=0, snap=1), **flags)
    return run_options.setup_training_options(data=data, outdir=str(outdir), **flags)


def load(path):
    return legacy.load_network_pkl(path)


def pixel_moments(images: torch.Tensor) -> np.ndarray:
    """Per-channel mean and std of images [N, C, H, W] in [-1, 1] -> [2, C]."""
    x = images.double()
    return np.stack([x.mean(dim=(0, 2, 3)).numpy(), x.std(dim=(0, 2, 3)).numpy()])


def moment_distance(G_ema, real_moments, n=64) -> float:
    z = torch.randn([n, G_ema.z_dim], generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        fake = G_ema(z, torch.zeros([n, 0]), noise_mode='const')
    return float(np.abs(pixel_moments(fake) - real_moments).sum())

# ---------------------------------------------------------------------------------------------


@pytest.fixture
def random_inception(tmp_path, monkeypatch):
    """A random network in place of Inception (nothing is downloaded); metric caches in tmp_path."""
    from metrics import feature_networks
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    feature_networks.register_detector(feature_networks.INCEPTION_URL, feature_networks.RandomDetector(seed=0))
    yield
    feature_networks.unregister_detector(feature_networks.INCEPTION_URL)


def test_tiny_run_outputs_and_learning(dataset_zip, tmp_path, random_inception):
    outdir = tmp_path / 'runs'
    opts = tiny_options(dataset_zip, outdir, kimg=0.32, snap=4, tick=0.04, metrics='fid_tiny')
    result = launch.launch_training(opts, str(outdir))
    run_dir = result['run_dir']
    assert os.path.basename(run_dir) == '00000-shapes16-tiny-kimg0.32-ada'

    # Ticks, statistics, images, snapshots.
    with open(os.path.join(run_dir, 'log.txt')) as f:
        ticks = [line for line in f if line.startswith('tick ')]
    with open(os.path.join(run_dir, 'stats.jsonl')) as f:
        stats = [json.loads(line) for line in f]
    assert len(ticks) == len(stats) == 9  # tick 0 after the first step, then every 40 images up to 320
    for name in ('Loss/G/loss', 'Loss/D/loss', 'Loss/r1_penalty', 'Loss/pl_penalty', 'Progress/kimg', 'Progress/augment'):
        assert name in stats[-1], name
    assert stats[-1]['Progress/kimg']['mean'] == pytest.approx(0.32)
    with open(os.path.join(run_dir, 'metric-fid_tiny.jsonl')) as f:
        metric_lines = [json.loads(line) for line in f]
    assert [m['snapshot_pkl'] for m in metric_lines] == [
        'network-snapshot-000000.004.pkl', 'network-snapshot-000000.164.pkl', 'network-snapshot-000000.320.pkl']
    assert np.isfinite(stats[-1]['Metrics/fid_tiny']['mean'])
    files = set(os.listdir(run_dir))
    assert {'training_options.json', 'reals.png', 'fakes_init.png', 'fakes000000.004.png', 'fakes000000.320.png',
            'network-snapshot-000000.004.pkl', 'network-snapshot-000000.164.pkl',
            'network-snapshot-000000.320.pkl'} <= files
    assert any(f.startswith('events.out.tfevents') for f in files)
    with open(os.path.join(run_dir, 'training_options.json')) as f:
        assert json.load(f)['run_dir'] == run_dir

    first = load(os.path.join(run_dir, 'network-snapshot-000000.004.pkl'))
    last = load(os.path.join(run_dir, 'network-snapshot-000000.320.pkl'))
    assert set(first) >= {'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs', 'resume_state'}
    assert not last['G_ema'].training and last['resume_state']['progress']['cur_nimg'] == 320

    # The statistic: per-channel mean and std of generated pixels vs the data's (L1 over channels).
    from training.dataset import ImageFolderDataset
    data = ImageFolderDataset(dataset_zip)
    reals = torch.from_numpy(np.stack([data[i][0] for i in range(len(data))])).double() / 127.5 - 1
    real_moments = pixel_moments(reals)
    d_first = moment_distance(first['G_ema'], real_moments)
    d_last = moment_distance(last['G_ema'], real_moments)
    print(f'pixel-moment distance to the data: after 4 images {d_first:.3f}, after 320 images {d_last:.3f}')
    assert d_last < 0.6 * d_first


def _snapshot_tensors(data: dict) -> dict:
    out = {}
    for key in ('G', 'D', 'G_ema'):
        out.update({f'{key}.{n}': t for n, t in data[key].state_dict().items()})
    state = data['resume_state']
    for name, opt in state['optimizers'].items():
        for idx, entry in opt['state'].items():
            out.update({f'opt{name}.{idx}.{k}': torch.as_tensor(v) for k, v in entry.items()})
    out['pl_mean'] = torch.as_tensor(state['per_rank'][0]['loss']['pl_mean'])
    out['augment_p'] = torch.as_tensor(state['augment_p'])
    return out


def test_continued_run_matches_uninterrupted(dataset_zip, tmp_path):
    # Snapshots every tick of 20 images: ticks end at 4, 24, 44 images (steps 1, 6, 11).
    def options(outdir, kimg):
        opts = tiny_options(dataset_zip, outdir, kimg=kimg, tick=0.02)
        opts.ada_kimg = 0.05    # p moves by 0.32 per adjustment ...
        opts.ada_target = -1.0  # ... and always upwards, so the restored p matters (test-only value).
        return opts

    full = launch.launch_training(options(tmp_path / 'full', 0.044), str(tmp_path / 'full'))
    part = launch.launch_training(options(tmp_path / 'part', 0.024), str(tmp_path / 'part'))
    second = part['last_snapshot']
    assert second.endswith('network-snapshot-000000.024.pkl')
    # Continue the interrupted run in its own folder with the longer schedule.
    opts = options(tmp_path / 'part', 0.044)
    opts.run_dir = part['run_dir']
    cont = tl.training_loop(dict(opts), continue_pkl=second)
    assert cont['last_snapshot'].endswith('network-snapshot-000000.044.pkl')
    assert cont['batch_idx'] == 11 and cont['cur_nimg'] == 44 and cont['cur_tick'] == 3

    a = _snapshot_tensors(load(full['last_snapshot']))
    b = _snapshot_tensors(load(cont['last_snapshot']))
    assert a.keys() == b.keys()
    assert float(a['augment_p']) > 0.3
    max_diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    print(f'continued vs uninterrupted: max abs difference over {len(a)} tensors = {max_diff:.3g}')
    assert max_diff <= 1e-6  # Bit-exact on CPU in practice; the bound allows for other BLAS builds.


class NaNAfterLoss(StyleGAN2Loss):
    """StyleGAN2Loss whose D loss on fakes becomes nan from `nan_from_nimg` images on."""

    def __init__(self, nan_from_nimg, **kwargs):
        super().__init__(**kwargs)
        self.nan_from_nimg = nan_from_nimg

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        if phase == 'Dmain' and cur_nimg >= self.nan_from_nimg:
            gain = float('nan')
        super().accumulate_gradients(phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg)


def test_nonfinite_gradient_stops_the_run(dataset_zip, tmp_path):
    opts = tiny_options(dataset_zip, tmp_path, kimg=0.1, tick=0.02, aug='noaug')
    opts.loss_kwargs.update(class_name=f'{__name__}.NaNAfterLoss', nan_from_nimg=12)
    with pytest.raises(tl.NonFiniteError) as info:
        launch.launch_training(opts, str(tmp_path))
    message = str(info.value)
    assert "phase 'Dmain'" in message and 'step 3' in message
    assert message.endswith('network-snapshot-000000.004.pkl')  # the last good snapshot


def test_ema_update_formula():
    G, G_ema = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    G.register_buffer('w_avg', torch.ones(2))
    G_ema.register_buffer('w_avg', torch.zeros(2))
    before = [p.detach().clone() for p in G_ema.parameters()]
    ctx = types.SimpleNamespace(G=G, G_ema=G_ema, progress=types.SimpleNamespace(cur_nimg=1000),
                                opts=types.SimpleNamespace(ema_kimg=10, ema_rampup=0.05, batch_size=32))
    tl._update_ema(ctx)
    beta = 0.5 ** (32 / min(10_000, 1000 * 0.05))  # ramp-up caps the half-life at 50 images
    for p_ema, p_old, p in zip(G_ema.parameters(), before, G.parameters()):
        torch.testing.assert_close(p_ema.detach(), p.detach() + beta * (p_old - p.detach()))
    torch.testing.assert_close(G_ema.w_avg, torch.ones(2))


def test_ada_adjustment_formula():
    training_stats.reset_all()
    pipe = types.SimpleNamespace(p=torch.tensor(0.1))
    ada = loop_setup.ada_collector(pipe, 0.6, torch.device('cpu'))
    ctx = types.SimpleNamespace(ada_stats=ada, augment_pipe=pipe,
                                opts=types.SimpleNamespace(ada_target=0.6, batch_size=64, ada_interval=4, ada_kimg=500))
    training_stats.report('Loss/signs/real', [1.0, 1.0, 1.0, -1.0])  # r_t = 0.5 < target: p goes down
    tl._adjust_ada(ctx)
    assert float(pipe.p) == pytest.approx(0.1 - 64 * 4 / 500_000)
    training_stats.report('Loss/signs/real', [1.0])
    pipe.p = torch.tensor(0.0)
    tl._adjust_ada(ctx)
    assert float(pipe.p) == pytest.approx(64 * 4 / 500_000)
    tl._adjust_ada(ctx)  # No new values: p stays.
    assert float(pipe.p) == pytest.approx(64 * 4 / 500_000)


def test_lazy_regularisation_optimizer_settings():
    G, D = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)

    class OnlyWeights(Loss):
        def trainable_params(self, name, module):
            return [module.weight]

    kwargs = dict(class_name='torch.optim.Adam', lr=0.002, betas=[0, 0.99], eps=1e-8)
    opts, params = loop_setup.build_optimizers(OnlyWeights(), G, D, kwargs, kwargs, 4, None)
    g_group, d_group = opts['G'].param_groups[0], opts['D'].param_groups[0]
    assert g_group['lr'] == pytest.approx(0.002 * 4 / 5)
    assert g_group['betas'][1] == pytest.approx(0.99 ** (4 / 5)) and g_group['betas'][0] == 0
    assert d_group['lr'] == 0.002 and tuple(d_group['betas']) == (0, 0.99)
    assert params['G'] == [G.weight] and len(g_group['params']) == 1


def test_presets_follow_the_spec():
    auto = presets.resolve_preset('auto', resolution=256, gpus=2)
    assert (auto['mb'], auto['mbstd'], auto['fmaps'], auto['lrate']) == (32, 4, 0.5, 0.0025)
    assert auto['gamma'] == pytest.approx(0.0002 * 256 ** 2 / 32) and auto['ema'] == pytest.approx(10)
    assert auto['channel_base'] == 16384 and auto['map'] == 2
    assert presets.resolve_preset('stylegan2', 1024, 1)['lrate'] == 0.002
    assert presets.resolve_preset('stylegan2', 1024, 1, expansion=True)['lrate'] == 0.001
    assert presets.resolve_preset('paper256', 256, 1, expansion=True)['lrate'] == 0.0025
    cifar = presets.resolve_preset('cifar', 32, 2)
    assert (cifar['pl_weight'], cifar['style_mixing_prob'], cifar['D_architecture']) == (0, 0, 'orig')
    assert presets.default_grid_size(1024) == (7, 4) and presets.default_grid_size(16) == (32, 32)
    with pytest.raises(ValueError, match="--cfg: unknown preset 'nope'; choose one of auto, stylegan2"):
        presets.resolve_preset('nope', 256, 1)


def test_snapshot_names_and_run_matching(tmp_path):
    assert loop_state.kimg_label(123_456, fractional=False) == '000123'
    assert loop_state.kimg_label(44, fractional=True) == '000000.044'
    for name in ('network-snapshot-000123.pkl', 'network-snapshot-000000.044.pkl'):
        (tmp_path / '00003-x').mkdir(exist_ok=True)
        (tmp_path / '00003-x' / name).write_bytes(b'')
    assert [k for k, _ in loop_state.list_snapshots(str(tmp_path / '00003-x'))] == [0.044, 123.0]
    assert loop_state.next_run_dir(str(tmp_path), 'y').endswith('00004-y')

    options = dict(a=1, nested=dict(b=[1, 2]), run_dir='/somewhere')
    (tmp_path / '00003-x' / 'training_options.json').write_text(json.dumps(options))
    assert loop_state.find_matching_run(str(tmp_path), dict(options, run_dir='/elsewhere')) == str(tmp_path / '00003-x')
    assert loop_state.find_matching_run(str(tmp_path), dict(options, a=2)) is None
    assert loop_state.options_diff(options, dict(options, nested=dict(b=[1]))) == ['nested.b: [1, 2] -> [1]']
    assert loop_state.find_latest_run_with_snapshot(str(tmp_path)) == str(tmp_path / '00003-x')


class GOnlyLoss(StyleGAN2Loss):
    """Trains only G (as an expansion loss with --lambda_src=0 may): no phase needs real images."""

    def get_phases(self, G_reg_interval, D_reg_interval):
        return [phase for phase in super().get_phases(G_reg_interval, D_reg_interval) if phase.module == 'G']


def test_loop_runs_without_data_when_no_phase_needs_it(dataset_zip, tmp_path):
    opts = tiny_options(dataset_zip, tmp_path, kimg=0.008, tick=0.004, aug='noaug')
    opts.training_set_kwargs = None
    opts.loss_kwargs['class_name'] = f'{__name__}.GOnlyLoss'
    opts.run_dir = str(tmp_path / 'nodata')
    os.makedirs(opts.run_dir)
    result = tl.training_loop(dict(opts))
    assert result['cur_nimg'] == 8
    files = set(os.listdir(opts.run_dir))
    assert 'reals.png' not in files and 'fakes_init.png' in files
    data = load(result['last_snapshot'])
    assert data['training_set_kwargs'] is None
    assert data['resume_state']['optimizers']['D']['state'] == {}  # D was never stepped

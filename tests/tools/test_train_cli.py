"""train.py: one-line errors before any work, --dry-run, --resume from a pickle's own architecture,
the W&B sink without login, and a run killed with SIGKILL that continues exactly when the same
command runs again."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import legacy
import train
from training import launch, run_options
from conftest import REPO_ROOT
from tiny_nets import snapshot_data, tiny_discriminator, tiny_generator
from training import logging_sinks
from training import loop_state
from training import snapshot_io
from training.synthetic_data import make_synthetic_dataset

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def data16(tmp_path_factory):
    return make_synthetic_dataset(str(tmp_path_factory.mktemp('data') / 'shapes16.zip'), num_images=24,
                                  resolution=16, seed=2)


def write_pngs(folder, sizes):
    os.makedirs(folder, exist_ok=True)
    for i, (w, h) in enumerate(sizes):
        PIL.Image.fromarray(np.full([h, w, 3], 100, dtype=np.uint8)).save(os.path.join(folder, f'{i}.png'))
    return str(folder)


def tiny_pickle(path, resolution=32, channels=3, num_layers=1):
    """A snapshot of a small G/D whose architecture differs from --cfg tiny (1 mapping layer, narrower)."""
    G = tiny_generator(16, resolution=resolution, channels=channels, mapping_layers=num_layers, channel_base=256)
    D = tiny_discriminator(resolution=resolution, channels=channels, channel_base=256,
                           epilogue_kwargs=dict(mbstd_group_size=2))
    snapshot_io.save_network_pkl(snapshot_data(G.eval(), D.eval()), path)
    return str(path)


def invoke(args):
    result = CliRunner().invoke(train.main, args, catch_exceptions=False)
    lines = [line for line in result.output.splitlines() if line.strip()]
    return result.exit_code, lines

# ---------------------------------------------------------------------------------------------


def error_cases(tmp_path, data16):
    mixed = write_pngs(tmp_path / 'mixed', [(16, 16), (32, 32)])
    nonsquare = write_pngs(tmp_path / 'nonsquare', [(16, 8), (16, 8)])
    big = tiny_pickle(tmp_path / 'res32.pkl', resolution=32)
    gray = tiny_pickle(tmp_path / 'gray16.pkl', resolution=16, channels=1)
    return [
        (['--data', str(tmp_path / 'missing.zip')], '--data', 'missing.zip'),
        (['--data', mixed], 'different resolutions', 'dataset_tool.py'),
        (['--data', nonsquare], 'must be square', '16x8'),
        (['--data', data16, '--cond', '1'], '--cond', 'labels'),
        (['--data', data16, '--gpus', '4', '--batch', '6'], '--batch=6', '--gpus=4'),
        (['--data', data16, '--cfg', 'huge'], "--cfg: unknown preset 'huge'", 'tiny'),
        (['--data', data16, '--augpipe', 'bgx'], "--augpipe: unknown preset 'bgx'", 'bgcfnc'),
        (['--data', data16, '--resume', big], 'img_resolution=32', 'img_resolution=16'),
        (['--data', data16, '--resume', gray], 'img_channels=1', 'img_channels=3'),
        (['--data', data16, '--lambda_src', '0'], '--lambda_src', '--expansion_cfg_file'),
        (['--data', data16, '--metrics', 'fid_nope'], "--metrics: unknown metric 'fid_nope'", 'none'),
    ]


def test_bad_input_gives_one_line_error_and_creates_nothing(tmp_path, data16):
    outdir = tmp_path / 'out'
    for args, *needles in error_cases(tmp_path, data16):
        code, lines = invoke(['--outdir', str(outdir), '--cfg', 'tiny', *args] if '--cfg' not in args
                             else ['--outdir', str(outdir), *args])
        assert code != 0, args
        assert lines[-1].startswith('Error: '), (args, lines[-3:])
        for needle in needles:
            assert needle in lines[-1], (needle, lines[-1])
        assert not any('Traceback' in line for line in lines)
        assert not outdir.exists(), args


def test_wandb_online_without_login_is_refused(tmp_path, data16, monkeypatch):
    monkeypatch.delenv('WANDB_API_KEY', raising=False)
    monkeypatch.setenv('NETRC', str(tmp_path / 'no-netrc'))
    code, lines = invoke(['--outdir', str(tmp_path / 'out'), '--data', data16, '--cfg', 'tiny', '--wandb', 'online'])
    assert code != 0 and 'wandb login' in lines[-1] and '--wandb offline' in lines[-1]
    assert not (tmp_path / 'out').exists()


def test_cli_error_in_a_real_process(tmp_path):
    proc = subprocess.run([sys.executable, 'train.py', '--outdir', str(tmp_path / 'out'), '--data',
                           str(tmp_path / 'nothing'), '--metrics', 'none'], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    output = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode != 0
    assert output[-1].startswith('Error: --data') and 'no such file or directory' in output[-1]
    assert 'Traceback' not in proc.stderr
    assert not (tmp_path / 'out').exists()


def test_dry_run_prints_options_and_creates_nothing(tmp_path, data16):
    outdir = tmp_path / 'out'
    code, lines = invoke(['--outdir', str(outdir), '--data', data16, '--cfg', 'tiny', '--metrics', 'none', '--dry-run'])
    assert code == 0
    assert lines[-1].startswith('Dry run: would start the new run') and 'nothing was created' in lines[-1]
    options = json.loads('\n'.join(lines[:-1]))
    assert options['run_dir'].endswith('00000-shapes16-tiny-ada')
    for key in ('G_kwargs', 'D_kwargs', 'G_opt_kwargs', 'D_opt_kwargs', 'loss_kwargs', 'augment_kwargs',
                'training_set_kwargs', 'data_loader_kwargs'):
        assert 'class_name' in options[key], key
    assert options['loss_kwargs']['class_name'] == 'training.loss.StyleGAN2Loss'
    assert not outdir.exists()


def test_resume_pickle_supplies_the_architecture(tmp_path, data16):
    pkl = tiny_pickle(tmp_path / 'start16.pkl', resolution=16)
    opts = run_options.setup_training_options(data=data16, cfg='tiny', resume=pkl, metrics='none', kimg=0.008, workers=0,
                                        outdir=str(tmp_path / 'out'))
    G = legacy.load_network_pkl(pkl)['G']
    assert opts.G_kwargs == dict(class_name='training.networks.Generator', **json.loads(json.dumps(G.init_kwargs)))
    assert opts.G_kwargs['mapping_kwargs'] == {'num_layers': 1}       # not the preset's 2
    assert opts.D_kwargs['epilogue_kwargs'] == {'mbstd_group_size': 2}  # not the preset's 4
    assert opts.ada_kimg == 100 and opts.ema_rampup is None
    assert opts.G_opt_kwargs['lr'] == 0.0025                          # hyperparameters from --cfg
    result = launch.launch_training(opts, str(tmp_path / 'out'))
    with open(os.path.join(result['run_dir'], 'log.txt')) as f:
        log = f.read()
    assert f"Architecture: {pkl} (the pickle's own constructor arguments" in log
    assert f'Resuming weights from {pkl}' in log


def test_wandb_sink_never_touches_the_environment(tmp_path, monkeypatch):
    calls = {}

    class FakeRun:
        def log(self, values):
            calls.setdefault('log', []).append(values)

        def finish(self):
            calls['finish'] = True

    class FakeWandb:
        class Settings(dict):
            def __init__(self, **kwargs):
                super().__init__(**kwargs)

        @staticmethod
        def init(**kwargs):
            calls['init'] = kwargs
            return FakeRun()

    monkeypatch.setitem(sys.modules, 'wandb', FakeWandb)
    env_before = dict(os.environ)
    log = logging_sinks.RunLog(None)
    options = dict(logging=dict(tensorboard=False, wandb=dict(mode='offline', project='p', name=None, tags=['a'])))
    sinks = logging_sinks.make_sinks(str(tmp_path), options['logging'], options, 0.0, False, log)
    assert [type(s).__name__ for s in sinks] == ['JsonlSink', 'WandbSink']
    init = calls['init']
    assert init['mode'] == 'offline' and init['settings']['console'] == 'off' and init['tags'] == ['a']
    assert init['name'] == os.path.basename(str(tmp_path)) and init['resume'] == 'allow'
    for sink in sinks:
        sink.write({'Loss/G/loss': dict(num=2, mean=0.5, std=0.1)}, 2000, 1.0)
        sink.close()
    assert calls['log'] == [{'Loss/G/loss': 0.5, 'Progress/kimg': 2.0}] and calls['finish']
    assert dict(os.environ) == env_before
    # The run id is kept, so a continued run logs into the same W&B run.
    logging_sinks.make_sinks(str(tmp_path), options['logging'], options, 0.0, False, log)
    assert calls['init']['id'] == init['id']

# ---------------------------------------------------------------------------------------------


def _final_tensors(path):
    data = legacy.load_network_pkl(path)
    out = {}
    for key in ('G', 'D', 'G_ema'):
        out.update({f'{key}.{n}': t for n, t in data[key].state_dict().items()})
    for name, opt in data['resume_state']['optimizers'].items():
        for idx, entry in opt['state'].items():
            out.update({f'opt{name}.{idx}.{k}': torch.as_tensor(v) for k, v in entry.items()})
    out['augment_p'] = torch.as_tensor(data['resume_state']['augment_p'])
    return out, data['resume_state']


def test_sigkill_then_same_command_continues_exactly(tmp_path, data16):
    outdir = tmp_path / 'out'
    flags = dict(data=data16, cfg='tiny', kimg=0.08, tick=0.02, snap=1, metrics='none', workers=1)
    cmd = [sys.executable, 'train.py', '--outdir', str(outdir)]
    for key, value in flags.items():
        cmd += [f'--{key}', str(value)]
    env = dict(os.environ, OMP_NUM_THREADS='1')

    # Start, and kill -9 as soon as the second snapshot exists.
    with open(tmp_path / 'first.log', 'wb') as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 120
        run_dir = None
        while time.time() < deadline and proc.poll() is None:
            runs = loop_state.list_run_dirs(str(outdir))
            if runs and len(loop_state.list_snapshots(runs[-1][1])) >= 2:
                run_dir = runs[-1][1]
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert run_dir is not None, (tmp_path / 'first.log').read_text()[-2000:]
    kimg_at_kill, snapshot_at_kill = loop_state.list_snapshots(run_dir)[-1]
    assert kimg_at_kill < 0.08
    # What a kill in the middle of a snapshot write leaves behind.
    (open(os.path.join(run_dir, '.network-snapshot-000000.999.pkl.0badf00d.tmp'), 'wb')).close()

    # The same command again: continues that run from its newest snapshot.
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f'Continuing from {snapshot_at_kill} at {kimg_at_kill:g} kimg' in proc.stdout
    assert [p for _, p in loop_state.list_run_dirs(str(outdir))] == [run_dir]
    assert not [n for n in os.listdir(run_dir) if n.endswith('.tmp')]
    with open(os.path.join(run_dir, 'stats.jsonl')) as f:
        kimgs = [json.loads(line)['Progress/kimg']['mean'] for line in f]
    assert kimgs == sorted(set(kimgs)) and kimgs[-1] == pytest.approx(0.08)

    # Compare with a run that was never interrupted (same options, in this process).
    opts = run_options.setup_training_options(outdir=str(tmp_path / 'ref'), **flags)
    reference = launch.launch_training(opts, str(tmp_path / 'ref'))
    a, state_a = _final_tensors(reference['last_snapshot'])
    b, state_b = _final_tensors(loop_state.latest_snapshot(run_dir))
    assert state_a['progress'] == state_b['progress'] == dict(cur_nimg=80, cur_tick=5, batch_idx=20, tick_start_nimg=80)
    assert a.keys() == b.keys()
    max_diff = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    print(f'SIGKILL at {kimg_at_kill:g} kimg, continued vs uninterrupted: max abs difference {max_diff:.3g}')
    assert max_diff <= 1e-6


def test_resume_latest_continues_the_newest_run_with_new_options(tmp_path, data16):
    outdir = str(tmp_path / 'out')
    flags = dict(data=data16, cfg='tiny', metrics='none', workers=0, snap=1, tick=0.004, outdir=outdir)
    first = launch.launch_training(run_options.setup_training_options(kimg=0.008, **flags), outdir)
    more = run_options.setup_training_options(kimg=0.016, resume='latest', **flags)
    assert launch.plan_run(more, outdir) == dict(run_dir=first['run_dir'], continue_pkl=first['last_snapshot'],
                                                mode='continue')
    second = launch.launch_training(more, outdir)
    assert second['run_dir'] == first['run_dir'] and second['cur_nimg'] == 16 and second['batch_idx'] == 4
    with open(os.path.join(first['run_dir'], 'log.txt')) as f:
        log = f.read()
    assert 'Changed option total_kimg: 0.008 -> 0.016' in log
    # Running the same command once more finds nothing left to do.
    third = launch.launch_training(run_options.setup_training_options(kimg=0.016, resume='latest', **flags), outdir)
    with open(os.path.join(first['run_dir'], 'log.txt')) as f:
        assert third['cur_nimg'] == 16 and 'Nothing to do' in f.read()


def test_expansion_flags_resolve_into_loss_kwargs(tmp_path):
    pkl = tiny_pickle(tmp_path / 'source16.pkl', resolution=16)
    cfg = tmp_path / 'gray.json'
    cfg.write_text(json.dumps({'tasks': [{'type': 'Transform', 'args': {'transform': 'grayscale'}}]}))
    opts = run_options.setup_training_options(cfg='stylegan2', resume=pkl, expansion_cfg_file=str(cfg), lambda_src=0,
                                        aug='noaug', outdir=str(tmp_path / 'out'))
    loss = opts.loss_kwargs
    assert loss['class_name'] == 'training.expansion_loss.DomainExpansionLoss'
    assert loss['expansion_cfg']['tasks'][0]['dimension'] == 15  # w_dim 16: the highest free dimension
    assert (loss['lambda_src'], loss['lambda_expand'], loss['lambda_recon_l2'], loss['lambda_recon_lpips'],
            loss['subspace_distance']) == (0.0, 1.0, 10.0, 10.0, 20.0)
    assert opts.G_opt_kwargs['lr'] == 0.001 and opts.D_opt_kwargs['lr'] == 0.001  # the fork's stylegan2 preset
    assert opts.kimg_per_tick == opts.batch_gpu == 4
    assert opts.training_set_kwargs is None and opts.metrics == []

    with pytest.raises(run_options.OptionError, match='--expansion_cfg_file needs --resume PKL'):
        run_options.setup_training_options(cfg='stylegan2', expansion_cfg_file=str(cfg), lambda_src=0, outdir='x')
    with pytest.raises(run_options.OptionError, match='--data is required'):
        run_options.setup_training_options(cfg='stylegan2', resume=pkl, expansion_cfg_file=str(cfg), outdir='x')
    cfg.write_text(json.dumps({'tasks': [{'type': 'Transform', 'args': {'transform': 'sepia'}}]}))
    with pytest.raises(ValueError, match='sepia'):
        run_options.setup_training_options(cfg='stylegan2', resume=pkl, expansion_cfg_file=str(cfg), lambda_src=0,
                                     outdir='x')

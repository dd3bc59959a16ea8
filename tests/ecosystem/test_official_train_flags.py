"""train.py accepts the official command lines: -n, --subset, --resume NAME (official source
networks, from the download cache), the domain-expansion fork's --wandb_log/--name/--tag, and
names snapshots network-snapshot-%06d.pkl when ticks are at least 1 kimg."""

import json

import pytest

import dnnlib
import tiny_nets
import train
from conftest import run_cli_inprocess
from training import loop_state
from training import run_options
from training import snapshot_io
from training.dataset import ImageFolderDataset
from training.synthetic_data import make_synthetic_dataset

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def data16(tmp_path_factory):
    return make_synthetic_dataset(str(tmp_path_factory.mktemp('data') / 'blobs16.zip'), num_images=12,
                                  resolution=16, seed=4)


def _dry_run(args, capsys):
    code, out, err = run_cli_inprocess(train.main, ['-n', *args], capsys)
    assert code == 0, err
    options = json.loads(out[out.index('{'):out.rindex('}') + 1])
    return options, out


def test_dry_run_short_flag_subset_and_fork_aliases(data16, tmp_path, capsys):
    outdir = tmp_path / 'runs'
    options, out = _dry_run(['--outdir', str(outdir), '--data', data16, '--cfg', 'tiny', '--metrics', 'none',
                             '--subset', '5', '--wandb_log', 'true', '--name', 'myrun', '--tag', 'exp1'], capsys)
    assert 'Dry run' in out and not outdir.exists()
    kwargs = options['training_set_kwargs']
    assert kwargs['max_size'] == 5 and kwargs['random_seed'] == 0 and options['desc'].endswith('-subset5')
    dataset = ImageFolderDataset(**{k: v for k, v in kwargs.items() if k != 'class_name'})
    assert len(dataset) == 5  # a random 5 of the 12 images
    dataset.close()
    assert options['logging']['wandb'] == {'mode': 'offline', 'project': None, 'name': 'myrun', 'tags': ['exp1']}
    for flag in ('--wandb_log', '--name myrun', '--tag exp1'):
        assert f'Note: {flag}' in out, flag


def test_subset_larger_than_the_data_is_a_one_line_error(data16, tmp_path, capsys):
    code, out, err = run_cli_inprocess(train.main, ['-n', '--outdir', str(tmp_path / 'r'), '--data', data16,
                                                    '--cfg', 'tiny', '--subset', '99'], capsys)
    last_line = (out + err).strip().splitlines()[-1]
    assert code != 0 and '--subset=99' in last_line and '12 images' in last_line


def test_resume_by_official_name_reads_the_cached_download(data16, tmp_path, monkeypatch):
    """--resume ffhq256 means the official URL; open_url serves it from the cache (no network)."""
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    url = run_options.RESUME_SPECS['ffhq256']
    assert url.endswith('/transfer-learning-source-nets/ffhq-res256-mirror-paper256-noaug.pkl')
    cached = dnnlib.util.url_cache_path(url, dnnlib.util.make_cache_dir_path('downloads'))
    (tmp_path / 'cache' / 'downloads').mkdir(parents=True)
    G = tiny_nets.tiny_generator(resolution=16, seed=0)
    snapshot_io.save_network_pkl(tiny_nets.snapshot_data(G, tiny_nets.tiny_discriminator(resolution=16)), cached)
    options = run_options.setup_training_options(outdir=str(tmp_path / 'runs'), data=data16, cfg='tiny',
                                                 resume='ffhq256', metrics='none')
    assert options.resume_pkl == url
    assert options.G_kwargs['synthesis_kwargs']['channel_max'] == 16  # the architecture came from the pickle
    assert options.ema_rampup is None  # transfer learning, as the official --resume


@pytest.mark.parametrize('name', sorted(run_options.RESUME_SPECS))
def test_resume_by_official_name_offline_is_one_line_before_any_folder(data16, tmp_path, monkeypatch, capsys, name):
    """Offline with an empty cache: the usual one-line download error (URL and where to put the
    file), and no run folder."""
    monkeypatch.setenv('DNNLIB_OFFLINE', '1')
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path / 'cache'))
    outdir = tmp_path / 'runs'
    code, out, err = run_cli_inprocess(train.main, ['--outdir', str(outdir), '--data', data16, '--cfg', 'tiny',
                                                    '--metrics', 'none', '--resume', name], capsys)
    last_line = (out + err).strip().splitlines()[-1]
    url = run_options.RESUME_SPECS[name]
    assert code != 0 and url in last_line and 'offline' in last_line
    assert str(tmp_path / 'cache' / 'downloads') in last_line  # where to place the file
    assert not outdir.exists()


def test_snapshot_names():
    assert loop_state.snapshot_path('run', 24_000, fractional=False).endswith('network-snapshot-000024.pkl')
    assert loop_state.snapshot_path('run', 40, fractional=True).endswith('network-snapshot-000000.040.pkl')

"""calc_metrics.py without --data reads the dataset recorded in the snapshot as data only: its
path and subset options, never its class name (a pickle names nothing we call)."""

import logging

import click
import pytest

import calc_metrics
from conftest import require_fixtures, run_cli_inprocess
from training import snapshot_io

TINY = ('stylegan2_tiny', 'tiny32_snapshot.pkl')


def _snapshot_with_dataset(tmp_path, training_set_kwargs) -> str:
    data = snapshot_io.load_network_pkl(str(require_fixtures(*TINY)))
    out = {key: data[key] for key in ('G', 'D', 'G_ema', 'augment_pipe')}
    path = str(tmp_path / 'net.pkl')
    snapshot_io.save_network_pkl(dict(out, training_set_kwargs=training_set_kwargs), path)
    return path


def test_a_class_named_in_the_snapshot_is_never_called(tmp_path, monkeypatch, capsys):
    # logging.basicConfig(filename=...) creates its log file (when the root logger has no handlers)
    # before it rejects the unknown dataset arguments: the file appears iff the name was called.
    monkeypatch.setattr(logging.root, 'handlers', [])
    marker = tmp_path / 'called.log'
    pkl = _snapshot_with_dataset(tmp_path, dict(class_name='logging.basicConfig', filename=str(marker),
                                                path=str(tmp_path)))
    code, out, err = run_cli_inprocess(calc_metrics.main, ['--network', pkl, '--metrics', 'fid_tiny'], capsys)
    last_line = (out + err).strip().splitlines()[-1]
    assert code != 0 and 'Traceback' not in err
    assert '--data' in last_line and "'logging.basicConfig'" in last_line and 'pass --data' in last_line
    assert not marker.exists()


def test_recorded_dataset_becomes_our_class_with_its_path_and_options(tmp_path):
    G = snapshot_io.load_network_pkl(str(require_fixtures(*TINY)))['G_ema']
    recorded = dict(class_name='training.dataset.ImageFolderDataset', path=str(tmp_path), xflip=True, max_size=7,
                    random_seed=3, use_labels=True, resolution=1024, extra_key='ignored')
    kwargs = calc_metrics.resolve_dataset_kwargs(dict(G_ema=G, training_set_kwargs=recorded), None, None)
    # Resolution and labels follow G_ema (not the record); unknown keys are dropped.
    assert kwargs == dict(class_name='training.dataset.ImageFolderDataset', path=str(tmp_path), xflip=True,
                          max_size=7, random_seed=3, resolution=G.img_resolution, use_labels=False)
    no_class = {k: v for k, v in recorded.items() if k != 'class_name'}
    mirrored = calc_metrics.resolve_dataset_kwargs(dict(G_ema=G, training_set_kwargs=no_class), None, False)
    assert mirrored.class_name == 'training.dataset.ImageFolderDataset' and mirrored.xflip is False


@pytest.mark.parametrize('recorded, message', [
    (dict(class_name='os.system', path='.'), "dataset class 'os.system', which is not ours"),
    (dict(path=['a', 'b']), 'training_set_kwargs.path .* wrong type \\(list\\)'),
    (dict(path='.', max_size='10'), 'training_set_kwargs.max_size .* wrong type \\(str\\)'),
    (dict(path='.', random_seed=True), 'training_set_kwargs.random_seed .* wrong type \\(bool\\)'),
    (dict(xflip=True), 'records no dataset path'),
    ('a string', 'are not a dict'),
])
def test_bad_records_are_one_line_errors_naming_data(recorded, message):
    G = snapshot_io.load_network_pkl(str(require_fixtures(*TINY)))['G_ema']
    with pytest.raises(click.UsageError, match=f'^--data: not given, and .*{message}.*; pass --data DIR_OR_ZIP$'):
        calc_metrics.resolve_dataset_kwargs(dict(G_ema=G, training_set_kwargs=recorded), None, None)

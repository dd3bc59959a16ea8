"""Corrupt datasets (issue 9, item 3): one-line DatasetErrors naming the file and item, before
training where the problem can be known then; a bad item met mid-run stops training with how to
continue; `dataset_tool.py --check` scans everything."""

import io
import types
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import dataset_tool
from scripts import fuzz
from training import training_loop
from training.dataset import DatasetError, ImageFolderDataset, scan_dataset

FIRST = '00000/img00000000.png'


@pytest.fixture(scope='module')
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp('datasets')
    paths = {}
    for name, blob in fuzz.hostile_datasets().items():
        paths[name] = root / f'{name}.zip'
        paths[name].write_bytes(blob)
    return paths


def _one_line(error: Exception) -> str:
    text = str(error)
    assert '\n' not in text and '\r' not in text, text
    return text


@pytest.mark.parametrize('name, expect', [
    ('bomb_header', [FIRST, 'too many pixels']),
    ('label_2_70', ['dataset.json', FIRST, '1180591620717411303424', '[0, 65535]']),
    ('label_nan', ['dataset.json', FIRST, 'not finite']),
    ('label_inf', ['dataset.json', FIRST, 'not finite']),
    ('deep_json', ['dataset.json', 'nested too deeply']),
    ('corrupt_directory', ['the zip directory is damaged', 'BadZipFile']),
    ('compression_99', [FIRST, 'compression method 99 is not supported']),
])
def test_known_before_training(hostile, name, expect):
    with pytest.raises(DatasetError) as info:
        ImageFolderDataset(str(hostile[name]), use_labels=True)
    text = _one_line(info.value)
    for part in [str(hostile[name])] + expect:
        assert part in text, f'{part!r} not in {text!r}'


def test_damaged_compressed_dataset_json(tmp_path):
    """Found by scripts/fuzz.py: a deflated dataset.json whose compressed bytes are damaged (zlib.error)."""
    members = fuzz.dataset_members('int', count=40)
    blob = bytearray(fuzz.zip_bytes(members, compression=zipfile.ZIP_DEFLATED))
    info = zipfile.ZipFile(io.BytesIO(bytes(blob))).getinfo('dataset.json')
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)  # Local header, then the data.
    blob[start + 5:start + 25] = bytes(range(20))
    (tmp_path / 'json.zip').write_bytes(bytes(blob))
    with pytest.raises(DatasetError) as caught:
        ImageFolderDataset(str(tmp_path / 'json.zip'), use_labels=True)
    assert f'{tmp_path / "json.zip"}:dataset.json: cannot read the file' in _one_line(caught.value)


def test_labels_only_checked_with_use_labels(hostile):
    dataset = ImageFolderDataset(str(hostile['label_nan']), use_labels=False)
    assert len(dataset) == 4 and not dataset.has_labels


def _large_dataset_with_crc_error(path) -> None:
    """Two 64x64 noise images (stored, larger than zipfile's 4 KiB read-ahead, so reading the
    header does not reach the end) with one byte of the first image's last chunk flipped."""
    members = {FIRST: fuzz._png(64, 64, 3, 0), '00000/img00000001.png': fuzz._png(64, 64, 3, 1)}
    blob = bytearray(fuzz.zip_bytes(members))
    blob[blob.index(members[FIRST]) + len(members[FIRST]) - 6] ^= 0xFF
    path.write_bytes(bytes(blob))


@pytest.mark.parametrize('case', ['undecodable_pixels', 'zip_crc_mid_file'])
def test_bad_item_when_read(hostile, tmp_path, case):
    path = hostile.get(case)
    if path is None:
        path = tmp_path / 'crc.zip'
        _large_dataset_with_crc_error(path)
    dataset = ImageFolderDataset(str(path))  # Headers are fine: construction succeeds.
    with pytest.raises(DatasetError) as info:
        [dataset[i] for i in range(len(dataset))]
    text = _one_line(info.value)
    assert f'{path}:{FIRST}: cannot decode image' in text
    if case == 'zip_crc_mid_file':
        assert 'Bad CRC-32' in text


def test_dataloader_worker_error_stays_one_line(hostile):
    dataset = ImageFolderDataset(str(hostile['undecodable_pixels']))
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=1)
    with pytest.raises(DatasetError) as info:
        list(loader)
    text = _one_line(info.value)
    assert text.startswith(f'{hostile["undecodable_pixels"]}:{FIRST}: cannot decode image'), text
    assert 'Traceback' not in text


def test_training_stops_with_how_to_continue():
    def failing():
        raise DatasetError('data.zip:00000/img00000007.png: cannot decode image (OSError: broken data stream)')
        yield
    ctx = types.SimpleNamespace(data_iter=failing(), progress=types.SimpleNamespace(cur_nimg=12_000),
                                last_snapshot='runs/00000/network-snapshot-000012.pkl')
    with pytest.raises(DatasetError) as info:
        training_loop._next_reals(ctx, rounds=1)
    text = _one_line(info.value)
    for part in ('img00000007.png', 'Training stopped at 12 kimg', 'network-snapshot-000012.pkl', 'is intact',
                 'dataset_tool.py --check', 're-run the same command'):
        assert part in text, f'{part!r} not in {text!r}'


def test_encrypted_member_is_refused(tmp_path):
    blob = bytearray(fuzz.zip_bytes(fuzz.dataset_members(None, count=2)))
    for signature, offset in ((b'PK\x03\x04', 6), (b'PK\x01\x02', 8)):  # General-purpose flag bit 0.
        at = blob.find(signature)
        while at >= 0:
            blob[at + offset] |= 1
            at = blob.find(signature, at + 4)
    (tmp_path / 'enc.zip').write_bytes(bytes(blob))
    with pytest.raises(DatasetError, match='encrypted'):
        ImageFolderDataset(str(tmp_path / 'enc.zip'))


def test_scan_reports_every_problem(hostile, tmp_path):
    checked, problems = scan_dataset(str(hostile['undecodable_pixels']))
    assert checked == 5 and len(problems) == 1 and FIRST in problems[0]  # 4 images + dataset.json.
    path = tmp_path / 'crc.zip'
    _large_dataset_with_crc_error(path)
    checked, problems = scan_dataset(str(path))
    assert checked == 2 and len(problems) == 1 and 'CRC' in problems[0]
    # Several bad items at once: all listed, each naming its item.
    members = fuzz.dataset_members('int')
    members['00000/img00000002.png'] = members['00000/img00000002.png'][:40]
    members['00000/img00000003.png'] = fuzz._png(16, 16, 3, 9)
    (tmp_path / 'many.zip').write_bytes(fuzz.zip_bytes(members))
    checked, problems = scan_dataset(str(tmp_path / 'many.zip'))
    assert checked == 5 and len(problems) == 2
    assert 'img00000002.png' in problems[0] and 'img00000003.png' in problems[1] and '16x16' in problems[1]


def test_dataset_tool_check_cli(hostile, tmp_path):
    good = tmp_path / 'good.zip'
    good.write_bytes(fuzz.zip_bytes(fuzz.dataset_members('vector')))
    runner = CliRunner()
    ok = runner.invoke(dataset_tool.main, ['--check', str(good)])
    assert ok.exit_code == 0, ok.output
    assert ok.output.strip().splitlines()[-1].startswith(f'Checked 5 item(s) of {good}: 0 problem(s)')
    bad = runner.invoke(dataset_tool.main, ['--check', str(hostile['label_nan'])])
    lines = bad.output.strip().splitlines()
    assert bad.exit_code == 1 and len(lines) == 2, bad.output
    assert 'not finite' in lines[0] and lines[-1].endswith(': 1 problem(s)')
    mixed = runner.invoke(dataset_tool.main, ['--check', str(good), '--dest', str(tmp_path / 'x.zip')])
    assert mixed.exit_code == 2 and '--check scans a dataset and takes no other option; drop --dest' in mixed.output
    assert not (tmp_path / 'x.zip').exists()
    missing = runner.invoke(dataset_tool.main, ['--source', str(good)])
    assert missing.exit_code == 2 and 'Missing option --dest' in missing.output


def test_valid_labels_still_load(tmp_path):
    path = tmp_path / 'ok.zip'
    members = fuzz.dataset_members('vector')
    path.write_bytes(fuzz.zip_bytes(members))
    dataset = ImageFolderDataset(str(path), use_labels=True)
    assert dataset.label_shape == [2]
    np.testing.assert_array_equal(dataset.get_label(3), np.array([1.5, -1.0], dtype=np.float32))
    image = np.array(PIL.Image.open(io.BytesIO(members['00000/img00000001.png'])))
    np.testing.assert_array_equal(dataset[1][0], image.transpose(2, 0, 1))
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == sorted(members)

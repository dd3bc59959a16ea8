"""Atomic writes (dnnlib.util.atomic_write_path and its users): outputs get the mode of any new
file (0o666 minus the umask, not tempfile.mkstemp's 0o600), a failed write leaves nothing, and a
killed writer's temporary file is one that training/loop_state.py cleans up."""

import os
import stat

import numpy as np
import PIL.Image
import pytest

from dnnlib import util
from metrics import metric_utils
from tiny_nets import snapshot_data, tiny_discriminator, tiny_generator
from torch_utils import image_utils
from training import loop_state
from training.dataset import DatasetWriter
from training.snapshot_io import save_network_pkl


@pytest.fixture
def umask_022():
    before = os.umask(0o022)
    yield
    os.umask(before)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_write_path_mode_follows_umask_and_failure_leaves_nothing(tmp_path, umask_022):
    path = tmp_path / 'out.bin'
    with util.atomic_write_path(str(path)) as tmp:
        assert util.ATOMIC_TEMP_NAME_RE.match(os.path.basename(tmp)) and os.path.dirname(tmp) == str(tmp_path)
        with open(tmp, 'wb') as f:
            f.write(b'new')
        assert not path.exists()  # Nothing at the final path until the block ends.
    assert path.read_bytes() == b'new' and _mode(path) == 0o644

    with pytest.raises(RuntimeError, match='interrupted'):
        with util.atomic_write_path(str(path), durable=True) as tmp:
            with open(tmp, 'wb') as f:
                f.write(b'partial')
            raise RuntimeError('interrupted')
    assert path.read_bytes() == b'new' and os.listdir(tmp_path) == ['out.bin']

    os.umask(0o027)
    with util.atomic_write_path(str(tmp_path / 'private.bin'), durable=True) as tmp:
        pass
    assert _mode(tmp_path / 'private.bin') == 0o640
    assert _mode(util.create_temp_dir_beside(str(tmp_path / 'folder'))) == 0o750


def test_snapshot_png_dataset_stats_and_cache_files_get_mode_644(tmp_path, umask_022, monkeypatch):
    pkl = tmp_path / 'network-snapshot-000000.pkl'
    save_network_pkl(snapshot_data(tiny_generator(8, channel_base=64, channel_max=8, seed=0),
                                   tiny_discriminator(channel_base=64, channel_max=8)), str(pkl))
    png = tmp_path / 'fakes000000.png'
    image_utils.save_png_atomic(PIL.Image.new('RGB', (4, 4)), str(png))
    assert _mode(pkl) == 0o644 and _mode(png) == 0o644

    for dest in ('data.zip', 'data_dir'):
        with DatasetWriter(str(tmp_path / dest)) as writer:
            writer.add_image(np.zeros([8, 8, 3], np.uint8))
            writer.close()
    assert _mode(tmp_path / 'data.zip') == 0o644 and _mode(tmp_path / 'data_dir') == 0o755

    stats = metric_utils.FeatureStats(capture_all=True)
    stats.append(np.zeros([2, 3], np.float32))
    stats.save(str(tmp_path / 'stats.npz'))
    assert _mode(tmp_path / 'stats.npz') == 0o644

    monkeypatch.setattr(util, '_download', lambda url, *args: b'payload')
    monkeypatch.setattr(util, 'url_reachable', lambda url: True)  # no network needed: _download is replaced
    cached = util.open_url('https://example.com/net.pkl', cache_dir=str(tmp_path / 'cache'), return_filename=True)
    assert open(cached, 'rb').read() == b'payload' and _mode(cached) == 0o644
    assert not [name for name in os.listdir(tmp_path) if name.endswith('.tmp')]


def test_killed_writers_temporary_files_are_cleaned_up(tmp_path):
    # What a kill between creating and renaming leaves, for a snapshot and a PNG grid.
    left = [os.path.basename(util.create_temp_file_beside(str(tmp_path / name)))
            for name in ('network-snapshot-000004.pkl', 'fakes000004.png')]
    (tmp_path / 'stats.jsonl.tmp').write_text('')
    (tmp_path / 'fakes000004.png').write_bytes(b'')
    assert sorted(loop_state.remove_temp_files(str(tmp_path))) == sorted(left + ['stats.jsonl.tmp'])
    assert os.listdir(tmp_path) == ['fakes000004.png']

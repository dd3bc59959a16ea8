"""Hostile network pickles (issue 9, item 2): each is a one-line SnapshotError, in the library and
through generate.py / train.py --resume; plain numeric numpy content still loads; nothing large is
allocated before the stored tensors are known to fit."""

import concurrent.futures
import copy
import io
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, require_fixtures
from scripts import fuzz
from torch_utils import persistence
from training import snapshot_io
from training.snapshot_io import SnapshotError

pytestmark = pytest.mark.usefixtures('one_thread')
TIMEOUT_S = 300


@pytest.fixture(scope='module')
def hostile():
    return fuzz.hostile_pickles()


@pytest.fixture(scope='module')
def records():
    return snapshot_io.read_pickle_records(require_fixtures('stylegan2_tiny', 'tiny32_snapshot.pkl'))


def _load_error(data: bytes) -> str:
    with pytest.raises(SnapshotError) as info:
        snapshot_io.load_network_pkl(io.BytesIO(data))
    text = str(info.value)
    assert '\n' not in text and '\r' not in text, text
    return text


@pytest.mark.parametrize('name, expect', [
    ('numpy_object_scalar', "numpy dtype 'O8' is not allowed"),
    ('numpy_float_dtype_object_flags', 'Refusing numpy dtype state'),
    ('numpy_structured_dtype', 'numpy dtype'),
    ('numpy_object_array', 'numpy dtype'),
    ('nested_3000', 'nest deeper than 64'),
    ('record__init_kwargs_list', 'stored keyword arguments are a list'),
    ('record__parameters_list', '_parameters is a list'),
    ('record__init_args_int', 'stored positional arguments are a int'),
    ('record__modules_dict', "Submodule 'x' is a int"),
    ('record__init_kwargs_dict', 'cannot build Generator'),
    ('layer_20000x20000', "tensor 'weight' has shape [2, 2] in the snapshot but [20000, 20000]"),
    ('stride0_view', 'does not fit its storage of 1 elements'),
    ('billion_laughs', 'holds more than 1000000 values once shared containers are expanded'),
    ('self_containing_list', 'a container contains itself'),
])
def test_hostile_pickle_is_one_line(hostile, name, expect):
    assert expect in _load_error(hostile[name])


def test_object_pointer_pickle_is_94_bytes_of_the_issue(hostile):
    assert len(hostile['numpy_object_scalar']) <= 100  # The crafted file, not something bigger.


def test_message_never_echoes_control_characters(records):
    G = records['G']
    data = dict(records, G=persistence.PersistentRecord('Gen\nerator\x1b[31m', G.state, G.module_src,
                                                         G.module_src_sha256))
    text = _load_error(pickle.dumps(data))
    assert 'Gen\\nerator\\x1b[31m' in text and '\x1b' not in text
    assert str(SnapshotError('line 1\nline 2\x00')) == 'line 1\\nline 2\\x00'


def test_layer_as_generator_is_refused(records):
    G = records['G']
    data = dict(records, G=G.state['_modules']['mapping'])  # A real, consistent network, but not a generator.
    assert "'G' is a MappingNetwork, not a generator" in _load_error(pickle.dumps(data))


def test_record_cycle_and_depth(records):
    data = copy.deepcopy(records)
    data['G'].state['_modules']['mapping'].state['_modules']['loop'] = data['G']
    assert 'repeats a parent' in _load_error(pickle.dumps(data))


@pytest.mark.parametrize('protocol', [2, 3, 4, 5])
def test_plain_numeric_numpy_still_loads(records, protocol):
    extras = dict(big_endian=np.arange(6, dtype='>i2').reshape(2, 3), fortran=np.asfortranarray(np.eye(3, 2)),
                  scalar=np.float32(1.5), flag=np.bool_(True), c=np.complex64(2 - 1j), u=np.uint64(2**64 - 1),
                  empty=np.zeros((0, 4), dtype=np.float16))
    blob = pickle.dumps(dict(records, extras=extras), protocol=protocol)
    loaded = snapshot_io.load_network_pkl(io.BytesIO(blob))
    reference = pickle.loads(pickle.dumps(extras, protocol=protocol))  # What numpy itself rebuilds.
    for key, value in reference.items():
        got = loaded['extras'][key]
        assert type(got) is type(value) and got.dtype == value.dtype and np.array_equal(got, value), key
        assert np.array_equal(got, extras[key]) and np.shape(got) == np.shape(extras[key]), key
        if isinstance(value, np.ndarray):
            assert got.flags.f_contiguous == value.flags.f_contiguous, key


def test_dtype_build_cannot_touch_numpy_builtins(hostile):
    before = np.dtype('f8').byteorder, np.dtype('f8').flags
    _load_error(hostile['numpy_float_dtype_object_flags'])
    assert (np.dtype('f8').byteorder, np.dtype('f8').flags) == before


def test_our_format_checks_constructor_arguments():
    from training import networks
    tensors = {'weight': torch.zeros(2, 2), 'bias': torch.zeros(2)}
    name = networks.FullyConnectedLayer._persistent_name
    with pytest.raises(SnapshotError, match=r'shape \[2, 2\] in the snapshot but \[20000, 20000\]'):
        persistence.rebuild_module(persistence.FORMAT_TAG, name, (), dict(in_features=20000, out_features=20000),
                                   tensors)
    with pytest.raises(SnapshotError, match='stored argument kwargs.in_features is a Tensor'):
        persistence.rebuild_module(persistence.FORMAT_TAG, name, (), dict(in_features=torch.ones(1), out_features=2),
                                   tensors)
    deep = 2
    for _ in range(40):
        deep = [deep]
    with pytest.raises(SnapshotError, match='nest deeper than 16'):
        persistence.rebuild_module(persistence.FORMAT_TAG, name, (), dict(in_features=deep, out_features=2), tensors)
    shared = [[0] * 100] * 100
    with pytest.raises(SnapshotError, match='hold more than 100000 values'):
        persistence.rebuild_module(persistence.FORMAT_TAG, name, (), dict(in_features=[shared] * 100, out_features=2),
                                   tensors)
    with pytest.raises(SnapshotError, match='module flags are malformed'):
        persistence.rebuild_module(persistence.FORMAT_TAG, name, (), dict(in_features=2, out_features=2), tensors,
                                   {'training': 5})


# Run in subprocesses: the memory high-water mark of a fresh process, and the command lines a user runs.
_MAXRSS_SCRIPT = '''
import io, resource, sys
from scripts import fuzz
from training import snapshot_io
data = fuzz.hostile_pickles()['layer_20000x20000']
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    snapshot_io.load_network_pkl(io.BytesIO(data))
except snapshot_io.SnapshotError:
    pass
print(len(data), (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)
'''


@pytest.fixture(scope='module')
def cli_runs(tmp_path_factory, hostile, records):
    from training.dataset import DatasetWriter
    root = tmp_path_factory.mktemp('hostile')
    for name in ('numpy_object_scalar', 'nested_3000', 'record__init_kwargs_list'):
        (root / f'{name}.pkl').write_bytes(hostile[name])
    with DatasetWriter(str(root / 'data.zip')) as writer:
        for i in range(2):
            writer.add_image(np.full((32, 32, 3), i, dtype=np.uint8))
    commands = {
        'maxrss': ['-c', _MAXRSS_SCRIPT],
        'generate_segv': ['generate.py', '--network', str(root / 'numpy_object_scalar.pkl'), '--seeds', '0',
                          '--outdir', str(root / 'out_generate')],
        'generate_nested': ['generate.py', '--network', str(root / 'nested_3000.pkl'), '--seeds', '0',
                            '--outdir', str(root / 'out_generate2')],
        'train_resume': ['train.py', '--outdir', str(root / 'runs'), '--metrics', 'none', '--data',
                         str(root / 'data.zip'), '--resume', str(root / 'record__init_kwargs_list.pkl')],
    }
    run = lambda argv: subprocess.run([sys.executable, *argv], cwd=REPO_ROOT, capture_output=True, text=True,
                                      timeout=TIMEOUT_S)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = {key: pool.submit(run, argv) for key, argv in commands.items()}
        return {key: future.result() for key, future in futures.items()}, root


def test_20000x20000_layer_allocates_nothing(cli_runs):
    result = cli_runs[0]['maxrss']
    assert result.returncode == 0, result.stderr
    size, grown_mb = map(int, result.stdout.split())
    assert size < 400_000            # A small file (the fixture's other networks ride along) ...
    assert grown_mb < 300, grown_mb  # ... that would have cost 1.6 GB (float32 20000x20000) if built.


@pytest.mark.parametrize('case, expect', [
    ('generate_segv', ["numpy dtype 'O8' is not allowed"]),
    ('generate_nested', ['nested_3000.pkl', 'nest deeper']),
    ('train_resume', ['--resume', 'record__init_kwargs_list.pkl', 'stored keyword arguments are a list']),
])
def test_command_lines_give_one_line(cli_runs, case, expect):
    result = cli_runs[0][case]
    output = result.stdout + result.stderr
    assert result.returncode not in (0, -11) and result.returncode > 0, output
    assert 'Traceback' not in output, output
    last = [line for line in output.splitlines() if line.strip()][-1]
    for text in expect:
        assert text in last, f'{text!r} not in {last!r}'
    root = cli_runs[1]
    assert not (root / 'out_generate').exists() and not (root / 'out_generate2').exists()
    assert not (root / 'runs').exists() or not any((root / 'runs').iterdir())

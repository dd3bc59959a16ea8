"""Fuzz the loaders that read files from users: network pickles, safetensors snapshots, expansion
configs and datasets. Every input must either load or end in a one-line `dnnlib.util.UserError`.

    python -m scripts.fuzz --n 10000 --target all --seed 0
    python -m scripts.fuzz --replay fuzz-crashes/unpickler/<hash>.bin --target unpickler

Inputs are mutations of seed files (valid tiny snapshots and configs, tiny datasets made on the
spot, and the hostile files of issue 9) and are a pure function of (target, seed, index), so a
run can be repeated exactly. They run in worker subprocesses, in batches: a worker killed by a
signal (a segfault), by a timeout or by running out of memory costs one input, which is recorded
as a crash, and a fresh worker continues with the next one. Each crash is saved with its report
under `--crash-dir` for replay. Prints, per target: inputs tried, accepted, clean errors, crashes.
"""

import dataclasses
import hashlib
import io
import json
import os
import pickle
import random
import resource
import select
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
import zlib
from typing import Callable

import click

TARGETS = ('unpickler', 'safetensors', 'config', 'dataset')
FIXTURE_PKL = os.path.join(os.path.dirname(__file__), '..', 'tests', 'fixtures', 'stylegan2_tiny', 'tiny32_snapshot.pkl')
CONFIG_EXAMPLES = os.path.join(os.path.dirname(__file__), '..', 'config_examples')
WORKER_MEMORY_BYTES = 6 * 2**30  # Address-space cap of a worker: an input that allocates more is a crash.
INPUT_TIMEOUT_S = 60.0           # CPU-time cap of one input (CPU, not wall clock: the machine may be shared).
INPUT_WALL_CAP_S = 3600.0        # Wall-clock cap of one input, however starved the worker is.
STARTUP_TIMEOUT_S = 1800.0       # Wall-clock cap of a worker's imports and seed making.
STARTUP_ATTEMPTS = 3             # A worker that cannot start is retried; then the campaign fails.

# ---------------------------------------------------------------------------------------------
# Seeds.


def _tiny_snapshot() -> dict:
    import torch

    from training import networks
    torch.manual_seed(0)
    G = networks.Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=8, img_channels=1,
                           mapping_kwargs=dict(num_layers=1), synthesis_kwargs=dict(channel_base=32, channel_max=4))
    D = networks.Discriminator(c_dim=0, img_resolution=8, img_channels=1, channel_base=32, channel_max=4)
    G_ema = networks.Generator(**G.init_kwargs)
    G_ema.load_state_dict(G.state_dict())
    return dict(training_set_kwargs=dict(class_name='training.dataset.ImageFolderDataset', path='x.zip'),
                G=G, D=D, G_ema=G_ema, augment_pipe=None, latent_basis=torch.eye(4), repurposed_dims=[3],
                subspace_distance=20.0)


def hostile_pickles() -> dict[str, bytes]:
    """The crafted pickles of issue 9, by name (each must give a one-line SnapshotError)."""
    import numpy as np
    import torch

    from torch_utils import persistence
    from training import snapshot_io
    out = {}
    # dtype('O') with BUILD flags, then numpy scalar() reading 8 file bytes as an object pointer.
    out['numpy_object_scalar'] = (
        b'\x80\x02cnumpy.core.multiarray\nscalar\ncnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R'
        b'(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?tbC\x08AAAAAAAA\x86R.')
    out['numpy_float_dtype_object_flags'] = out['numpy_object_scalar'].replace(b'O8', b'f8').replace(
        b'X\x01\x00\x00\x00|', b'X\x01\x00\x00\x00<')
    out['numpy_structured_dtype'] = pickle.dumps(np.zeros(2, dtype=[('a', 'f4'), ('b', 'i4')]), protocol=2)
    out['numpy_object_array'] = pickle.dumps(np.array([1, 'x'], dtype=object), protocol=2)
    out['nested_3000'] = b'\x80\x02}X\x01\x00\x00\x00G' + b'(' * 3000 + b'l' * 3000 + b's.'
    raw = snapshot_io.read_pickle_records(io.BytesIO(_official_tiny_pickle()))  # Small: fuzzing stays fast.
    for field, value in (('_init_kwargs', [1, 2]), ('_parameters', [1]), ('_init_args', 5),
                         ('_modules', {'x': 3}), ('_init_kwargs', {'z_dim': 'a\nb'})):
        saved = raw['G'].state.get(field)
        raw['G'].state[field] = value
        out[f'record_{field}_{type(value).__name__}'] = pickle.dumps(raw, protocol=4)
        raw['G'].state[field] = saved
    big = persistence.PersistentRecord('FullyConnectedLayer', {
        '_init_kwargs': {'in_features': 20000, 'out_features': 20000},
        '_parameters': {'weight': torch.zeros(2, 2), 'bias': torch.zeros(2)}}, '', '0' * 64)
    out['layer_20000x20000'] = pickle.dumps(dict(raw, G=big), protocol=4)
    out['stride0_view'] = pickle.dumps(dict(raw, latent_basis=torch.zeros(1).expand(20000, 20000)), protocol=4)
    leaf = [0] * 1000
    out['billion_laughs'] = pickle.dumps(dict(raw, extra=[[leaf] * 1000] * 1000), protocol=4)  # 10^9 when expanded.
    loop = []
    loop.append(loop)
    out['self_containing_list'] = pickle.dumps(dict(raw, extra=loop), protocol=4)
    return out


def _official_tiny_pickle() -> bytes:
    """`_tiny_snapshot()` in the official stylegan2-ada-pytorch layout, each record's embedded
    source cut to one line (the loader never reads it; ~100 KB less to mutate and parse)."""
    from torch_utils import persistence
    from training import official_format

    def short(value):
        if isinstance(value, persistence.PersistentRecord):
            state = dict(value.state)
            if isinstance(state.get('_modules'), dict):
                state['_modules'] = type(state['_modules'])((k, short(v)) for k, v in state['_modules'].items())
            return persistence.PersistentRecord(value.class_name, state, '# source omitted\n', '0' * 64)
        return value
    data = {key: short(value) for key, value in official_format.official_snapshot(_tiny_snapshot()).items()}
    return pickle.dumps(data, protocol=4)


def _unpickler_seeds() -> list[bytes]:
    import numpy as np
    data = _tiny_snapshot()
    seeds = [pickle.dumps(data, protocol=p) for p in (2, 4)] + [_official_tiny_pickle()]
    extras = dict(a=np.arange(6, dtype='>i2').reshape(2, 3), s=np.float32(1.5), b=np.bool_(True), c=np.complex64(1j))
    seeds += [pickle.dumps(dict(data, extras=extras), protocol=p) for p in (0, 2, 5)]
    with open(FIXTURE_PKL, 'rb') as f:
        seeds.append(f.read())
    return seeds + list(hostile_pickles().values())


def _safetensors_seeds(workdir: str) -> list[bytes]:
    from training import snapshot_io
    path = os.path.join(workdir, 'seed.safetensors')
    snapshot_io.export_safetensors(_tiny_snapshot(), path)
    with open(path, 'rb') as f:
        blob = f.read()
    deep = '[' * 5000 + ']' * 5000
    return [blob] + [_replace_metadata(blob, text) for text in
                     ('not json', '[1, 2]', '{"format": "sg2x-snapshot-safetensors-v1"}', deep,
                      '{"format": "sg2x-snapshot-safetensors-v1", "data": {"G": {"__module__": 3}}}')]


def _config_seeds() -> list[bytes]:
    seeds = []
    for name in sorted(os.listdir(CONFIG_EXAMPLES)):
        if name.endswith('.json'):
            with open(os.path.join(CONFIG_EXAMPLES, name), 'rb') as f:
                seeds.append(f.read())
    seeds += [b'{}', b'{"tasks": ' + b'[' * 5000 + b']' * 5000 + b'}', b'{"tasks": [{"type": "this.Task"}]}',
              b'{"tasks": [{"type": "Transform", "dimension": 1e999, "args": {"transform": "negative"}}]}']
    return seeds


def _png(width: int, height: int, channels: int, seed: int) -> bytes:
    import numpy as np
    import PIL.Image
    pixels = np.random.RandomState(seed).randint(0, 256, size=(height, width, channels), dtype=np.uint8)
    buf = io.BytesIO()
    PIL.Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels).save(buf, format='png')
    return buf.getvalue()


def png_with_size(png: bytes, width: int, height: int) -> bytes:
    """`png` with its IHDR chunk claiming width x height (checksum fixed, pixel data unchanged)."""
    ihdr = png[12:29]  # b'IHDR' + 13 data bytes.
    ihdr = ihdr[:4] + width.to_bytes(4, 'big') + height.to_bytes(4, 'big') + ihdr[12:]
    return png[:12] + ihdr + zlib.crc32(ihdr).to_bytes(4, 'big') + png[33:]


def zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w', compression=compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def dataset_members(labels: str | None = 'int', count: int = 4, res: int = 8, channels: int = 3) -> dict[str, bytes]:
    """A tiny valid dataset in the official layout; labels 'int', 'vector' or None."""
    names = [f'00000/img{i:08d}.png' for i in range(count)]
    members = {name: _png(res, res, channels, i) for i, name in enumerate(names)}
    values = {'int': lambda i: i % 3, 'vector': lambda i: [i * 0.5, -1.0]}.get(labels)
    members['dataset.json'] = json.dumps({'labels': None if values is None else
                                          [[n, values(i)] for i, n in enumerate(names)]}).encode()
    return members


def hostile_datasets() -> dict[str, bytes]:
    """The corrupt datasets of issue 9 as zip files, by name."""
    good = dataset_members('int')
    first = '00000/img00000000.png'
    labels = json.loads(good['dataset.json'])['labels']
    out = {}
    out['bomb_header'] = zip_bytes({**good, first: png_with_size(good[first], 16384, 16384)})
    out['label_2_70'] = zip_bytes({**good, 'dataset.json': json.dumps({'labels': [[n, 2**70] for n, _ in labels]}).encode()})
    out['label_nan'] = zip_bytes({**good, 'dataset.json': json.dumps({'labels': [[n, [float('nan')]] for n, _ in labels]}).encode()})
    out['label_inf'] = zip_bytes({**good, 'dataset.json': json.dumps({'labels': [[n, [1e39]] for n, _ in labels]}).encode()})
    out['deep_json'] = zip_bytes({**good, 'dataset.json': b'{"labels": ' + b'[' * 100000 + b']' * 100000 + b'}'})
    blob = zip_bytes(good)
    directory = blob.rindex(b'PK\x01\x02')
    out['corrupt_directory'] = blob[:directory] + b'XX' + blob[directory + 2:]
    out['compression_99'] = zip_with_method(blob, 99)
    damaged = bytearray(good[first])
    idat = damaged.index(b'IDAT')
    damaged[idat + 6:idat + 16] = b'\xff' * 10
    out['undecodable_pixels'] = zip_bytes({**good, first: bytes(damaged)})
    stored = bytearray(blob)
    offset = stored.index(good[first]) + len(good[first]) - 6  # Inside IEND: only the CRC notices.
    stored[offset] ^= 0xFF
    out['zip_crc'] = bytes(stored)
    return out


def zip_with_method(blob: bytes, method: int) -> bytes:
    """`blob` with every member's compression method field (local and central headers) set to `method`."""
    out = bytearray(blob)
    for signature, offset in ((b'PK\x03\x04', 8), (b'PK\x01\x02', 10)):
        at = out.find(signature)
        while at >= 0:
            out[at + offset:at + offset + 2] = method.to_bytes(2, 'little')
            at = out.find(signature, at + 4)
    return bytes(out)


def _dataset_seeds() -> list[bytes]:
    seeds = [zip_bytes(dataset_members('int')), zip_bytes(dataset_members('vector', channels=1)),
             zip_bytes(dataset_members(None), compression=zipfile.ZIP_DEFLATED)]
    return seeds + list(hostile_datasets().values())


def _replace_metadata(blob: bytes, snapshot_text: str) -> bytes:
    """A safetensors blob with its snapshot metadata replaced (header re-encoded consistently)."""
    header_len = int.from_bytes(blob[:8], 'little')
    header = json.loads(blob[8:8 + header_len])
    header['__metadata__'] = {'sg2x_snapshot': snapshot_text}
    return _with_header(blob, header)


def _with_header(blob: bytes, header) -> bytes:
    header_len = int.from_bytes(blob[:8], 'little')
    text = _dumps_lenient(header)
    text += b' ' * (-len(text) % 8)
    return len(text).to_bytes(8, 'little') + text + blob[8 + header_len:]

# ---------------------------------------------------------------------------------------------
# Mutations.


_INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0xFE, 0x28, 0x2E, 0x5D, 0x7D]
_JSON_VALUES = [None, True, -1, 0, 2**70, -2**63, 1e308, float('nan'), float('inf'), '', 'x\ny\x00', 'a' * 1000,
                [], {}, [[[[[]]]]], {'__tensor__': 'x'}, {'__module__': {}}, {'__tuple__': 3}, {'__items__': [[[], 1]]}]


def mutate_bytes(data: bytes, rnd: random.Random, others: list[bytes]) -> bytes:
    """1-4 random edits: bit flips, special bytes and ints, deletions, duplications, truncation, splicing."""
    data = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        if not data:
            data = bytearray(rnd.choice(others))
        op, pos = rnd.randrange(8), rnd.randrange(len(data))
        if op == 0:
            data[pos] ^= 1 << rnd.randrange(8)
        elif op == 1:
            data[pos] = rnd.choice(_INTERESTING)
        elif op == 2:
            width = rnd.choice((2, 4, 8))
            value = rnd.choice((0, 2**(8 * width) - 1, 2**(8 * width - 1) - 1, rnd.getrandbits(8 * width)))
            data[pos:pos + width] = value.to_bytes(width, rnd.choice(('little', 'big')))
        elif op == 3:
            del data[pos:pos + rnd.randint(1, 64)]
        elif op == 4:
            chunk = data[pos:pos + rnd.randint(1, 64)]
            at = rnd.randrange(len(data))
            data[at:at] = chunk * rnd.randint(1, 4)
        elif op == 5:
            del data[pos:]
        elif op == 6:
            other = rnd.choice(others)
            start = rnd.randrange(len(other))
            data[pos:pos + rnd.randint(1, 256)] = other[start:start + rnd.randint(1, 256)]
        else:
            data[pos] = rnd.randrange(256)
    return bytes(data)


def mutate_json(value, rnd: random.Random, depth: int = 0):
    """The JSON tree with one random edit somewhere: a replaced, removed, duplicated or deeply
    nested value."""
    if isinstance(value, dict) and value and rnd.random() < 0.7 and depth < 30:
        key = rnd.choice(list(value))
        out = dict(value)
        choice = rnd.random()
        if choice < 0.15:
            del out[key]
        elif choice < 0.25:
            out[key + rnd.choice(('', '_', 'x'))] = rnd.choice(_JSON_VALUES)
        else:
            out[key] = mutate_json(value[key], rnd, depth + 1)
        return out
    if isinstance(value, list) and value and rnd.random() < 0.7 and depth < 30:
        out = list(value)
        i = rnd.randrange(len(out))
        choice = rnd.random()
        if choice < 0.15:
            del out[i]
        elif choice < 0.25:
            out.insert(i, out[i])
        else:
            out[i] = mutate_json(out[i], rnd, depth + 1)
        return out
    if rnd.random() < 0.05:
        return f'{_DEEP_MARK}{rnd.choice((50, 70, 3000))}'  # Spelled out as nested lists by _dumps_lenient.
    return rnd.choice(_JSON_VALUES)


_DEEP_MARK = '__fuzz_nested_lists__'


def _dumps_lenient(value) -> bytes:
    """JSON text of a mutated tree (NaN allowed); deep-nesting marks become that many nested lists."""
    text = json.dumps(value, allow_nan=True)
    pieces = text.split(f'"{_DEEP_MARK}')
    out = [pieces[0]]
    for piece in pieces[1:]:
        digits, rest = piece.split('"', 1)
        out.append('[' * int(digits) + ']' * int(digits) + rest)
    return ''.join(out).encode()

# ---------------------------------------------------------------------------------------------
# Targets: make an input, run an input.


@dataclasses.dataclass
class Target:
    seeds: Callable[[str], list[bytes]]       # workdir -> seed inputs
    mutate: Callable[[bytes, random.Random, list[bytes]], bytes]
    run: Callable[[bytes, str], None]         # (input, workdir); raises a UserError for bad input
    one_line: bool = True                     # Errors must be one line (configs list one problem per line).


def _mutate_safetensors(seed: bytes, rnd: random.Random, seeds: list[bytes]) -> bytes:
    if rnd.random() < 0.3:
        return mutate_bytes(seed, rnd, seeds)
    try:
        header_len = int.from_bytes(seed[:8], 'little')
        header = json.loads(seed[8:8 + header_len])
        snapshot = json.loads(header['__metadata__']['sg2x_snapshot'])
    except (ValueError, KeyError, TypeError, RecursionError):
        return mutate_bytes(seed, rnd, seeds)
    if rnd.random() < 0.8:
        return _replace_metadata(seed, _dumps_lenient(mutate_json(snapshot, rnd)).decode())
    return _with_header(seed, mutate_json(header, rnd))


def _mutate_config(seed: bytes, rnd: random.Random, seeds: list[bytes]) -> bytes:
    if rnd.random() < 0.3:
        return mutate_bytes(seed, rnd, seeds)
    try:
        value = json.loads(seed)
    except (ValueError, RecursionError):
        return mutate_bytes(seed, rnd, seeds)
    for _ in range(rnd.randint(1, 3)):
        value = mutate_json(value, rnd)
    return _dumps_lenient(value)


def _mutate_dataset(seed: bytes, rnd: random.Random, seeds: list[bytes]) -> bytes:
    if rnd.random() < 0.3:
        return mutate_bytes(seed, rnd, seeds)
    try:
        with zipfile.ZipFile(io.BytesIO(seed)) as z:
            members = {info.filename: z.read(info) for info in z.infolist()}
    except Exception:  # A hostile seed: mutate its bytes instead.
        return mutate_bytes(seed, rnd, seeds)
    name = rnd.choice(sorted(members))
    if name == 'dataset.json' and rnd.random() < 0.7:
        try:
            members[name] = _dumps_lenient(mutate_json(json.loads(members[name]), rnd))
        except (ValueError, RecursionError):
            members[name] = mutate_bytes(members[name], rnd, seeds)
    elif rnd.random() < 0.1 and name.endswith('.png'):
        members[name] = png_with_size(members[name], rnd.choice((0, 1, 7, 16, 65535, 2**31 - 1)), rnd.choice((1, 8, 16384)))
    else:
        members[name] = mutate_bytes(members[name], rnd, seeds)
    return zip_bytes(members, compression=rnd.choice((zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)))


def _run_unpickler(data: bytes, workdir: str) -> None:
    from training import snapshot_io
    snapshot_io.load_network_pkl(io.BytesIO(data))


def _run_safetensors(data: bytes, workdir: str) -> None:
    from training import snapshot_io
    path = os.path.join(workdir, 'input.safetensors')
    with open(path, 'wb') as f:
        f.write(data)
    snapshot_io.import_safetensors(path)


def _run_config(data: bytes, workdir: str) -> None:
    from training.expansion import config
    path = os.path.join(workdir, 'input.json')
    with open(path, 'wb') as f:
        f.write(data)
    config.load_expansion_config(path, w_dim=8, img_resolution=16, img_channels=3, check_resources=True)


def _run_dataset(data: bytes, workdir: str) -> None:
    from training.dataset import ImageFolderDataset, scan_dataset
    path = os.path.join(workdir, 'input.zip')
    with open(path, 'wb') as f:
        f.write(data)
    scan_dataset(path)  # Must report problems, never raise.
    dataset = ImageFolderDataset(path, use_labels=not data or data[-1] % 2 == 0)  # Half the inputs read labels.
    try:
        for i in range(len(dataset)):
            dataset[i]
        dataset.has_labels
    finally:
        dataset.close()


TARGET_TABLE = {
    'unpickler': Target(lambda workdir: _unpickler_seeds(), mutate_bytes, _run_unpickler),
    'safetensors': Target(_safetensors_seeds, _mutate_safetensors, _run_safetensors),
    'config': Target(lambda workdir: _config_seeds(), _mutate_config, _run_config, one_line=False),
    'dataset': Target(lambda workdir: _dataset_seeds(), _mutate_dataset, _run_dataset),
}


def make_input(target: str, seeds: list[bytes], seed: int, index: int) -> bytes:
    """Input `index` of a campaign: the seeds themselves first, then mutations (a pure function)."""
    if index < len(seeds):
        return seeds[index]
    rnd = random.Random(f'{target}/{seed}/{index}')
    return TARGET_TABLE[target].mutate(rnd.choice(seeds), rnd, seeds)


def classify(target: str, data: bytes, workdir: str) -> tuple[str, str]:
    """('accepted' | 'clean' | 'crash', detail) of one input, run in this process."""
    import dnnlib
    try:
        TARGET_TABLE[target].run(data, workdir)
        return 'accepted', ''
    except dnnlib.util.UserError as e:
        text = str(e)
        if TARGET_TABLE[target].one_line and any(c in text for c in '\n\r\x00'):
            return 'crash', f'multi-line {type(e).__name__} message: {text!r}'
        return 'clean', ''
    except BaseException as e:  # noqa: B036 (a fuzz input may raise anything; that is the finding)
        if isinstance(e, KeyboardInterrupt):
            raise
        return 'crash', ''.join(traceback.format_exception(e))

# ---------------------------------------------------------------------------------------------
# Workers and the campaign.


def _worker(target: str, seed: int, start: int, stop: int) -> None:
    """Run inputs [start, stop) and print one JSON line per input (before: 'start', after: outcome)."""
    try:
        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    except (ValueError, OSError):
        pass  # Not permitted here: run without the cap.
    import torch
    torch.set_num_threads(1)
    protocol = os.fdopen(os.dup(1), 'w')  # Results go here; whatever the code under test prints goes to stderr.
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    with tempfile.TemporaryDirectory(prefix='fuzz-') as workdir:
        seeds = TARGET_TABLE[target].seeds(workdir)
        for index in range(start, stop):
            print(json.dumps({'start': index}), file=protocol, flush=True)
            outcome, detail = classify(target, make_input(target, seeds, seed, index), workdir)
            print(json.dumps({'index': index, 'outcome': outcome, 'detail': detail[-4000:]}), file=protocol, flush=True)


@dataclasses.dataclass
class Summary:
    target: str
    tried: int = 0
    accepted: int = 0
    clean: int = 0
    crashes: int = 0
    crash_files: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        return (f'{self.target:12s} inputs {self.tried:6d}   accepted {self.accepted:6d}   clean errors {self.clean:6d}'
                f'   crashes {self.crashes:4d}   ({self.seconds:.0f} s)')


def run_campaign(target: str, n: int, seed: int = 0, crash_dir: str | None = None, batch: int = 500,
                 timeout_s: float = INPUT_TIMEOUT_S, log=print) -> Summary:
    """Run inputs 0..n-1 of `target` in worker subprocesses; returns the counts."""
    summary, begin, index = Summary(target), time.time(), 0
    seeds, failed_starts = None, 0
    while index < n:
        stop = min(n, index + batch)
        stderr = tempfile.TemporaryFile()
        proc = subprocess.Popen([sys.executable, '-m', 'scripts.fuzz', '--worker', target, '--seed', str(seed),
                                 '--start', str(index), '--stop', str(stop)], cwd=_repo_root(),
                                stdout=subprocess.PIPE, stderr=stderr, bufsize=0)
        current, crash = None, None
        started_wall, started_cpu = time.time(), 0.0  # Of the worker, then of its current input.
        lines = _LineReader(proc.stdout.fileno())
        while True:
            line = lines.next(time.time() + 2.0)
            if line is None:  # Nothing yet: is the input (or the start-up) over its budget?
                wall, cpu = time.time() - started_wall, _cpu_seconds(proc.pid) - started_cpu
                if current is None and wall > STARTUP_TIMEOUT_S:
                    crash = 'start-up timeout'
                elif current is not None and (cpu > timeout_s or wall > INPUT_WALL_CAP_S):
                    crash = f'timeout: no result after {cpu:.0f} s of CPU ({wall:.0f} s wall)'
                else:
                    continue
                proc.kill()
                proc.wait()
                break
            if line == b'':
                proc.wait()
                crash = f'worker died (exit status {proc.returncode}; negative = signal)'
                break
            record = json.loads(line)
            if 'start' in record:
                current, started_wall, started_cpu = record['start'], time.time(), _cpu_seconds(proc.pid)
                continue
            summary.tried += 1
            setattr(summary, {'accepted': 'accepted', 'clean': 'clean', 'crash': 'crashes'}[record['outcome']],
                    getattr(summary, {'accepted': 'accepted', 'clean': 'clean', 'crash': 'crashes'}[record['outcome']]) + 1)
            if record['outcome'] == 'crash':
                seeds = seeds or _seeds_here(target)
                summary.crash_files.append(_save_crash(target, seed, record['index'], seeds, record['detail'], crash_dir))
                log(f'  crash at {target} input {record["index"]}: {record["detail"].strip().splitlines()[-1]}')
            index = record['index'] + 1
            if index >= stop:
                proc.wait()
                break
        proc.stdout.close()
        if crash is not None:
            if current is None:  # Not an input's fault: retry a few times (a busy machine), then give up.
                failed_starts += 1
                stderr.seek(0)
                if failed_starts >= STARTUP_ATTEMPTS:
                    raise RuntimeError(f'fuzz worker for {target} failed before its first input ({crash}):\n'
                                       + stderr.read().decode(errors='replace')[-3000:])
                stderr.close()
                continue
            summary.tried += 1
            summary.crashes += 1
            seeds = seeds or _seeds_here(target)
            summary.crash_files.append(_save_crash(target, seed, current, seeds, crash, crash_dir))
            log(f'  crash at {target} input {current}: {crash}')
            index = current + 1
        stderr.close()
        log(f'  {target}: {summary.tried}/{n} inputs, {summary.clean} clean errors, {summary.crashes} crashes, '
            f'{time.time() - begin:.0f} s')
    summary.seconds = time.time() - begin
    return summary


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (Linux /proc); 0 when it cannot be read."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
    except (OSError, IndexError, ValueError):
        return 0.0


class _LineReader:
    """Lines from a pipe with a deadline (select on the raw fd: no buffered data hides from it)."""

    def __init__(self, fd: int):
        self.fd, self.buffer = fd, b''

    def next(self, deadline: float) -> bytes | None:
        """The next line; b'' at end of file; None when the deadline passes first."""
        while b'\n' not in self.buffer:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.time()))
            if not ready:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return b''
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b'\n', 1)
        return line + b'\n'


def _seeds_here(target: str) -> list[bytes]:
    with tempfile.TemporaryDirectory(prefix='fuzz-') as workdir:
        return TARGET_TABLE[target].seeds(workdir)


def _save_crash(target: str, seed: int, index: int, seeds: list[bytes], detail: str, crash_dir: str | None) -> str:
    data = make_input(target, seeds, seed, index)
    folder = os.path.join(crash_dir or 'fuzz-crashes', target)
    os.makedirs(folder, exist_ok=True)
    stem = os.path.join(folder, hashlib.sha256(data).hexdigest()[:16])
    with open(stem + '.bin', 'wb') as f:
        f.write(data)
    with open(stem + '.txt', 'w', encoding='utf-8') as f:
        f.write(f'target {target}, seed {seed}, input {index}\n{detail}\n')
    return stem + '.bin'


def _repo_root() -> str:
    return os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))


@click.command()
@click.option('--n', 'count', type=click.IntRange(min=1), default=1000, show_default=True, help='Inputs per target.')
@click.option('--target', type=click.Choice([*TARGETS, 'all']), default='all', show_default=True)
@click.option('--seed', type=int, default=0, show_default=True, help='Campaign seed (inputs are a function of it).')
@click.option('--crash-dir', default='fuzz-crashes', show_default=True, help='Where crashing inputs are saved.')
@click.option('--batch', type=click.IntRange(min=1), default=500, show_default=True, help='Inputs per worker process.')
@click.option('--replay', metavar='FILE', help='Run one saved input in this process and print the outcome.')
@click.option('--worker', hidden=True)
@click.option('--start', type=int, hidden=True)
@click.option('--stop', type=int, hidden=True)
def main(count, target, seed, crash_dir, batch, replay, worker, start, stop):
    """Fuzz the snapshot, safetensors, expansion-config and dataset loaders."""
    if worker is not None:
        _worker(worker, seed, start, stop)
        return
    if replay is not None:
        if target == 'all':
            raise click.UsageError('--replay needs --target (the loader the input was made for)')
        with open(replay, 'rb') as f, tempfile.TemporaryDirectory(prefix='fuzz-') as workdir:
            outcome, detail = classify(target, f.read(), workdir)
        click.echo(f'{outcome}\n{detail}'.rstrip())
        sys.exit(1 if outcome == 'crash' else 0)
    summaries = []
    for name in TARGETS if target == 'all' else (target,):
        summaries.append(run_campaign(name, count, seed=seed, crash_dir=crash_dir, batch=batch, log=click.echo))
        click.echo(summaries[-1].line())
    total = sum(s.crashes for s in summaries)
    click.echo(f'{sum(s.tried for s in summaries)} inputs, {total} crash(es)'
               + (f'; saved under {crash_dir}/ (replay with --replay FILE --target T)' if total else ''))
    sys.exit(1 if total else 0)


if __name__ == '__main__':
    main()

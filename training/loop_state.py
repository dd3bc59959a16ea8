"""What it takes to continue a training run exactly: counters, RNG states, file names of run
directories and snapshots, and the rule that decides whether a command continues an existing run.

Continuation rule (documented in train.py --help and the README):
- A run directory `NNNNN-<desc>/` under --outdir is *the same run* as a new command when its
  `training_options.json` equals the new command's resolved options, ignoring `run_dir` (the one
  value that names the directory itself). Re-running the same command therefore continues the
  newest such run from its newest snapshot; with no snapshot yet, the new attempt starts in the
  next numbered folder (nothing of the earlier attempt is removed or rewritten).
- `--resume latest` continues the newest run directory under --outdir that holds a snapshot,
  whatever options it was started with; the new options replace the old ones (the log lists
  what changed), while the architecture comes from the snapshot.
Exactness needs the same number of GPUs as before (the RNG state is per rank).
"""

import contextlib
import decimal
import json
import math
import os
import random
import re

import numpy as np
import torch

import dnnlib

SNAPSHOT_RE = re.compile(r'^network-snapshot-(\d+(?:\.\d+)?)\.pkl$')
RUN_DIR_RE = re.compile(r'^(\d+)-(.+)$')
# Temporary files that a killed process may leave, besides dnnlib.util.ATOMIC_TEMP_NAME_RE (snapshots,
# PNGs): truncate_jsonl's, and the PNG temporaries of versions before dnnlib.util.atomic_write_path.
TEMP_FILE_RE = re.compile(r'^(\.tmp_.*\.png|.+\.jsonl\.tmp)$')
OPTIONS_FILE = 'training_options.json'
MATCH_IGNORED_KEYS = ('run_dir',)  # Options that may differ between two invocations of the same run.
RESUME_STATE_KEY = 'resume_state'  # Snapshot key holding everything in `make_resume_state`.
RESUME_STATE_VERSION = 1

# ---------------------------------------------------------------------------------------------
# File names.


def kimg_label(cur_nimg: int, fractional: bool) -> str:
    """'000120' (kimg, the official naming) or, for runs whose ticks are shorter than 1 kimg,
    '000000.040' (kimg with 3 decimals, i.e. exact images), so names never collide."""
    if fractional:
        return f'{cur_nimg / 1000:010.3f}'
    return f'{cur_nimg // 1000:06d}'


def snapshot_path(run_dir: str, cur_nimg: int, fractional: bool) -> str:
    return os.path.join(run_dir, f'network-snapshot-{kimg_label(cur_nimg, fractional)}.pkl')


def list_snapshots(run_dir: str) -> list[tuple[float, str]]:
    """[(kimg, path)] of the network snapshots in `run_dir`, oldest first."""
    if not os.path.isdir(run_dir):
        return []
    found = []
    for name in os.listdir(run_dir):
        match = SNAPSHOT_RE.match(name)
        if match:
            found.append((float(match.group(1)), os.path.join(run_dir, name)))
    return sorted(found)


def latest_snapshot(run_dir: str) -> str | None:
    snapshots = list_snapshots(run_dir)
    return snapshots[-1][1] if snapshots else None


def list_run_dirs(outdir: str) -> list[tuple[int, str]]:
    """[(run id, path)] of the `NNNNN-<desc>` folders in `outdir`, oldest first."""
    if not os.path.isdir(outdir):
        return []
    runs = []
    for name in os.listdir(outdir):
        match = RUN_DIR_RE.match(name)
        if match and os.path.isdir(os.path.join(outdir, name)):
            runs.append((int(match.group(1)), os.path.join(outdir, name)))
    return sorted(runs)


def next_run_dir(outdir: str, desc: str) -> str:
    """`<outdir>/<next id:05d>-<desc>`."""
    runs = list_run_dirs(outdir)
    next_id = runs[-1][0] + 1 if runs else 0
    return os.path.join(outdir, f'{next_id:05d}-{desc}')


def remove_temp_files(run_dir: str) -> list[str]:
    """Delete the temporary files a killed writer may have left (atomic writes never rename them)."""
    removed = []
    for name in os.listdir(run_dir):
        if dnnlib.util.ATOMIC_TEMP_NAME_RE.match(name) or TEMP_FILE_RE.match(name):
            os.remove(os.path.join(run_dir, name))
            removed.append(name)
    return removed

# ---------------------------------------------------------------------------------------------
# Which run does a command continue?


def read_options(run_dir: str) -> dict | None:
    path = os.path.join(run_dir, OPTIONS_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, 'rt') as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None  # A damaged options file simply matches nothing; the run is left alone.


def options_match(saved: dict, new: dict) -> bool:
    """The continuation rule: equal after a JSON round trip, ignoring MATCH_IGNORED_KEYS."""
    def normal(options):
        plain = json.loads(json.dumps(options))
        return {k: v for k, v in plain.items() if k not in MATCH_IGNORED_KEYS}
    return normal(saved) == normal(new)


def find_matching_run(outdir: str, options: dict) -> str | None:
    """Newest run dir under `outdir` whose saved options match `options` (see module doc)."""
    for _run_id, run_dir in reversed(list_run_dirs(outdir)):
        saved = read_options(run_dir)
        if saved is not None and options_match(saved, options):
            return run_dir
    return None


def find_latest_run_with_snapshot(outdir: str) -> str | None:
    """Newest run dir under `outdir` that holds at least one network snapshot."""
    for _run_id, run_dir in reversed(list_run_dirs(outdir)):
        if latest_snapshot(run_dir) is not None:
            return run_dir
    return None


def options_diff(saved: dict, new: dict, prefix: str = '') -> list[str]:
    """Human-readable 'key: old -> new' lines for options that differ (nested dicts flattened)."""
    lines = []
    for key in sorted(set(saved) | set(new)):
        if prefix == '' and key in MATCH_IGNORED_KEYS:
            continue
        a, b = saved.get(key, '<absent>'), new.get(key, '<absent>')
        if isinstance(a, dict) and isinstance(b, dict):
            lines += options_diff(a, b, prefix=f'{prefix}{key}.')
        elif json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
            lines.append(f'{prefix}{key}: {json.dumps(a)} -> {json.dumps(b)}')
    return lines

# ---------------------------------------------------------------------------------------------
# Log files written after the snapshot a run continues from are out of date.


def _label_covers_nimg(label: str, nimg: int) -> bool:
    """Is a record at `nimg` images at or before the snapshot named `label` (kimg_label)? Names
    with decimals are exact image counts; whole-kimg names (ticks >= 1 kimg apart) are compared
    on whole kimg, which separates consecutive ticks as exactly."""
    if '.' in label:
        return nimg <= int(decimal.Decimal(label) * 1000)
    return nimg // 1000 <= int(label)


def stats_record_at_or_before(record: dict, label: str) -> bool:
    """Does this stats.jsonl line belong to the run up to the snapshot named `label`? The tick's
    image count is `Progress/kimg` * 1000, rounded: exact for the float64 values we write, and for
    the float32 values of older runs up to 8M images. Lines without it are kept."""
    kimg = record.get('Progress/kimg') if isinstance(record, dict) else None
    mean = kimg.get('mean') if isinstance(kimg, dict) else None
    if not isinstance(mean, (int, float)) or not math.isfinite(mean):
        return True
    return _label_covers_nimg(label, round(mean * 1000))


def metric_record_at_or_before(record: dict, label: str) -> bool:
    """Does this metric-*.jsonl line describe a snapshot at or before the snapshot named `label`?
    Lines that name no snapshot of ours are kept."""
    name = record.get('snapshot_pkl') if isinstance(record, dict) else None
    match = SNAPSHOT_RE.match(os.path.basename(name)) if isinstance(name, str) else None
    if match is None:
        return True
    return decimal.Decimal(match.group(1)) <= decimal.Decimal(label)


def truncate_jsonl(path: str, keep) -> int:
    """Rewrite `path` keeping only the JSON lines for which `keep(record)` is true (atomic).
    Returns the number of lines dropped. Unparseable lines are kept."""
    if not os.path.isfile(path):
        return 0
    with open(path, 'rt') as f:
        lines = f.readlines()
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            kept.append(line)
            continue
        if keep(record):
            kept.append(line)
    dropped = len(lines) - len(kept)
    if dropped:
        dnnlib.util.write_text_atomic(path, ''.join(kept))
    return dropped

# ---------------------------------------------------------------------------------------------
# RNG states (one per rank).


def capture_rng_state(device: torch.device) -> dict:
    """Every RNG the training step may draw from: torch (CPU and this CUDA device), numpy, python."""
    np_state = np.random.get_state()
    state = dict(
        torch_cpu=torch.get_rng_state(),
        numpy=dict(kind=np_state[0], keys=torch.from_numpy(np_state[1].astype(np.int64)), pos=int(np_state[2]),
                   has_gauss=int(np_state[3]), cached_gaussian=float(np_state[4])),
        python=_python_state_to_plain(random.getstate()),
    )
    device = torch.device(device)
    if device.type == 'cuda':
        state['torch_cuda'] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict, device: torch.device) -> None:
    """Inverse of `capture_rng_state`."""
    torch.set_rng_state(state['torch_cpu'])
    np_state = state['numpy']
    np.random.set_state((np_state['kind'], np.asarray(np_state['keys'].numpy(), dtype=np.uint32), np_state['pos'],
                         np_state['has_gauss'], np_state['cached_gaussian']))
    random.setstate(_python_state_from_plain(state['python']))
    device = torch.device(device)
    if device.type == 'cuda' and 'torch_cuda' in state:
        torch.cuda.set_rng_state(state['torch_cuda'], device)


def _python_state_to_plain(state: tuple) -> dict:
    version, internal, gauss_next = state
    return dict(version=version, internal=list(internal), gauss_next=gauss_next)


def _python_state_from_plain(plain: dict) -> tuple:
    return (plain['version'], tuple(plain['internal']), plain['gauss_next'])


@contextlib.contextmanager
def preserved_rng(device: torch.device):
    """Run a block (image grids, metrics) without changing any RNG the training step uses, so
    maintenance work never shifts the random stream of the run (exact resume relies on it)."""
    state = capture_rng_state(device)
    try:
        yield
    finally:
        restore_rng_state(state, device)


def derive_seed(*values: int) -> int:
    """A 63-bit seed from integers (e.g. (seed, rank) or (seed, step)), well mixed."""
    state = np.random.SeedSequence([int(v) for v in values]).generate_state(1, dtype=np.uint64)[0]
    return int(state) & ((1 << 63) - 1)

"""Writing snapshots in the official stylegan2-ada-pytorch persistence format.

The official loaders (`legacy.load_network_pkl` of stylegan2-ada-pytorch, stylegan3 and the
domain-expansion fork, and every tool built on them) unpickle each network as
`torch_utils.persistence._reconstruct_persistent_obj(meta)`: they execute `meta['module_src']`,
take the class named `meta['class_name']` from it and restore `meta['state']` as the object's
`__dict__` (spec section 1.2). Our own pickles store constructor arguments instead, which those
loaders cannot read.

`official_snapshot(data)` turns a loaded snapshot into that layout: every network becomes a
`persistence.PersistentRecord` whose embedded source is OUR defining module
(`training/networks.py`, `training/augment.py`), whose class name is our class name, and whose
state is the module's `__dict__` with our constructor arguments stored as the official
`_init_args` / `_init_kwargs`. Those two modules import only the `torch_utils` API that the
official repositories also provide (`misc.assert_shape`, `persistence.persistent_class`,
`bias_act.bias_act` / `activation_funcs`, `upfirdn2d.setup_filter` / `upsample2d` /
`downsample2d`, `conv2d_resample.conv2d_resample`), so the official code runs our classes
unchanged. Our own loader reads the result back like any official pickle, never executing the
source (`snapshot_io.load_network_pkl`).
"""

import copy
import hashlib
import importlib
import inspect
import os
import pickle
import sys
from typing import Any

import torch

import dnnlib
from torch_utils import persistence
from torch_utils.persistence import SnapshotError

# Modules whose source may be embedded: they import only what the official torch_utils provides.
EXPORTABLE_MODULES = ('training.networks', 'training.augment')
# Snapshot keys that only continuing a run needs (optimizer states, RNG streams, counters).
RESUME_ONLY_KEYS = ('resume_state',)
# Instance attributes our persistence or our loader adds that are no part of the official state.
_OUR_ATTRIBUTES = ('init_args', 'init_kwargs', 'official_module_src_sha256')
_HOOK_DICTS = ('_backward_pre_hooks', '_backward_hooks', '_forward_hooks', '_forward_hooks_with_kwargs',
               '_forward_hooks_always_called', '_forward_pre_hooks', '_forward_pre_hooks_with_kwargs',
               '_state_dict_hooks', '_state_dict_pre_hooks', '_load_state_dict_pre_hooks',
               '_load_state_dict_post_hooks')
PICKLE_PROTOCOL = 4  # What the official loops write under Python 3.8+ (spec section 1.1).


def module_source(module_name: str) -> str:
    """The full source text of one of EXPORTABLE_MODULES (one string object per module, so the
    pickle stores it once and refers back to it)."""
    if module_name not in _source_cache:
        _source_cache[module_name] = inspect.getsource(importlib.import_module(module_name))
    return _source_cache[module_name]


_source_cache: dict[str, str] = {}


def _easydicts(value: Any) -> Any:
    """Plain dicts -> EasyDict, recursively: the official code edits `init_kwargs.synthesis_kwargs`
    by attribute (legacy.py, force_fp16), as its training script builds them."""
    if isinstance(value, dict):
        return dnnlib.EasyDict({k: _easydicts(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return type(value)(_easydicts(v) for v in value)
    return value


def _check_exportable(module: torch.nn.Module, where: str) -> None:
    cls = type(module)
    if not persistence.is_persistent(module) or cls.__module__ not in EXPORTABLE_MODULES:
        raise SnapshotError(
            f'{where} is a {cls.__module__}.{cls.__qualname__}; the official format can only carry the classes of '
            f"{', '.join(m.replace('.', '/') + '.py' for m in EXPORTABLE_MODULES)}")
    if getattr(sys.modules[cls.__module__], cls.__name__, None) is not cls:
        raise SnapshotError(f'{where}: class {cls.__qualname__} is not a top-level name of {cls.__module__}')
    for name in _HOOK_DICTS:
        if module.__dict__.get(name):
            raise SnapshotError(f'{where} has {name} registered; remove the hooks before exporting '
                                f'(the official format would try to pickle them)')


def to_record(module: torch.nn.Module, where: str = 'network') -> persistence.PersistentRecord:
    """One of our persistent modules as the official persistent object it corresponds to.

    The module is not changed. Tensors are detached CPU copies; parameters stay
    `torch.nn.Parameter`s with their `requires_grad` flag, buffers plain tensors.
    """
    _check_exportable(module, where)
    state = {}
    for key, value in module.__dict__.items():
        if key in _OUR_ATTRIBUTES:
            continue
        if key == '_modules':
            value = {name: None if child is None else to_record(child, f'{where}.{name}')
                     for name, child in value.items()}
        elif key == '_parameters':
            value = {name: None if p is None else torch.nn.Parameter(p.detach().cpu().clone(), p.requires_grad)
                     for name, p in value.items()}
        elif key == '_buffers':
            value = {name: None if b is None else b.detach().cpu().clone() for name, b in value.items()}
        else:
            value = copy.deepcopy(value)
        state[key] = value
    state['_init_args'] = tuple(module.init_args)
    state['_init_kwargs'] = _easydicts(dict(module.init_kwargs))
    src = module_source(type(module).__module__)
    digest = hashlib.sha256(src.encode('utf-8', 'surrogatepass')).hexdigest()
    return persistence.PersistentRecord(type(module).__name__, state, src, digest)


def official_snapshot(data: dict, lite: bool = False) -> dict:
    """The snapshot dict with every network replaced by its official persistent record.

    Key order and every other key (training_set_kwargs, latent_basis, repurposed_dims,
    subspace_distance, expansion_cfg, ...) are kept; `lite=True` drops RESUME_ONLY_KEYS
    (optimizer and resume state), which nothing but continuing the run needs.
    """
    out = {}
    for key, value in data.items():
        if lite and key in RESUME_ONLY_KEYS:
            continue
        if isinstance(value, torch.nn.Module):
            value = to_record(value, f"snapshot['{key}']")
        out[key] = value
    return out


def save_official_pkl(data: dict, path: str | os.PathLike, lite: bool = False) -> dict:
    """Write `data` (as `snapshot_io.load_network_pkl` returns it) as an official-format pickle,
    atomically. Returns the dict that was pickled (records instead of modules)."""
    path = os.fspath(path)
    missing = [key for key in ('G', 'D', 'G_ema') if not isinstance(data.get(key), torch.nn.Module)]
    if missing:
        raise SnapshotError(f'Cannot save {path}: snapshot key(s) {", ".join(missing)} missing or not networks')
    records = official_snapshot(data, lite=lite)
    with dnnlib.util.atomic_write_path(path, durable=True) as tmp, open(tmp, 'wb') as f:
        pickle.dump(records, f, protocol=PICKLE_PROTOCOL)
    return records

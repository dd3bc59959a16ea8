"""Reading and writing network snapshots, without ever executing code stored in them.

* `load_network_pkl(f)` reads official stylegan2-ada-pytorch / domain-expansion pickles (spec
  section 1) and our own pickles, through `torch_utils.persistence.safe_load` (an allow-list
  unpickler), and returns `{'training_set_kwargs', 'G', 'D', 'G_ema', 'augment_pipe', ...}` with
  our own modules and every extra key (`latent_basis`, `repurposed_dims`, `subspace_distance`,
  `expansion_cfg`, optimizer states, ...) passed through.
* `save_network_pkl(data, path)` writes our pickle format atomically.
* `export_safetensors` / `import_safetensors` store the same content with no pickle at all.

Official networks are rebuilt from their stored constructor arguments (`_init_kwargs`), then every
tensor is copied by state_dict name; a name present on one side only is an error (spec section 9).
Official StyleGAN3 generators are recognised from their data and built as
`training.networks_stylegan3` classes (training/snapshot_io_stylegan3.py).
"""

import collections
import collections.abc
import contextlib
import copy
import json
import os
import pickle
from typing import Any, BinaryIO, Callable

import torch

import dnnlib
from torch_utils import persistence
from torch_utils.persistence import SnapshotError, UnsafePickleError  # noqa: F401 (re-exported)
from training import snapshot_io_stylegan3

# Official persistent classes (spec section 1.5) and where ours live.
OFFICIAL_NETWORK_CLASSES = (
    'Generator', 'MappingNetwork', 'SynthesisNetwork', 'SynthesisBlock', 'SynthesisLayer', 'ToRGBLayer',
    'FullyConnectedLayer', 'Conv2dLayer', 'Discriminator', 'DiscriminatorBlock', 'MinibatchStdLayer',
    'DiscriminatorEpilogue')
OFFICIAL_CLASS_NAMES = OFFICIAL_NETWORK_CLASSES + snapshot_io_stylegan3.STYLEGAN3_ONLY_CLASS_NAMES + ('AugmentPipe',)
NETWORK_KEYS = ('G', 'D', 'G_ema')  # Required in every snapshot.
FP16_OVERRIDES = dict(num_fp16_res=4, conv_clamp=256)  # What `force_fp16` sets, as the official loader does.
SAFETENSORS_FORMAT = 'sg2x-snapshot-safetensors-v1'
SAFETENSORS_METADATA_KEY = 'sg2x_snapshot'

# ---------------------------------------------------------------------------------------------
# Augmentation pipe placeholder.


@persistence.persistent_class
class AugmentPipeState(torch.nn.Module):
    """Keeps an AugmentPipe's constructor arguments and buffers when training/augment.py cannot
    provide the class, so a load/save round trip loses nothing. Replaced by a real `AugmentPipe`
    on load as soon as one can be imported."""

    def __init__(self,
        init_kwargs: dict,   # Constructor keyword arguments of the AugmentPipe, e.g. {'xflip': 1, ...}.
        buffer_specs: dict,  # Buffer name -> [shape list, dtype name], e.g. {'p': [[], 'float32']}.
    ):
        super().__init__()
        self.pipe_kwargs = dict(init_kwargs)
        for name, (shape, dtype) in buffer_specs.items():
            self.register_buffer(name, torch.zeros(shape, dtype=getattr(torch, dtype)))

    @staticmethod
    def from_tensors(init_kwargs: dict, tensors: dict[str, torch.Tensor]) -> 'AugmentPipeState':
        specs = {n: [list(t.shape), str(t.dtype).removeprefix('torch.')] for n, t in tensors.items()}
        holder = AugmentPipeState(init_kwargs, specs)
        persistence.copy_tensors_strict(holder, tensors, what='augment_pipe')
        return holder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError('augment_pipe is an AugmentPipeState placeholder because training.augment '
                                  'could not be imported; it holds the settings but cannot augment')

    def extra_repr(self) -> str:
        return f'pipe_kwargs={self.pipe_kwargs}'


def _augment_pipe_class() -> type | None:
    """training.augment.AugmentPipe, or None while that module does not exist."""
    try:
        from training import augment
    except ModuleNotFoundError as e:
        if e.name not in ('training.augment',):
            raise  # A broken dependency of augment.py is a real error, not "not written yet".
        return None
    return augment.AugmentPipe


def _make_augment_pipe(init_args: tuple, init_kwargs: dict, tensors: dict[str, torch.Tensor]) -> torch.nn.Module:
    cls = _augment_pipe_class()
    if cls is None:
        if init_args:
            raise SnapshotError('augment_pipe was built with positional arguments; AugmentPipeState cannot keep them')
        return AugmentPipeState.from_tensors(init_kwargs, tensors)
    pipe = persistence.build_module_checked(cls, init_args, init_kwargs, tensors, what='augment_pipe')
    return pipe.eval().requires_grad_(False)

# ---------------------------------------------------------------------------------------------
# Loading.


def load_network_pkl(f: BinaryIO | str | os.PathLike, force_fp16: bool = False) -> dict:
    """Load an official or our own network snapshot pickle, safely.

    Args:
        f: binary file object (e.g. from `dnnlib.util.open_url`) or path.
        force_fp16: rebuild G/G_ema with synthesis_kwargs num_fp16_res=4, conv_clamp=256 and D with
            the same top-level arguments, keeping all tensors (as the official option).
    Returns:
        dict with `training_set_kwargs` (None if absent), `G`, `D`, `G_ema` (our modules, as stored:
        eval mode, requires_grad False for official pickles), `augment_pipe` (None, our AugmentPipe,
        or an `AugmentPipeState` placeholder) and every other key of the snapshot untouched.
    Raises:
        SnapshotError (a ValueError) with a one-line message naming the file, for truncated or
        foreign files, TensorFlow-era pickles, disallowed globals and mismatching networks.
    """
    fobj, source, close = _open_binary(f)
    try:
        _import_our_modules()  # Fills the persistence registry for our own format.
        raw = _safe_unpickle(fobj, source)
    finally:
        if close:
            fobj.close()
    with _one_error_boundary(source):
        check_nesting(raw, source)
        if isinstance(raw, dict):
            raw = {key: _records_to_modules(value, str(key), source) for key, value in raw.items()}
        return _finish(raw, source, force_fp16)


MAX_SNAPSHOT_DEPTH = 64         # Nesting of containers in a snapshot (ours use < 10); deeper is refused.
MAX_SNAPSHOT_VALUES = 10**6     # Values in a snapshot with shared containers counted once per use.
_CONTAINERS = (dict, list, tuple, set, frozenset)


def check_nesting(value: Any, source: str, max_depth: int = MAX_SNAPSHOT_DEPTH,
                  max_values: int = MAX_SNAPSHOT_VALUES) -> None:
    """SnapshotError unless the containers in `value` form a tree-like structure that code walking
    it later can afford: nested at most `max_depth` deep, no container inside itself, and at most
    `max_values` values once containers referenced several times (pickle memo) are expanded, so
    no RecursionError and no exponential copy ("billion laughs") can follow."""
    expanded = {}  # id of a finished container -> (values, height) of its expansion
    active = set()

    def measure(item, depth: int) -> tuple[int, int]:
        if not isinstance(item, _CONTAINERS):
            return 1, 0
        key = id(item)
        if key in active:
            raise SnapshotError(f'{source}: a container contains itself; not a network snapshot')
        values, height = expanded.get(key) or (None, 0)
        if values is None:
            if depth >= max_depth:
                raise SnapshotError(f'{source}: containers nest deeper than {max_depth} levels; not a network snapshot')
            active.add(key)
            values = 1
            for child in ([*item.keys(), *item.values()] if isinstance(item, dict) else item):
                child_values, child_height = measure(child, depth + 1)
                values, height = values + child_values, max(height, child_height + 1)
                if values > max_values:
                    raise SnapshotError(f'{source}: holds more than {max_values} values once shared containers are '
                                        f'expanded; not a network snapshot')
            active.discard(key)
            expanded[key] = values, height
        if depth + height > max_depth:
            raise SnapshotError(f'{source}: containers nest deeper than {max_depth} levels; not a network snapshot')
        return values, height

    measure(value, 0)


@contextlib.contextmanager
def _one_error_boundary(source: str):
    """Everything after unpickling ends in SnapshotError: the file's content can make our checks or
    constructors fail in any way, and the user must get one line naming the file, not a traceback."""
    try:
        yield
    except SnapshotError:
        raise
    except RecursionError:
        raise SnapshotError(f'{source}: the snapshot nests objects too deeply to be read') from None
    except Exception as e:
        raise SnapshotError(f'{source}: not a valid network snapshot ({type(e).__name__}: {e})') from None


def read_pickle_records(f: BinaryIO | str | os.PathLike) -> Any:
    """The raw content of a snapshot pickle through the safe unpickler, official networks left as
    `persistence.PersistentRecord`s (debugging and tests; `load_network_pkl` is the normal entry)."""
    fobj, source, close = _open_binary(f)
    try:
        return _safe_unpickle(fobj, source)
    finally:
        if close:
            fobj.close()


def _open_binary(f) -> tuple[BinaryIO, str, bool]:
    if isinstance(f, (str, os.PathLike)):
        path = os.fspath(f)
        try:
            return open(path, 'rb'), path, True
        except OSError as e:
            raise SnapshotError(f'Cannot open network pickle {path}: {e.strerror}') from e
    name = getattr(f, 'name', None)
    return f, (name if isinstance(name, str) else '<network pickle stream>'), False


def _import_our_modules() -> None:
    import training.networks  # noqa: F401 (registers our network classes)
    import training.networks_stylegan3  # noqa: F401
    _augment_pipe_class()


def _safe_unpickle(fobj: BinaryIO, source: str) -> Any:
    try:
        return persistence.safe_load(fobj, source, record_class_names=OFFICIAL_CLASS_NAMES)
    except SnapshotError as e:
        if source in str(e):
            raise
        raise type(e)(f'{source}: {e}') from e
    except (EOFError, pickle.UnpicklingError) as e:
        text = str(e)
        if isinstance(e, EOFError) or 'truncated' in text or 'exhausted' in text:
            raise SnapshotError(f'Network pickle {source} is truncated (the pickle stream ends early: {text}); '
                                f'copy or download it again') from e
        raise SnapshotError(f'{source} is not a network pickle ({text})') from e
    except KeyError as e:  # The pure-Python unpickler's way of meeting an unknown opcode byte.
        code = e.args[0] if e.args else None
        detail = f'unknown pickle opcode {code:#04x}' if isinstance(code, int) else f'KeyError: {e}'
        raise SnapshotError(f'{source} is not a network pickle ({detail})') from e
    except Exception as e:  # Anything else the stream provokes (bad arguments to an allowed global...).
        raise SnapshotError(f'{source} is not a valid network pickle ({type(e).__name__}: {e})') from e


def _plain(value: Any) -> Any:
    """EasyDict -> dict, recursively through dicts, lists and tuples."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _records_to_modules(value: Any, path: str, source: str) -> Any:
    """Replace official records (anywhere in containers) by our modules."""
    if isinstance(value, persistence.PersistentRecord):
        return _module_from_record(value, path, source)
    if isinstance(value, dict):
        converted = {k: _records_to_modules(v, f'{path}.{k}', source) for k, v in value.items()}
        if type(value) is dict:
            return converted
        out = type(value)()
        out.update(converted)
        return out
    if isinstance(value, (list, tuple)):
        return type(value)(_records_to_modules(v, f'{path}[{i}]', source) for i, v in enumerate(value))
    return value


GENERATOR_ARGS = ('z_dim', 'c_dim', 'w_dim', 'img_resolution', 'img_channels', 'mapping_kwargs', 'synthesis_kwargs')


def stylegan3_repo_generator_kwargs(kwargs: dict) -> dict:
    """Map the constructor arguments of a StyleGAN2 `Generator` written by the stylegan3
    repository (`training.networks_stylegan2`) onto ours.

    That Generator takes the synthesis arguments flat (`channel_base=...`, `num_fp16_res=...`,
    `fused_modconv_default='inference_only'`) instead of in `synthesis_kwargs`, and its mapping
    network defaults to `w_avg_beta=0.998`. stylegan2-ada-pytorch kwargs pass through unchanged.
    """
    flat = {key: value for key, value in kwargs.items() if key not in GENERATOR_ARGS}
    if not flat:
        return kwargs
    out = {key: value for key, value in kwargs.items() if key in GENERATOR_ARGS}
    out['synthesis_kwargs'] = {**flat, **dict(out.get('synthesis_kwargs') or {})}
    out['mapping_kwargs'] = {'w_avg_beta': 0.998, **dict(out.get('mapping_kwargs') or {})}
    return out


def _module_from_record(record: persistence.PersistentRecord, path: str, source: str) -> torch.nn.Module:
    what = f"{source}, '{path}' ({record.class_name})"
    state = record.state
    if '_init_kwargs' not in state:
        raise SnapshotError(f'{what}: no stored constructor arguments (_init_kwargs); '
                            f'not written by stylegan2-ada-pytorch persistence')
    init_args = state.get('_init_args')
    init_args = () if init_args is None else init_args
    persistence.check_plain_arguments(init_args, state['_init_kwargs'], what)
    init_args, init_kwargs = tuple(_plain(init_args)), _plain(state['_init_kwargs'])
    try:
        tensors = record.named_tensors()
    except SnapshotError as e:
        raise SnapshotError(f'{what}: {e}') from None
    if record.class_name == 'AugmentPipe':
        module = _make_augment_pipe(init_args, init_kwargs, tensors)
    elif snapshot_io_stylegan3.is_stylegan3_record(record):  # Decided from the data, never the source.
        module = snapshot_io_stylegan3.build_module(record, init_args, init_kwargs, tensors, what)
    else:
        from training import networks
        cls = getattr(networks, record.class_name, None)
        if cls is None or record.class_name not in OFFICIAL_NETWORK_CLASSES:
            raise SnapshotError(f'{what}: training/networks.py has no class {record.class_name}')
        if record.class_name == 'Generator':
            init_kwargs = stylegan3_repo_generator_kwargs(init_kwargs)
        if record.class_name == 'Discriminator':
            init_kwargs = snapshot_io_stylegan3.discriminator_kwargs(record, init_kwargs)
        module = persistence.build_module_checked(cls, init_args, init_kwargs, tensors, what=what)
    module.eval().requires_grad_(False)  # As every official snapshot stores its networks.
    module.official_module_src_sha256 = record.module_src_sha256  # Debug: which source wrote it.
    return module


# What every caller may rely on in a loaded snapshot's networks (checked in `_finish`).
_NETWORK_ATTRIBUTES = {
    'generator': ('z_dim', 'c_dim', 'w_dim', 'img_resolution', 'img_channels', 'mapping', 'synthesis'),
    'discriminator': ('c_dim', 'img_resolution', 'img_channels'),
}


def _finish(data: Any, source: str, force_fp16: bool) -> dict:
    """Check the top-level layout, fill the optional keys, upgrade placeholders, apply force_fp16."""
    if isinstance(data, tuple) and len(data) == 3:
        raise SnapshotError(f'{source} holds a 3-tuple of networks, the TensorFlow-era StyleGAN layout; convert it '
                            f'with legacy.py from NVlabs/stylegan2-ada-pytorch first, then load the converted pickle')
    if not isinstance(data, dict):
        raise SnapshotError(f'{source} is not a network snapshot: it holds a {type(data).__name__}, '
                            f'not a dict with keys G, D, G_ema')
    missing = [k for k in NETWORK_KEYS if k not in data]
    if missing:
        raise SnapshotError(f'{source} is missing snapshot key(s) {", ".join(missing)} '
                            f'(it has: {", ".join(map(str, data)) or "nothing"})')
    for key in NETWORK_KEYS:
        if not isinstance(data[key], torch.nn.Module):
            raise SnapshotError(f"{source}: '{key}' is a {type(data[key]).__name__}, not a network")
        role = 'discriminator' if key == 'D' else 'generator'
        missing = [a for a in _NETWORK_ATTRIBUTES[role] if not isinstance(getattr(data[key], a, None), (int, torch.nn.Module))]
        if missing:
            raise SnapshotError(f"{source}: '{key}' is a {type(data[key]).__name__}, not a {role} "
                                f"(it lacks {', '.join(missing)})")
    data.setdefault('training_set_kwargs', None)
    data.setdefault('augment_pipe', None)
    if isinstance(data['augment_pipe'], AugmentPipeState) and _augment_pipe_class() is not None:
        holder = data['augment_pipe']
        data['augment_pipe'] = _make_augment_pipe((), holder.pipe_kwargs, dict(holder.state_dict()))
    if force_fp16:
        for key in NETWORK_KEYS:
            data[key] = _rebuild_fp16(data[key], key, source)
    return data


def _rebuild_fp16(module: torch.nn.Module, key: str, source: str) -> torch.nn.Module:
    if not hasattr(module, 'init_kwargs'):
        raise SnapshotError(f"{source}: '{key}' has no init_kwargs, so force_fp16 cannot rebuild it")
    kwargs = copy.deepcopy(module.init_kwargs)
    if key == 'D' or snapshot_io_stylegan3.takes_flat_synthesis_kwargs(module):
        kwargs.update(FP16_OVERRIDES)
    else:
        kwargs['synthesis_kwargs'] = {**(kwargs.get('synthesis_kwargs') or {}), **FP16_OVERRIDES}
    if kwargs == module.init_kwargs:
        return module
    rebuilt = type(module)(*module.init_args, **kwargs)
    persistence.copy_tensors_strict(rebuilt, module.state_dict(), what=f"{source}, '{key}' (force_fp16)")
    rebuilt.train(module.training).requires_grad_(False)
    if hasattr(module, 'official_module_src_sha256'):
        rebuilt.official_module_src_sha256 = module.official_module_src_sha256
    return rebuilt

# ---------------------------------------------------------------------------------------------
# Saving our pickle format.


def save_network_pkl(data: dict, path: str | os.PathLike) -> None:
    """Write a snapshot dict (keys G, D, G_ema required; anything plain besides) as our pickle format.

    Every module must be an instance of a `@persistence.persistent_class` class; other values
    must be plain data that `load_network_pkl` reads back (None, bool, int, float, str, bytes,
    tensors, numpy scalars/arrays, dicts, lists, tuples, sets). Checked before anything is
    written. The file is written to a temporary name in the same folder, fsynced and renamed
    over `path`, so a crash never leaves a half-written snapshot.
    """
    path = os.fspath(path)
    _check_saveable(data, path)
    _atomic_write(path, lambda f: pickle.dump(data, f, protocol=4))


_PLAIN_TYPES = (type(None), bool, int, float, str, bytes, torch.Tensor)


def _check_saveable(data: Any, path: str) -> None:
    if not isinstance(data, dict):
        raise SnapshotError(f'Cannot save {path}: the snapshot must be a dict, got {type(data).__name__}')
    missing = [k for k in NETWORK_KEYS if not isinstance(data.get(k), torch.nn.Module)]
    if missing:
        raise SnapshotError(f'Cannot save {path}: snapshot key(s) {", ".join(missing)} missing or not networks')
    for key, value in data.items():
        _check_value(value, f"data['{key}']", path)


def _check_value(value: Any, where: str, path: str) -> None:
    import numpy as np
    if isinstance(value, torch.nn.Module):
        if not persistence.is_persistent(value):
            raise SnapshotError(f'Cannot save {path}: {where} is a {type(value).__name__}, which is not decorated '
                                f'with @persistence.persistent_class and so could not be loaded back safely')
        return
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        if type(value) not in (dict, list, tuple, set, frozenset, dnnlib.EasyDict, collections.OrderedDict):
            raise SnapshotError(f'Cannot save {path}: {where} is a {type(value).__name__}; use a plain '
                                f'dict/list/tuple/set (the safe loader accepts no other container classes)')
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in items:
            _check_value(k, f'{where} (key)', path)
            _check_value(v, f'{where}[{k!r}]', path)
        return
    if type(value) in (*_PLAIN_TYPES, np.ndarray) or isinstance(value, (np.generic, torch.nn.Parameter)):
        if isinstance(value, np.ndarray) and value.dtype.hasobject:
            raise SnapshotError(f'Cannot save {path}: {where} is a numpy array of Python objects')
        return
    raise SnapshotError(f'Cannot save {path}: {where} is a {type(value).__name__}, which the safe loader '
                        f'would refuse; convert it to plain data (dict, list, str, number, tensor)')


def _atomic_write(path: str, write: Callable[[BinaryIO], None]) -> None:
    """Run `write(file)` on a temporary file next to `path`, fsync it, then rename it over `path`."""
    with dnnlib.util.atomic_write_path(path, durable=True) as tmp, open(tmp, 'wb') as f:
        write(f)

# ---------------------------------------------------------------------------------------------
# Safetensors: every tensor under a dotted name, everything else in one JSON metadata entry.
#
# JSON encoding of a value: None/bool/int/float/str as themselves; list as a JSON list; dict with
# string keys not starting with '__' as a JSON object; anything else as a one-key object tagged
# '__tensor__' (tensor name), '__module__', '__tuple__', '__set__', '__items__' (general dict),
# '__easydict__'.


def export_safetensors(data: dict, path: str | os.PathLike) -> None:
    """Write a snapshot dict (as returned by `load_network_pkl`) as a .safetensors file, atomically.

    Network tensors are stored as `<key>.<state_dict name>` (e.g. `G_ema.mapping.w_avg`), other
    tensors under their key path (`latent_basis`); class names, constructor arguments and every
    non-tensor value go into the JSON metadata entry `sg2x_snapshot`.
    """
    from safetensors.torch import save as safetensors_save
    path = os.fspath(path)
    _check_saveable(data, path)
    tensors: dict[str, torch.Tensor] = {}
    tree = {key: _encode(value, key, tensors, path) for key, value in data.items()}
    metadata = {SAFETENSORS_METADATA_KEY: json.dumps({'format': SAFETENSORS_FORMAT, 'data': tree})}
    blob = safetensors_save(tensors, metadata=metadata)
    _atomic_write(path, lambda f: f.write(blob))


def _put_tensor(tensors: dict, name: str, tensor: torch.Tensor, path: str) -> None:
    if name in tensors:
        raise SnapshotError(f"Cannot export {path}: two tensors would both be named '{name}'")
    tensors[name] = tensor.detach().to('cpu', copy=True).contiguous()


def _encode(value: Any, name: str, tensors: dict, path: str) -> Any:
    import numpy as np
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor):
        _put_tensor(tensors, name, value, path)
        return {'__tensor__': name}
    if isinstance(value, np.ndarray):
        raise SnapshotError(f'Cannot export {path}: {name} is a numpy array; store it as a torch tensor')
    if isinstance(value, torch.nn.Module):
        state = value.state_dict()
        for n, t in state.items():
            _put_tensor(tensors, f'{name}.{n}', t, path)
        return {'__module__': {
            'class_name': type(value)._persistent_name,
            'init_args': _encode(tuple(value.init_args), f'{name}.__init_args__', tensors, path),
            'init_kwargs': _encode(value.init_kwargs, f'{name}.__init_kwargs__', tensors, path),
            'prefix': name,
            'tensors': list(state),
            'flags': persistence._module_flags(value),
        }}
    if isinstance(value, list):
        return [_encode(v, f'{name}.{i}', tensors, path) for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {'__tuple__': [_encode(v, f'{name}.{i}', tensors, path) for i, v in enumerate(value)]}
    if isinstance(value, (set, frozenset)):
        return {'__set__': [_encode(v, f'{name}.{i}', tensors, path) for i, v in enumerate(value)]}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith('__') for k in value):
            body = {k: _encode(v, f'{name}.{k}', tensors, path) for k, v in value.items()}
            return {'__easydict__': body} if isinstance(value, dnnlib.EasyDict) else body
        return {'__items__': [[_encode(k, f'{name}.key{i}', tensors, path), _encode(v, f'{name}.{k}', tensors, path)]
                              for i, (k, v) in enumerate(value.items())]}
    raise SnapshotError(f'Cannot export {path}: {name} is a {type(value).__name__}, which has no safetensors encoding')


def import_safetensors(path: str | os.PathLike, force_fp16: bool = False) -> dict:
    """Read a file written by `export_safetensors`; returns what `load_network_pkl` would.

    The JSON metadata comes from the file, so its schema is checked (an object with `format` and
    `data`, tagged values of the right types, nesting at most MAX_SNAPSHOT_DEPTH): every problem
    is a one-line SnapshotError naming the file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as safetensors_load
    path = os.fspath(path)
    _import_our_modules()
    try:
        with open(path, 'rb') as f:
            blob = f.read()
    except OSError as e:
        raise SnapshotError(f'Cannot open snapshot {path}: {e.strerror}') from e
    try:
        tensors = safetensors_load(blob)
        header_len = int.from_bytes(blob[:8], 'little')
        metadata = json.loads(blob[8:8 + header_len]).get('__metadata__') or {}
    except (SafetensorError, ValueError, RecursionError, AttributeError) as e:
        raise SnapshotError(f'{path} is not a valid safetensors file ({type(e).__name__}: {e})') from None
    if not isinstance(metadata, dict) or SAFETENSORS_METADATA_KEY not in metadata:
        raise SnapshotError(f"{path} has no '{SAFETENSORS_METADATA_KEY}' metadata: it is a safetensors file but "
                            f'not a snapshot written by export_safetensors')
    content = _parse_snapshot_metadata(metadata[SAFETENSORS_METADATA_KEY], path)
    with _one_error_boundary(path):
        used: set[str] = set()
        data = {key: _decode(value, tensors, used, path, key) for key, value in content['data'].items()}
        unused = sorted(set(tensors) - used)
        if unused:
            raise SnapshotError(f'{path} holds tensors that no snapshot entry refers to: {unused[:8]}')
        return _finish(data, path, force_fp16)


def _parse_snapshot_metadata(text: Any, path: str) -> dict:
    """The `sg2x_snapshot` metadata entry as a checked dict: {'format': SAFETENSORS_FORMAT, 'data': {...}}."""
    where = f"{path}: metadata '{SAFETENSORS_METADATA_KEY}'"
    if not isinstance(text, str):
        raise SnapshotError(f'{where} is not a string')
    try:
        content = json.loads(text)
    except RecursionError:
        raise SnapshotError(f'{where} nests too deeply') from None
    except ValueError as e:
        raise SnapshotError(f'{where} is not valid JSON ({e})') from None
    if not isinstance(content, dict):
        raise SnapshotError(f'{where} is a JSON {type(content).__name__}, not an object with format and data')
    if content.get('format') != SAFETENSORS_FORMAT:
        raise SnapshotError(f"{path} has snapshot format {content.get('format')!r}; "
                            f'this code reads {SAFETENSORS_FORMAT}')
    if not isinstance(content.get('data'), dict):
        raise SnapshotError(f"{where}: field 'data' is missing or not an object")
    check_nesting(content['data'], where)
    return content


def _take(tensors: dict, name: Any, used: set, path: str) -> torch.Tensor:
    if not isinstance(name, str) or name not in tensors:
        raise SnapshotError(f'{path}: tensor {name!r} named in the metadata is missing')
    used.add(name)
    return tensors[name]


def _expect(value: Any, kind: type, path: str, where: str, tag: str) -> Any:
    if not isinstance(value, kind):
        raise SnapshotError(f'{path}: metadata entry {where} ({tag}) holds a {type(value).__name__}, '
                            f'not a {kind.__name__}; the file is damaged or was not written by export_safetensors')
    return value


def _decode(value: Any, tensors: dict, used: set, path: str, where: str) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors, used, path, f'{where}.{i}') for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    tag = next(iter(value), None) if len(value) == 1 else None
    body = value.get(tag)
    if tag == '__tensor__':
        return _take(tensors, body, used, path)
    if tag == '__module__':
        return _decode_module(_expect(body, dict, path, where, tag), tensors, used, path, where)
    if tag in ('__tuple__', '__set__'):
        items = [_decode(v, tensors, used, path, f'{where}.{i}') for i, v in enumerate(_expect(body, list, path, where, tag))]
        if tag == '__tuple__':
            return tuple(items)
        if not all(isinstance(v, collections.abc.Hashable) for v in items):
            raise SnapshotError(f'{path}: metadata entry {where} (__set__) holds unhashable items')
        return set(items)
    if tag == '__items__':
        pairs = _expect(body, list, path, where, tag)
        if not all(isinstance(p, list) and len(p) == 2 for p in pairs):
            raise SnapshotError(f'{path}: metadata entry {where} (__items__) is not a list of [key, value] pairs')
        keys = [_decode(k, tensors, used, path, f'{where}.key') for k, _ in pairs]
        if not all(isinstance(k, collections.abc.Hashable) for k in keys):
            raise SnapshotError(f'{path}: metadata entry {where} (__items__) has unhashable keys')
        return {k: _decode(v, tensors, used, path, f'{where}.{k}') for k, (_, v) in zip(keys, pairs)}
    if tag == '__easydict__':
        body = _expect(body, dict, path, where, tag)
        return dnnlib.EasyDict({k: _decode(v, tensors, used, path, f'{where}.{k}') for k, v in body.items()})
    return {k: _decode(v, tensors, used, path, f'{where}.{k}') for k, v in value.items()}


_MODULE_FIELDS = {'class_name': str, 'init_args': object, 'init_kwargs': object, 'prefix': str, 'tensors': list,
                  'flags': dict}


def _decode_module(spec: dict, tensors: dict, used: set, path: str, where: str) -> torch.nn.Module:
    for field, kind in _MODULE_FIELDS.items():
        if field not in spec:
            raise SnapshotError(f"{path}: metadata entry {where} (__module__) lacks the field '{field}'")
        _expect(spec[field], kind, path, f'{where}.{field}', '__module__')
    if not all(isinstance(n, str) for n in spec['tensors']):
        raise SnapshotError(f'{path}: metadata entry {where}.tensors (__module__) is not a list of names')
    module_tensors = {n: _take(tensors, f"{spec['prefix']}.{n}", used, path) for n in spec['tensors']}
    init_args = _decode(spec['init_args'], tensors, used, path, f'{where}.init_args')
    init_kwargs = _decode(spec['init_kwargs'], tensors, used, path, f'{where}.init_kwargs')
    try:
        return persistence.rebuild_module(persistence.FORMAT_TAG, spec['class_name'], init_args,
                                          init_kwargs, module_tensors, spec['flags'])
    except SnapshotError as e:
        raise SnapshotError(f"{path}, '{spec['prefix']}': {e}") from e

"""Safe persistence of torch modules: our own pickle format and a restricted reader for the
official StyleGAN2-ADA network pickles.

Two formats meet here:

* **Ours.** A class decorated with `@persistent_class` remembers its constructor arguments and
  pickles as `rebuild_module(FORMAT_TAG, registry_name, init_args, init_kwargs, tensors, flags)`:
  the class is looked up by name in a registry filled by the decorator, built from its arguments
  and given its tensors strictly by state_dict name. No source code is stored, so snapshots
  survive refactoring as long as the constructor arguments and tensor names stay the same.

* **Official.** stylegan2-ada-pytorch pickles every network as
  `torch_utils.persistence._reconstruct_persistent_obj(meta)`, where `meta` carries the full
  source of the defining module. The official loader executes that source; we never do. Our
  `_reconstruct_persistent_obj` returns an inert `PersistentRecord` (class name + state) that
  `training/snapshot_io.py` turns into our own classes.

`safe_load()` reads either format with an unpickler that resolves only an allow-list of globals
(spec section 1.3), refuses every other global by name, and refuses BUILD on anything but plain
data objects. This module knows nothing about our networks (STYLE.md, Layers).
"""

import _compat_pickle
import collections
import copy
import functools
import hashlib
import inspect
import io
import pickle
from typing import Any, BinaryIO, Callable, Iterable

import torch

import dnnlib
from torch_utils import misc

FORMAT_TAG = 'sg2x-module-v1'  # First argument of every `rebuild_module` call we write.
OFFICIAL_PERSISTENCE_VERSION = 6  # `meta['version']` written by stylegan2-ada-pytorch.


class SnapshotError(dnnlib.util.UserError, ValueError):
    """A snapshot (pickle or safetensors file) cannot be read or written; the message says why.

    The message is always one line: text quoted from the file cannot break it (`dnnlib.util.one_line`).
    """

    def __init__(self, message: str = ''):
        super().__init__(dnnlib.util.one_line(message))


class UnsafePickleError(SnapshotError):
    """The pickle asks for something outside the allow-list; nothing of it was executed."""

# ---------------------------------------------------------------------------------------------
# Our format: decorator, registry, rebuild.


_registry: dict[str, type] = {}  # registry name -> decorated class


def persistent_class(cls: type | None = None, *, name: str | None = None):
    """Class decorator that makes a `torch.nn.Module` subclass pickle as (name, args, tensors).

    Usage: `@persistence.persistent_class` or, to keep an old name after moving a class,
    `@persistence.persistent_class(name='training.networks.Generator')`. The default name is
    `f'{cls.__module__}.{cls.__qualname__}'`.

    After construction the instance has `init_args` (tuple) and `init_kwargs` (dict): deep copies
    of the constructor arguments, taken before the constructor runs; arguments that were passed
    positionally but have a name are moved into `init_kwargs`. `copy.deepcopy` keeps working as
    for any module (full `__dict__` copy); pickling stores only the arguments, the state_dict
    tensors (moved to CPU), which submodules are in training mode and which parameters require
    grad. Anything else set on the instance after construction is not pickled.
    """
    def decorate(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
            raise TypeError(f'@persistent_class expects a torch.nn.Module subclass, got {cls!r}')
        registry_name = name or f'{cls.__module__}.{cls.__qualname__}'
        original_init = cls.__init__
        signature = inspect.signature(original_init)

        @functools.wraps(original_init)
        def __init__(self, *args, **kwargs):
            init_args, init_kwargs = _normalise_call(signature, self, args, kwargs)
            init_args, init_kwargs = copy.deepcopy((init_args, init_kwargs))
            original_init(self, *args, **kwargs)
            # A decorated subclass calls this wrapper of its base first; its own values are set
            # last, so the outermost class wins.
            self.init_args = init_args
            self.init_kwargs = init_kwargs

        cls.__init__ = __init__
        cls.__reduce__ = _reduce_persistent
        cls.__reduce_ex__ = _reduce_ex_persistent
        cls.__deepcopy__ = _deepcopy_module
        cls.__copy__ = _copy_module
        cls._persistent_name = registry_name
        cls._persistent_owner = cls  # Tells a decorated class from an undecorated subclass.
        _registry[registry_name] = cls
        return cls

    return decorate if cls is None else decorate(cls)


def is_persistent(obj: Any) -> bool:
    """True when `obj` is an instance of a class decorated with `@persistent_class` itself."""
    return getattr(type(obj), '_persistent_owner', None) is type(obj)


def registered_classes() -> dict[str, type]:
    """A copy of the registry: registry name -> class."""
    return dict(_registry)


def _normalise_call(signature: inspect.Signature, self_obj, args: tuple, kwargs: dict):
    """(args, kwargs) with every named argument moved into kwargs, in signature order."""
    try:
        bound = signature.bind(self_obj, *args, **kwargs)
    except TypeError:
        return args, dict(kwargs)  # The constructor itself will raise the proper error.
    init_args, init_kwargs = [], {}
    for i, (param_name, value) in enumerate(bound.arguments.items()):
        kind = signature.parameters[param_name].kind
        if i == 0:
            continue  # self
        if kind == inspect.Parameter.VAR_POSITIONAL:
            init_args.extend(value)
        elif kind == inspect.Parameter.VAR_KEYWORD:
            init_kwargs.update(value)
        elif kind == inspect.Parameter.POSITIONAL_ONLY:
            init_args.append(value)
        else:
            init_kwargs[param_name] = value
    return tuple(init_args), init_kwargs


def _module_flags(module: torch.nn.Module) -> dict:
    """Training-mode submodules and grad-requiring parameters, by name ('' is the module)."""
    return {
        'training': [n for n, m in module.named_modules() if m.training],
        'requires_grad': [n for n, p in module.named_parameters() if p.requires_grad],
    }


def _reduce_persistent(self):
    if not is_persistent(self):
        raise pickle.PicklingError(
            f'{type(self).__module__}.{type(self).__qualname__} subclasses a persistent class but is not '
            f'decorated with @persistence.persistent_class itself; decorate it so it can be pickled')
    tensors = {n: t.detach().cpu() for n, t in self.state_dict().items()}
    return rebuild_module, (FORMAT_TAG, type(self)._persistent_name, self.init_args, self.init_kwargs,
                            tensors, _module_flags(self))


def _reduce_ex_persistent(self, protocol):
    return _reduce_persistent(self)


def _deepcopy_module(self, memo):
    # What deepcopy does for a plain nn.Module (copy __dict__, then __setstate__); without it
    # deepcopy would go through __reduce__ and rebuild the module on the CPU.
    cls = type(self)
    result = cls.__new__(cls)
    memo[id(self)] = result
    result.__setstate__(copy.deepcopy(self.__dict__, memo))
    return result


def _copy_module(self):
    cls = type(self)
    result = cls.__new__(cls)
    result.__setstate__(dict(self.__dict__))
    return result


def rebuild_module(format_tag: str, registry_name: str, init_args: tuple, init_kwargs: dict,
                   tensors: dict, flags: dict | None = None) -> torch.nn.Module:
    """Inverse of a persistent class's `__reduce__`: construct by registry name, copy tensors strictly.

    Only classes already registered (their module imported) can be built: a pickle never makes
    us import anything. `training.snapshot_io` imports our network modules before loading.
    """
    if format_tag != FORMAT_TAG:
        raise SnapshotError(f"Unknown persistent-module format '{format_tag}' (this code reads '{FORMAT_TAG}'); "
                            f'the snapshot was written by a newer or unrelated version of this code')
    cls = _registry.get(registry_name)
    if cls is None:
        raise SnapshotError(f"Snapshot needs class '{registry_name}', which is not a registered persistent class; "
                            f'import the module that defines it before loading (or load with '
                            f'training.snapshot_io.load_network_pkl, which imports our network modules)')
    what = f"'{registry_name}'"
    check_plain_arguments(init_args, init_kwargs, what)
    module = build_module_checked(cls, tuple(init_args), init_kwargs, tensors, what)
    _apply_flags(module, flags, what)
    return module


MAX_ARGUMENT_DEPTH = 16       # Nesting depth of stored constructor arguments (ours and official ones use <= 3).
MAX_ARGUMENT_VALUES = 10**5   # Values in stored constructor arguments, shared containers counted per use.
_PLAIN_SCALARS = (type(None), bool, int, float, str)


def check_plain_arguments(init_args: Any, init_kwargs: Any, what: str) -> None:
    """Stored constructor arguments must be a tuple/list and a dict with str keys of plain data:
    None, bool, int, float, str, and lists, tuples and str-keyed dicts of those, nested at most
    MAX_ARGUMENT_DEPTH deep, at most MAX_ARGUMENT_VALUES values (a container the pickle shares
    counts each time it is used). Anything else (a tensor, a record, a set) is a SnapshotError."""
    if not isinstance(init_args, (tuple, list)):
        raise SnapshotError(f'{what}: stored positional arguments are a {type(init_args).__name__}, not a tuple')
    if not isinstance(init_kwargs, dict):
        raise SnapshotError(f'{what}: stored keyword arguments are a {type(init_kwargs).__name__}, not a dict')
    stack = [(init_args, 0, 'args'), (init_kwargs, 0, 'kwargs')]
    visited = 0
    while stack:
        value, depth, where = stack.pop()
        visited += 1
        if visited > MAX_ARGUMENT_VALUES:
            raise SnapshotError(f'{what}: stored constructor arguments hold more than {MAX_ARGUMENT_VALUES} values')
        if isinstance(value, _PLAIN_SCALARS):
            continue
        if depth >= MAX_ARGUMENT_DEPTH:
            raise SnapshotError(f'{what}: stored constructor arguments nest deeper than {MAX_ARGUMENT_DEPTH} levels')
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise SnapshotError(f'{what}: stored argument {where} has a key of type {type(key).__name__}')
                stack.append((item, depth + 1, f'{where}.{key}'))
        elif isinstance(value, (list, tuple)):
            stack.extend((item, depth + 1, f'{where}[{i}]') for i, item in enumerate(value))
        else:
            raise SnapshotError(f'{what}: stored argument {where} is a {type(value).__name__}; constructor '
                                f'arguments are plain data (None, bool, int, float, str, lists, dicts)')


def _apply_flags(module: torch.nn.Module, flags: Any, what: str) -> None:
    if flags is None:
        return
    names = (flags.get('training', []), flags.get('requires_grad', [])) if isinstance(flags, dict) else (None, None)
    if not all(isinstance(group, (list, tuple)) and all(isinstance(n, str) for n in group) for group in names):
        raise SnapshotError(f'{what}: stored module flags are malformed (expected lists of names)')
    training, requires_grad = set(names[0]), set(names[1])
    for n, m in module.named_modules():
        m.training = n in training
    for n, p in module.named_parameters():
        p.requires_grad_(n in requires_grad)


@torch.no_grad()
def copy_tensors_strict(module: torch.nn.Module, tensors: dict[str, torch.Tensor], what: str) -> None:
    """Copy `tensors` into `module`'s parameters and persistent buffers by state_dict name.

    Every name must exist on both sides with the same shape: never a partial copy. Values are
    copied bit-exactly when dtypes agree; a float tensor may be cast to another float dtype.
    `what` names the source in error messages.
    """
    dst = module.state_dict(keep_vars=True)
    check_tensors_match(dst, tensors, what, type(module).__name__)
    for n, d in dst.items():
        d.copy_(tensors[n])


def check_tensors_match(dst: dict[str, torch.Tensor], tensors: Any, what: str, network: str) -> None:
    """Raise SnapshotError unless `tensors` has exactly the names of `dst`, with equal shapes and
    compatible dtypes (equal, or both floating point). `dst` may live on the meta device."""
    if not isinstance(tensors, dict) or not all(isinstance(n, str) for n in tensors):
        raise SnapshotError(f'{what}: the stored tensors are not a dict keyed by name')
    missing = [n for n in dst if n not in tensors]
    unexpected = [n for n in tensors if n not in dst]
    if missing or unexpected:
        raise SnapshotError(
            f'{what}: tensors do not match {network} built from the stored arguments: '
            f'missing in the snapshot {_short_list(missing)}, not in the network {_short_list(unexpected)}')
    for n, d in dst.items():
        s = tensors[n]
        if not isinstance(s, torch.Tensor):
            raise SnapshotError(f"{what}: entry '{n}' is a {type(s).__name__}, not a tensor")
        if s.shape != d.shape:
            raise SnapshotError(f"{what}: tensor '{n}' has shape {list(s.shape)} in the snapshot "
                                f'but {list(d.shape)} in the network')
        if s.dtype != d.dtype and not (s.dtype.is_floating_point and d.dtype.is_floating_point):
            raise SnapshotError(f"{what}: tensor '{n}' has dtype {s.dtype} in the snapshot "
                                f'but {d.dtype} in the network')


MAX_MODULE_ELEMENTS = 2**30  # Cap on the parameter + buffer elements of one rebuilt network (4 GiB in float32).


def build_module_checked(cls: type, init_args: tuple, init_kwargs: dict, tensors: dict, what: str) -> torch.nn.Module:
    """`cls(*init_args, **init_kwargs)` with `tensors` copied in, allocating only what the snapshot
    itself stores.

    The module is first built on the meta device (no memory): its tensor names, shapes and dtypes
    must match `tensors` and its total size must stay under MAX_MODULE_ELEMENTS. Only then is it
    built for real on the CPU and filled. Every failure is a one-line SnapshotError naming `what`.
    """
    try:
        with torch.device('meta'):
            probe = cls(*init_args, **init_kwargs)
    except SnapshotError:
        raise
    except Exception as e:  # The stored arguments can be anything; the constructor says what is wrong.
        raise SnapshotError(f'{what}: cannot build {cls.__name__} from the stored arguments '
                            f'({type(e).__name__}: {e}); the snapshot is damaged or the class constructor has '
                            f'changed incompatibly') from None
    total = sum(t.numel() for t in [*probe.parameters(), *probe.buffers()])
    if total > MAX_MODULE_ELEMENTS:
        raise SnapshotError(f'{what}: the stored arguments describe a {cls.__name__} of {total} elements, over the '
                            f'cap of {MAX_MODULE_ELEMENTS} (torch_utils.persistence.MAX_MODULE_ELEMENTS)')
    check_tensors_match(probe.state_dict(keep_vars=True), tensors, what, cls.__name__)
    del probe
    try:
        module = cls(*init_args, **init_kwargs)
    except Exception as e:
        raise SnapshotError(f'{what}: cannot build {cls.__name__} from the stored arguments '
                            f'({type(e).__name__}: {e})') from None
    copy_tensors_strict(module, tensors, what)
    return module


def _short_list(names: list[str], limit: int = 8) -> str:
    shown = ', '.join(repr(n) for n in names[:limit])
    more = f', ... ({len(names) - limit} more)' if len(names) > limit else ''
    return f'[{shown}{more}]'

# ---------------------------------------------------------------------------------------------
# Official format: inert records instead of executing `module_src`.


class PersistentRecord:
    """What an official `_reconstruct_persistent_obj(meta)` call stands for, without running it.

    `class_name` and `state` (the object's `__dict__`; nested modules are records too) come from
    the pickle; `module_src_sha256` fingerprints the embedded source, which is kept only so that
    the record can be written back in the official layout (`pickle.dumps(record)`).
    """

    __slots__ = ('class_name', 'state', 'module_src', 'module_src_sha256')

    def __init__(self, class_name: str, state: dict, module_src: str, module_src_sha256: str):
        self.class_name = class_name
        self.state = state
        self.module_src = module_src
        self.module_src_sha256 = module_src_sha256

    def __repr__(self):
        return f'PersistentRecord({self.class_name!r}, source sha256 {self.module_src_sha256[:12]})'

    def __reduce__(self):
        meta = dict(type='class', version=OFFICIAL_PERSISTENCE_VERSION, module_src=self.module_src,
                    class_name=self.class_name, state=self.state)
        return _reconstruct_persistent_obj, (meta,)

    def named_tensors(self, prefix: str = '') -> dict[str, torch.Tensor]:
        """Parameters and persistent buffers of this record and its children, by state_dict name.

        The record state comes from the file, so its layout is checked on the way: `_parameters`,
        `_buffers` and `_modules` dicts keyed by str, tensors or None as values, child records at
        most MAX_RECORD_DEPTH deep and never the record itself again. SnapshotError otherwise.
        """
        out = {}
        pending = [(self, prefix, 0)]
        seen = set()
        while pending:
            record, path, depth = pending.pop()
            if id(record) in seen or depth > MAX_RECORD_DEPTH:
                raise SnapshotError(f"submodule '{path.rstrip('.')}' repeats a parent or nests deeper than "
                                    f'{MAX_RECORD_DEPTH} levels')
            seen.add(id(record))
            state = record.state
            non_persistent = _record_field(state, '_non_persistent_buffers_set', (set, frozenset), path)
            for field in ('_parameters', '_buffers'):
                for key, value in _record_field(state, field, dict, path).items():
                    if value is None or (field == '_buffers' and key in non_persistent):
                        continue
                    if not isinstance(value, torch.Tensor):
                        raise SnapshotError(f"'{path + key}' in {field} is a {type(value).__name__}, not a tensor")
                    out[path + key] = value
            children = _record_field(state, '_modules', dict, path)
            for key, child in reversed(children.items()):
                if child is None:
                    continue
                if not isinstance(child, PersistentRecord):
                    raise SnapshotError(f"Submodule '{path + key}' is a {type(child).__name__}, "
                                        f'not a persistent network object')
                pending.append((child, path + key + '.', depth + 1))
        return out


MAX_RECORD_DEPTH = 32  # Nesting of submodules in an official pickle (a StyleGAN2 generator uses 4).


def _record_field(state: dict, field: str, kind: type | tuple, path: str):
    """`state[field]` checked to be a `kind` with str keys/items; empty when absent or None."""
    value = state.get(field)
    if value is None:
        return kind() if isinstance(kind, type) else kind[0]()
    if not isinstance(value, kind) or not all(isinstance(k, str) for k in value):
        name = kind.__name__ if isinstance(kind, type) else kind[0].__name__
        raise SnapshotError(f"'{path or '.'}' record field {field} is a {type(value).__name__}, "
                            f'not a {name} keyed by name')
    return value


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()


def _check_meta(meta: Any) -> None:
    if not isinstance(meta, dict):
        raise SnapshotError(f'persistent object metadata is a {type(meta).__name__}, not a dict')
    if meta.get('type') != 'class':
        raise SnapshotError(f"persistent object has type {meta.get('type')!r}; only 'class' is supported")
    if meta.get('version') != OFFICIAL_PERSISTENCE_VERSION:
        raise SnapshotError(f"persistent object has version {meta.get('version')!r}; only version "
                            f'{OFFICIAL_PERSISTENCE_VERSION} (stylegan2-ada-pytorch) is supported')
    for key, kind in (('class_name', str), ('module_src', str), ('state', dict)):
        if not isinstance(meta.get(key), kind):
            raise SnapshotError(f"persistent object field '{key}' is missing or not a {kind.__name__}")


def _reconstruct_persistent_obj(meta: dict) -> PersistentRecord:
    """Official hook, made inert: validate `meta` and return a record. `module_src` is never executed."""
    _check_meta(meta)
    return PersistentRecord(meta['class_name'], meta['state'], meta['module_src'], _sha256(meta['module_src']))

# ---------------------------------------------------------------------------------------------
# Safe replacements for the tensor globals.


def _safe_load_from_bytes(b: bytes):
    """`torch.storage._load_from_bytes` without arbitrary unpickling (weights_only, CPU)."""
    if not isinstance(b, (bytes, bytearray)):
        raise UnsafePickleError(f'storage payload is a {type(b).__name__}, not bytes')
    try:
        storage = torch.load(io.BytesIO(b), weights_only=True, map_location='cpu')
    except Exception as e:  # A damaged payload; torch raises several types, with multi-line text.
        raise UnsafePickleError(f'a tensor storage payload is damaged ({misc.load_error_summary(e)}); '
                                f'copy or download the pickle again') from e
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise UnsafePickleError(f'storage payload decoded to a {type(storage).__name__}, not a storage')
    return storage


def _check_no_hooks(hooks: Any) -> None:
    if hooks is not None and (not isinstance(hooks, dict) or len(hooks) > 0):
        raise UnsafePickleError('tensor carries backward hooks; snapshots never store hooks')


def _safe_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    """`torch._utils._rebuild_tensor_v2` for a dense view of the stored bytes: a tensor may not
    claim more elements than its storage holds (a stride-0 view would expand a few stored bytes
    into a huge tensor when copied)."""
    if not isinstance(storage, torch.storage.TypedStorage):
        raise UnsafePickleError(f'tensor storage is a {type(storage).__name__}, not a typed storage')
    _check_no_hooks(backward_hooks)
    if metadata is not None and not isinstance(metadata, dict):
        raise UnsafePickleError('tensor metadata is not a dict')
    if not (isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list)) and len(size) == len(stride)
            and len(size) <= 32 and all(type(n) is int and n >= 0 for n in (*size, *stride))
            and type(storage_offset) is int and storage_offset >= 0):
        raise UnsafePickleError(f'tensor geometry is malformed (size {size!r}, stride {stride!r}, '
                                f'offset {storage_offset!r})')
    numel = 1
    for n in size:
        numel *= n
    available = storage._size()  # Elements; the public size() only adds a deprecation warning.
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride)) if numel > 0 else storage_offset - 1
    if numel > available or last >= available:
        raise UnsafePickleError(f'tensor of size {list(size)} (stride {list(stride)}, offset {storage_offset}) does '
                                f'not fit its storage of {available} elements')
    return torch._utils._rebuild_tensor_v2(storage, storage_offset, tuple(size), tuple(stride),
                                           bool(requires_grad), collections.OrderedDict(), metadata)


def _safe_rebuild_parameter(data, requires_grad, backward_hooks):
    if not isinstance(data, torch.Tensor):
        raise UnsafePickleError(f'parameter data is a {type(data).__name__}, not a tensor')
    _check_no_hooks(backward_hooks)
    return torch.nn.Parameter(data, bool(requires_grad))


def _safe_codecs_encode(obj, encoding='utf-8', errors='strict'):
    # Protocols 0-2 store `bytes` as _codecs.encode(str, 'latin1').
    if not isinstance(obj, str) or encoding != 'latin1' or errors != 'strict':
        raise UnsafePickleError(f'_codecs.encode is only allowed as (str, "latin1"), got encoding {encoding!r}')
    return obj.encode('latin1')

def _safe_empty_bytes(*args):
    if args:
        raise UnsafePickleError('builtins.bytes is only allowed without arguments (protocol 2 empty bytes)')
    return b''

# ---------------------------------------------------------------------------------------------
# The restricted unpickler.


# ---------------------------------------------------------------------------------------------
# numpy: plain numeric scalars and arrays only.
#
# numpy's own reconstruction functions trust their input: a dtype whose state (BUILD) claims it
# holds Python objects makes `scalar` read file bytes as an object pointer (a crash or worse).
# So every numpy global is replaced by a checking function that accepts only the dtypes below
# (either byte order; no fields, subarrays or metadata) and builds the result itself.

PLAIN_NUMPY_DTYPE_CODES = frozenset(['b1', 'i1', 'i2', 'i4', 'i8', 'u1', 'u2', 'u4', 'u8',
                                     'f2', 'f4', 'f8', 'c8', 'c16'])  # `np.dtype(x).__reduce__()[1][0]`
MAX_NUMPY_ELEMENTS = 2**31  # Cap on a pickled array's element count (its bytes must be in the file anyway).


def is_plain_numpy_dtype(dtype: Any) -> bool:
    """True for a numpy dtype of a plain bool/int/uint/float/complex type (no objects, fields,
    subarrays or metadata)."""
    import numpy as np
    return (isinstance(dtype, np.dtype) and dtype.kind in 'biufc' and not dtype.hasobject
            and dtype.fields is None and dtype.subdtype is None and dtype.metadata is None
            and f'{dtype.kind}{dtype.itemsize}' in PLAIN_NUMPY_DTYPE_CODES)


def _require_plain_dtype(dtype: Any, what: str):
    if not is_plain_numpy_dtype(dtype):
        raise UnsafePickleError(f'{what}: numpy dtype {dtype!r} is not a plain numeric type; snapshots may only '
                                f'hold bool/int/uint/float/complex numpy data')
    return dtype


def _numpy_shape(shape: Any, what: str) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or len(shape) > 32 or not all(type(n) is int and n >= 0 for n in shape):
        raise UnsafePickleError(f'{what}: array shape {shape!r} is not a tuple of non-negative ints')
    count = 1
    for n in shape:
        count *= n
    if count > MAX_NUMPY_ELEMENTS:
        raise UnsafePickleError(f'{what}: array of {count} elements exceeds the cap of {MAX_NUMPY_ELEMENTS}')
    return shape


def _safe_numpy_dtype(code: Any, align: Any = False, copy: Any = True):
    """`numpy.dtype(code, align, copy)` for plain numeric codes only; always a fresh object, so
    a later BUILD can never change numpy's shared builtin dtypes."""
    import numpy as np
    if not isinstance(code, str) or code not in PLAIN_NUMPY_DTYPE_CODES or type(align) is not bool:
        raise UnsafePickleError(f'numpy dtype {code!r} is not allowed; snapshots may only hold plain numeric '
                                f"numpy data ({', '.join(sorted(PLAIN_NUMPY_DTYPE_CODES))})")
    return np.dtype(code, False, True)


def _build_numpy_dtype(dtype, state: Any) -> None:
    """BUILD on a dtype: only the byte order of a plain numeric dtype may be set."""
    byteorder = state[1] if isinstance(state, tuple) and len(state) == 8 else None
    expected = (3, byteorder, None, None, None, -1, -1, 0)
    if not is_plain_numpy_dtype(dtype) or byteorder not in ('<', '>', '|', '=') or state != expected \
            or (byteorder == '|') != (dtype.itemsize == 1 or dtype.kind == 'b'):
        raise UnsafePickleError(f'Refusing numpy dtype state {state!r}: only the byte order of a plain numeric '
                                f'dtype may be set')
    dtype.__setstate__(expected)
    _require_plain_dtype(dtype, 'numpy dtype state')


def _numpy_ndarray_type(*args, **kwargs):
    """Stands for `numpy.ndarray` in a pickle: only `_reconstruct` may receive it, never a call."""
    raise UnsafePickleError('Refusing to call numpy.ndarray from a pickle; arrays are read through '
                            'numpy _reconstruct/_frombuffer only')


def _safe_numpy_reconstruct(subtype: Any, shape: Any, dtype_code: Any):
    """numpy `_reconstruct(ndarray, (0,), b'b')`: an empty array that a checked BUILD fills."""
    import numpy as np
    if subtype is not _numpy_ndarray_type or shape != (0,) or dtype_code not in (b'b', 'b'):
        raise UnsafePickleError('numpy _reconstruct is allowed only as numpy writes it: (ndarray, (0,), b"b")')
    return np.ndarray((0,), dtype=np.int8)


def _build_numpy_array(array, state: Any) -> None:
    """BUILD on an array: `(1, shape, dtype, is_fortran, raw bytes)` with a plain numeric dtype."""
    if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1 and type(state[3]) is bool
            and isinstance(state[4], (bytes, bytearray))):
        raise UnsafePickleError('Refusing numpy array state: expected (1, shape, dtype, is_fortran, bytes)')
    _, shape, dtype, is_fortran, data = state
    shape = _numpy_shape(shape, 'numpy array')
    _require_plain_dtype(dtype, 'numpy array')
    count = 1
    for n in shape:
        count *= n
    if len(data) != count * dtype.itemsize:
        raise UnsafePickleError(f'numpy array of shape {list(shape)} needs {count * dtype.itemsize} bytes, '
                                f'the pickle holds {len(data)}')
    if array.size != 0 or array.dtype.hasobject:
        raise UnsafePickleError('Refusing to set the state of a numpy array twice')
    array.__setstate__((1, shape, dtype, is_fortran, bytes(data)))


def _safe_numpy_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any):
    """numpy `_frombuffer` (protocol 5 arrays), plain numeric dtypes only; returns a copy."""
    import numpy as np
    if isinstance(buf, pickle.PickleBuffer):
        buf = bytes(buf.raw())
    if not isinstance(buf, (bytes, bytearray)) or order not in ('C', 'F'):
        raise UnsafePickleError('numpy _frombuffer: expected a bytes buffer and order "C" or "F"')
    shape = _numpy_shape(shape, 'numpy array')
    _require_plain_dtype(dtype, 'numpy array')
    count = 1
    for n in shape:
        count *= n
    if len(buf) != count * dtype.itemsize:
        raise UnsafePickleError(f'numpy array of shape {list(shape)} needs {count * dtype.itemsize} bytes, '
                                f'the pickle holds {len(buf)}')
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order).copy(order='K')


def _safe_numpy_scalar(dtype: Any, data: Any = None):
    """numpy `scalar(dtype, raw bytes)` for plain numeric dtypes: decoded with frombuffer."""
    import numpy as np
    _require_plain_dtype(dtype, 'numpy scalar')
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise UnsafePickleError(f'numpy scalar of dtype {dtype} needs exactly {dtype.itemsize} bytes')
    return np.frombuffer(data, dtype=dtype)[0]


# The numpy globals a pickle may name, in their numpy 1 and numpy 2 spellings.
_NUMPY_GLOBALS: dict[tuple[str, str], Any] = {
    ('numpy', 'dtype'): _safe_numpy_dtype,
    ('numpy', 'ndarray'): _numpy_ndarray_type,
    **{(f'numpy.{core}.multiarray', 'scalar'): _safe_numpy_scalar for core in ('core', '_core')},
    **{(f'numpy.{core}.multiarray', '_reconstruct'): _safe_numpy_reconstruct for core in ('core', '_core')},
    **{(f'numpy.{core}.numeric', '_frombuffer'): _safe_numpy_frombuffer for core in ('core', '_core')},
}


def _easydict_class():
    import dnnlib.util
    return dnnlib.util.EasyDict


# (module, name) -> the object the safe unpickler hands out for it.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ('torch._utils', '_rebuild_tensor_v2'): _safe_rebuild_tensor_v2,
    ('torch._utils', '_rebuild_parameter'): _safe_rebuild_parameter,
    ('torch.storage', '_load_from_bytes'): _safe_load_from_bytes,
    ('torch_utils.persistence', 'rebuild_module'): rebuild_module,
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('builtins', 'set'): set,           # protocols <= 3 write sets this way
    ('builtins', 'frozenset'): frozenset,
    ('_codecs', 'encode'): _safe_codecs_encode,  # protocols <= 2 write bytes this way
    ('builtins', 'bytes'): _safe_empty_bytes,    # ... and empty bytes as bytes()
    **_NUMPY_GLOBALS,
}
# Same, resolved on first use (numpy and dnnlib are imported only when a pickle needs them).
_LAZY_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    ('dnnlib.util', 'EasyDict'): _easydict_class,
}
_RECORD_HOOK = ('torch_utils.persistence', '_reconstruct_persistent_obj')


def allowed_global_names() -> list[str]:
    """Every 'module.name' the safe unpickler resolves."""
    keys = list(_ALLOWED_GLOBALS) + list(_LAZY_GLOBALS) + [_RECORD_HOOK]
    return [f'{m}.{n}' for m, n in keys]


class SafeUnpickler(pickle._Unpickler):
    """Pure-Python unpickler restricted to the allow-list; BUILD only on plain data objects.

    The pure-Python implementation is used because its BUILD step can be guarded: the C one
    would let a pickle set attributes on an allowed class or function object.
    """

    def __init__(self, file: BinaryIO, source_name: str, record_class_names: Iterable[str] | None = None):
        super().__init__(file)
        self.source_name = source_name
        self.record_class_names = None if record_class_names is None else frozenset(record_class_names)
        self._sha_cache: dict[int, str] = {}
        self.dispatch = dict(pickle._Unpickler.dispatch)  # Per instance: the class table stays untouched.
        self.dispatch[pickle.BUILD[0]] = SafeUnpickler._guarded_build

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3 and self.fix_imports:  # Python 2 names, as the stock find_class maps them.
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        key = (module, name)
        if key == _RECORD_HOOK:
            return self._build_record
        if key in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[key]
        if key in _LAZY_GLOBALS:
            return _LAZY_GLOBALS[key]()
        if module.startswith('dnnlib.tflib'):
            raise UnsafePickleError(
                f'{self.source_name} is a TensorFlow-era StyleGAN pickle (it contains {module}.{name}); '
                f'this code reads only PyTorch pickles: convert it first with legacy.py from '
                f'NVlabs/stylegan2-ada-pytorch (python legacy.py --source=OLD.pkl --dest=NEW.pkl) and load NEW.pkl')
        raise UnsafePickleError(
            f"Refusing to unpickle global '{module}.{name}' from {self.source_name}: not in the allow-list "
            f"of network-pickle globals ({', '.join(allowed_global_names())})")

    def persistent_load(self, pid):
        raise UnsafePickleError(f'Refusing persistent id {pid!r} in {self.source_name}: network pickles never use them')

    def _guarded_build(self):
        import numpy as np
        inst, state = self.stack[-2], self.stack[-1]  # BUILD: stack is [..., obj, state].
        if isinstance(inst, np.dtype):
            _build_numpy_dtype(inst, state)
        elif isinstance(inst, np.ndarray):
            _build_numpy_array(inst, state)
        elif isinstance(inst, dict):
            pickle._Unpickler.load_build(self)
            return
        else:
            raise UnsafePickleError(f'Refusing to set the state of a {type(inst).__name__} object in '
                                    f'{self.source_name}: only numpy and dict objects may carry pickled state')
        self.stack.pop()

    def _build_record(self, meta: dict) -> PersistentRecord:
        try:
            _check_meta(meta)
        except SnapshotError as e:
            raise SnapshotError(f'{self.source_name}: {e}') from None
        class_name = meta['class_name']
        if self.record_class_names is not None and class_name not in self.record_class_names:
            raise SnapshotError(
                f"{self.source_name} contains an object of unknown class '{class_name}'; network pickles "
                f"may only contain {', '.join(sorted(self.record_class_names))}")
        src = meta['module_src']
        digest = self._sha_cache.get(id(src))
        if digest is None:
            digest = self._sha_cache[id(src)] = _sha256(src)
        return PersistentRecord(class_name, meta['state'], src, digest)


def safe_load(file: BinaryIO, source_name: str, record_class_names: Iterable[str] | None = None) -> Any:
    """Unpickle `file` with `SafeUnpickler`; official persistent objects become `PersistentRecord`s.

    `source_name` is used in error messages. `record_class_names`, when given, lists the official
    class names accepted in records. Allowed-global errors are `UnsafePickleError`; a malformed or
    truncated stream raises what `pickle` raises (the caller words the message).
    """
    return SafeUnpickler(file, source_name, record_class_names).load()

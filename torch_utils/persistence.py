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
    """A snapshot (pickle or safetensors file) cannot be read or written; the message says why."""


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
    if not isinstance(init_args, (tuple, list)) or not isinstance(init_kwargs, dict):
        raise SnapshotError(f"Snapshot entry for '{registry_name}' has malformed constructor arguments")
    try:
        module = cls(*init_args, **init_kwargs)
    except Exception as e:
        raise SnapshotError(f"Cannot construct '{registry_name}' from the arguments stored in the snapshot "
                            f'({type(e).__name__}: {e}); the class constructor has changed incompatibly') from e
    copy_tensors_strict(module, tensors, what=f"'{registry_name}'")
    _apply_flags(module, flags)
    return module


def _apply_flags(module: torch.nn.Module, flags: dict | None) -> None:
    if flags is None:
        return
    training = set(flags.get('training', []))
    requires_grad = set(flags.get('requires_grad', []))
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
    missing = [n for n in dst if n not in tensors]
    unexpected = [n for n in tensors if n not in dst]
    if missing or unexpected:
        raise SnapshotError(
            f'{what}: tensors do not match {type(module).__name__} built from the stored arguments: '
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
        d.copy_(s)


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
        """Parameters and persistent buffers of this record and its children, by state_dict name."""
        out = {}
        non_persistent = self.state.get('_non_persistent_buffers_set') or set()
        for field in ('_parameters', '_buffers'):
            for key, value in (self.state.get(field) or {}).items():
                if value is None or (field == '_buffers' and key in non_persistent):
                    continue
                out[prefix + key] = value
        for key, child in (self.state.get('_modules') or {}).items():
            if child is None:
                continue
            if not isinstance(child, PersistentRecord):
                raise SnapshotError(f"Submodule '{prefix + key}' is a {type(child).__name__}, "
                                    f'not a persistent network object')
            out.update(child.named_tensors(prefix + key + '.'))
        return out


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
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise UnsafePickleError(f'tensor storage is a {type(storage).__name__}, not a storage')
    _check_no_hooks(backward_hooks)
    if metadata is not None and not isinstance(metadata, dict):
        raise UnsafePickleError('tensor metadata is not a dict')
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

# ---------------------------------------------------------------------------------------------
# The restricted unpickler.


_NUMPY_GLOBAL_NAMES = [
    ('numpy', 'dtype'), ('numpy', 'ndarray'),
    ('numpy._core.multiarray', 'scalar'), ('numpy._core.multiarray', '_reconstruct'),  # numpy 2 spelling
    ('numpy.core.multiarray', 'scalar'), ('numpy.core.multiarray', '_reconstruct'),    # numpy 1 spelling
    ('numpy._core.numeric', '_frombuffer'), ('numpy.core.numeric', '_frombuffer'),     # arrays, protocol 5
]


def _numpy_global(key: tuple[str, str]) -> Any:
    import numpy as np
    if key[0] == 'numpy':
        return getattr(np, key[1])
    core = np._core if hasattr(np, '_core') else np.core
    return getattr(getattr(core, key[0].rsplit('.', 1)[1]), key[1])


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
}
# Same, resolved on first use (numpy and dnnlib are imported only when a pickle needs them).
_LAZY_GLOBALS: dict[tuple[str, str], Callable[[], Any]] = {
    ('dnnlib.util', 'EasyDict'): _easydict_class,
    **{key: functools.partial(_numpy_global, key) for key in _NUMPY_GLOBAL_NAMES},
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
        inst = self.stack[-2]  # BUILD: stack is [..., obj, state].
        if not isinstance(inst, (np.dtype, np.ndarray, dict)):
            raise UnsafePickleError(f'Refusing to set the state of a {type(inst).__name__} object in '
                                    f'{self.source_name}: only numpy and dict objects may carry pickled state')
        pickle._Unpickler.load_build(self)

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

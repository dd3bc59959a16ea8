"""An emulation of how stylegan2-ada-pytorch's persistence loads and saves network pickles,
written from the format spec (../shared/specs/stylegan2-network-format.md, section 1.2), to
check that our official-format export opens in the official loaders.

What the official loader does for every `torch_utils.persistence._reconstruct_persistent_obj(meta)`:
check `version == 6` and `type == 'class'`; execute `meta['module_src']` (once per distinct
source string) in a fresh module registered in `sys.modules`, with that repository's own
`torch_utils`; decorate the class named `meta['class_name']` (the source's own
`@persistence.persistent_class` already did, when it ran); make an instance with `__new__`
only; restore `meta['state']` with `__setstate__`. The decorator keeps the constructor
arguments as `_init_args` / `_init_kwargs`, exposes `init_args` / `init_kwargs` (an EasyDict),
and pickles instances back into the same `meta` layout.

Here OUR torch_utils is the API provider (the same names and signatures the official repository
has). Executing source stored in a pickle is what the official code does and what our loader
never does; these tests only ever run it on files they have just written from our own source.
"""

import copy
import pickle
import sys
import types
import uuid

import dnnlib
import torch_utils
from torch_utils import persistence as our_persistence

PERSISTENCE_VERSION = 6


class OfficialPersistence:
    """The official persistence module's behaviour, as a namespace the embedded source imports."""

    def __init__(self):
        self._decorated: set[type] = set()
        self._src_to_module: dict[str, types.ModuleType] = {}
        self._module_to_src: dict[types.ModuleType, str] = {}
        self.executed_modules: list[str] = []  # Names of the modules made from embedded source.

    # --- what the embedded source sees as `torch_utils.persistence` ---------------------------

    def namespace(self) -> types.SimpleNamespace:
        return types.SimpleNamespace(persistent_class=self.persistent_class)

    def persistent_class(self, orig_class: type) -> type:
        if orig_class in self._decorated:
            return orig_class
        module_src = self._module_to_src[sys.modules[orig_class.__module__]]
        emulator = self

        class Decorator(orig_class):
            _orig_module_src = module_src
            _orig_class_name = orig_class.__name__

            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self._init_args = copy.deepcopy(args)
                self._init_kwargs = copy.deepcopy(kwargs)

            @property
            def init_args(self):
                return copy.deepcopy(self._init_args)

            @property
            def init_kwargs(self):
                return dnnlib.EasyDict(copy.deepcopy(self._init_kwargs))

            def __reduce__(self):
                # The plain object reduction, with its state moved into `meta`.
                fields = list(super().__reduce__())
                fields += [None] * max(3 - len(fields), 0)
                meta = dict(type='class', version=PERSISTENCE_VERSION, module_src=self._orig_module_src,
                            class_name=self._orig_class_name, state=fields[2])
                return (our_persistence._reconstruct_persistent_obj, (meta,), None)

        Decorator.__name__ = orig_class.__name__
        Decorator.__qualname__ = orig_class.__qualname__
        emulator._decorated.add(Decorator)
        return Decorator

    # --- unpickling ----------------------------------------------------------------------------

    def module_from_source(self, src: str) -> types.ModuleType:
        module = self._src_to_module.get(src)
        if module is None:
            name = '_imported_module_' + uuid.uuid4().hex
            module = types.ModuleType(name)
            sys.modules[name] = module
            self._src_to_module[src] = module
            self._module_to_src[module] = src
            self.executed_modules.append(name)
            saved = torch_utils.__dict__.get('persistence')
            torch_utils.persistence = self.namespace()  # `from torch_utils import persistence` in src
            try:
                exec(compile(src, f'<embedded {name}>', 'exec'), module.__dict__)
            finally:
                torch_utils.persistence = saved
        return module

    def reconstruct(self, meta: dict):
        meta = dnnlib.EasyDict(meta)
        assert meta.version == PERSISTENCE_VERSION, meta.version
        assert meta.type == 'class', meta.type
        module = self.module_from_source(meta.module_src)
        cls = self.persistent_class(module.__dict__[meta.class_name])
        obj = cls.__new__(cls)
        obj.__setstate__(dnnlib.EasyDict(meta.state))
        return obj

    def load(self, file):
        """`pickle.load` with the persistence hook routed here (every other global as usual)."""
        emulator = self

        class Unpickler(pickle.Unpickler):
            def find_class(self, module, name):
                if (module, name) == ('torch_utils.persistence', '_reconstruct_persistent_obj'):
                    return emulator.reconstruct
                return super().find_class(module, name)

        return Unpickler(file).load()

    def forget(self) -> None:
        """Drop the modules made from embedded source from sys.modules."""
        for name in self.executed_modules:
            sys.modules.pop(name, None)
        self.executed_modules.clear()


def official_load_network_pkl(emulator: OfficialPersistence, path) -> dict:
    """What the official `legacy.load_network_pkl` does with a PyTorch pickle: unpickle, fill the
    optional keys, check the networks are modules."""
    import torch
    with open(path, 'rb') as f:
        data = emulator.load(f)
    data.setdefault('training_set_kwargs', None)
    data.setdefault('augment_pipe', None)
    for key in ('G', 'D', 'G_ema'):
        assert isinstance(data[key], torch.nn.Module), key
    return data


def official_force_fp16(data: dict) -> dict:
    """The official loader's `force_fp16` rebuild: new networks from `init_kwargs` (edited by
    attribute), tensors copied by name."""
    out = dict(data)
    for key in ('G', 'D', 'G_ema'):
        old = data[key]
        kwargs = copy.deepcopy(old.init_kwargs)
        if key.startswith('G'):
            kwargs.synthesis_kwargs = dnnlib.EasyDict(kwargs.get('synthesis_kwargs', {}))
            kwargs.synthesis_kwargs.num_fp16_res = 4
            kwargs.synthesis_kwargs.conv_clamp = 256
        else:
            kwargs.num_fp16_res = 4
            kwargs.conv_clamp = 256
        new = type(old)(*old.init_args, **kwargs).eval().requires_grad_(False)
        src = dict(old.named_parameters()) | dict(old.named_buffers())
        for name, tensor in list(new.named_parameters()) + list(new.named_buffers()):
            tensor.data.copy_(src[name].detach())  # require_all: a missing name raises KeyError
        out[key] = new
    return out

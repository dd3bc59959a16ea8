"""The task interface of domain expansion and the registry of task types.

A task is one domain-adaptation objective L_i (paper Sec. 3.2, Eq. 4) restricted to its own
repurposed subspace. The expansion loss drives it like this, per training step:

    batch = task.sample(n, device, generator)      # latents (z or w) + per-sample context
    w     = G.mapping(batch.z) if batch.z is not None else batch.w
    base  = subspaces.project_base(w, w_avg)       # Eq. 1
    edit  = subspaces.edit(base, k)                # Eq. 2, k = the task's index in the config
    loss += task.loss(batch.context, G(base), G(edit))   # sum over the n samples

A task with `"parameterization"` in the config renders `G_theta(base)` instead of `G(edit)`
(theta_domains.py); the task itself is the same class and never needs to know which.

`error(...)` is the same quantity per image ([n]), used for metrics; `eval_latents(n, seed)`
gives fixed latents for grids and metrics.

Writing a new task: subclass `BaseTask`, give `__init__` the config arguments as explicit
parameters (defaults make them optional) followed by the keyword-only `dimension` and
`runtime` that `build_tasks` injects, implement `default_name` and `error`, optionally
`check_config`, `sample` and `eval_latents`, and decorate with `@register_task` (or name the
class by dotted path in the config). Settings live on the instance, never on the class.
"""

import dataclasses
import importlib
import inspect
import re
from typing import Any, Optional

import numpy as np
import torch

from torch_utils import misc

#----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TaskRuntime:
    """What tasks need to know about the run; built once by the caller and shared."""
    device:         torch.device    # Where latents, targets and models live.
    z_dim:          int             # Generator input latent size.
    w_dim:          int             # Intermediate latent size.
    img_resolution: int             # Generated images are [N, img_channels, img_resolution, img_resolution].
    img_channels:   int             # Usually 3.
    models:         Any             # SharedModels: CLIP / LPIPS loaded once per process.

@dataclasses.dataclass(frozen=True)
class ConfigContext:
    """What config validation knows before anything heavy is loaded."""
    w_dim:           int                    # From the --resume pickle.
    img_resolution:  Optional[int] = None   # From the --resume pickle, when known (image-size checks).
    img_channels:    Optional[int] = None
    check_resources: bool = True            # False: skip file/dir checks (e.g. a tool reading a snapshot).

@dataclasses.dataclass
class TaskBatch:
    """Latents drawn by a task plus the context its loss needs. Exactly one of z / w is set."""
    z:       Optional[torch.Tensor] = None  # [n, z_dim]: map with G.mapping (psi 1).
    w:       Optional[torch.Tensor] = None  # [n, w_dim]: already in W (e.g. MyStyle's inverted anchors).
    context: Any = None                     # Handed back to loss() / error(); None for most tasks.

    def __post_init__(self):
        if (self.z is None) == (self.w is None):
            raise ValueError('TaskBatch needs exactly one of z and w')

    def __len__(self):
        return (self.z if self.z is not None else self.w).shape[0]

#----------------------------------------------------------------------------

class BaseTask:
    """One new domain: its latent sampling, its loss on (base, edit) images, its name."""

    # Keyword-only constructor parameters that build_tasks supplies (not config arguments).
    INJECTED_PARAMS = ('dimension', 'runtime')

    # Registry key, set by @register_task. Class-level metadata only; settings are per instance.
    type_name: Optional[str] = None

    def __init__(self, *, name: str, dimension: int, runtime: TaskRuntime):
        self.name = str(name)           # Logs, grid labels, metrics keys.
        # Basis column this task repurposes; None for a parameterised task (theta, theta_domains.py).
        self.dimension = None if dimension is None else int(dimension)
        self.runtime = runtime

    # --- config-time hooks (class methods: no instance exists yet) ---

    @classmethod
    def default_name(cls, kwargs: dict) -> str:
        """The task's name when `args.name` is absent, from its (validated) config arguments."""
        raise NotImplementedError(f'{cls.__name__} must implement default_name()')

    @classmethod
    def resolve_name(cls, kwargs: dict) -> str:
        """`kwargs['name']` when given, else `default_name(kwargs)`."""
        return kwargs['name'] if kwargs.get('name') is not None else cls.default_name(kwargs)

    @classmethod
    def check_config(cls, kwargs: dict, ctx: ConfigContext) -> list:
        """Cheap checks of argument values before any heavy work.

        Args:
            kwargs: the task's merged arguments (`args` + `tasks_losses[type]`); names are
                    already known to be accepted and required ones present.
            ctx:    ConfigContext.

        Returns:
            A list of `(argument name or None, message)` problems; empty when valid.
        """
        return []

    @classmethod
    def pretrained_weights(cls, kwargs: dict) -> tuple:
        """The pretrained networks this task will load, as ('clip', config CLIP name) or
        ('lpips', backbone) pairs, so a run can check them before any work; () = none."""
        return ()

    # --- runtime interface ---

    @property
    def slug(self) -> str:
        """File-name-safe version of the name (output folders, stat keys)."""
        return slugify(self.name)

    def __repr__(self):
        return f'{type(self).__name__}(name={self.name!r}, dimension={self.dimension})'

    def sample(self, batch_size: int, device, generator: torch.Generator = None) -> TaskBatch:
        """Draw `batch_size` training latents; default: z ~ N(0, I) for the mapping network."""
        gen_device = generator.device if generator is not None else device
        z = torch.randn([batch_size, self.runtime.z_dim], generator=generator, device=gen_device)
        return TaskBatch(z=z.to(device))

    def eval_latents(self, n: int, seed: int = 0) -> TaskBatch:
        """Fixed latents for grids and metrics (on runtime.device); may hold fewer than n samples.

        Default: `z = np.random.RandomState(seed).randn(n, z_dim)` as float32.
        """
        z = np.random.RandomState(seed).randn(n, self.runtime.z_dim).astype(np.float32)
        return TaskBatch(z=torch.from_numpy(z).to(self.runtime.device))

    def error(self, context, base_img: torch.Tensor, edit_img: torch.Tensor) -> torch.Tensor:
        """Per-image loss [N] of edit images (the repurposed subspace) given base images.

        Images are NCHW in [-1, 1]; `base_img` must be treated as a fixed target (detached).
        """
        raise NotImplementedError(f'{type(self).__name__} must implement error()')

    @classmethod
    def batched_errors(cls, items: list) -> list:
        """Errors of several tasks of this type in one call, so a type's loss runs once per batch.

        Args:
            items: `[(task, context, base_img, edit_img), ...]`, every task an instance of this class.
        Returns:
            `[errors [n_i] per item]`. Default: one `error()` call per item; override to share
            heavy encoders across domains (NADA encodes all its images in one pass per CLIP model).
        """
        return [task.error(context, base_img, edit_img) for task, context, base_img, edit_img in items]

    def loss(self, context, base_img: torch.Tensor, edit_img: torch.Tensor) -> torch.Tensor:
        """The task loss summed over the batch (the expansion loss divides by the batch size)."""
        misc.assert_shape(edit_img, list(base_img.shape))
        return self.error(context, base_img, edit_img).sum()

def slugify(name: str) -> str:
    """Lower-case letters, digits, '-' and '_' only; other runs become '_'."""
    slug = re.sub(r'[^a-z0-9_-]+', '_', name.lower()).strip('_')
    return slug or 'task'

#----------------------------------------------------------------------------
# Registry.

_registry = {}      # type name -> task class
_BUILTIN_MODULES = ('training.expansion.tasks.transform', 'training.expansion.tasks.nada', 'training.expansion.tasks.mystyle')

def register_task(cls):
    """Class decorator: make `cls` available in configs under `cls.__name__`."""
    if not (isinstance(cls, type) and issubclass(cls, BaseTask)):
        raise TypeError(f'register_task: {cls!r} is not a BaseTask subclass')
    name = cls.__name__
    if name in _registry and _registry[name] is not cls:
        raise ValueError(f'register_task: task type {name!r} is already registered by {_registry[name].__module__}')
    _registry[name] = cls
    cls.type_name = name
    return cls

def _load_builtin_tasks():
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)

def registered_task_types() -> list:
    """Sorted names of the registered task types."""
    _load_builtin_tasks()
    return sorted(_registry)

class TaskTypeError(ValueError):
    """A config `type` that names no task class."""

def get_task_class(type_name: str) -> type:
    """Resolve a config `type`: a registered name ('NADA') or a dotted path ('my_pkg.tasks.Sketch')."""
    _load_builtin_tasks()
    if not isinstance(type_name, str) or not type_name:
        raise TaskTypeError(f'task type must be a non-empty string, got {type_name!r}')
    if '.' not in type_name:
        if type_name not in _registry:
            raise TaskTypeError(f'unknown task type {type_name!r}; registered types: {", ".join(sorted(_registry))} '
                f'(or give a dotted path to your own BaseTask subclass, e.g. my_pkg.tasks.MyTask)')
        return _registry[type_name]
    module_name, _, attr = type_name.rpartition('.')
    try:
        module = importlib.import_module(module_name)
    except Exception as err: # Any error while importing the user's module is a config problem.
        raise TaskTypeError(f'task type {type_name!r}: cannot import module {module_name!r} ({type(err).__name__}: {err})') from err
    cls = getattr(module, attr, None)
    if cls is None:
        raise TaskTypeError(f'task type {type_name!r}: module {module_name!r} has no attribute {attr!r}')
    if not (isinstance(cls, type) and issubclass(cls, BaseTask)):
        raise TaskTypeError(f'task type {type_name!r} is not a subclass of training.adaptation_tasks.BaseTask')
    return cls

#----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TaskArguments:
    """The config arguments a task class accepts, read from its constructor signature."""
    required:    tuple  # Names without a default.
    optional:    dict   # Name -> default.
    accepts_any: bool   # The constructor takes **kwargs (unknown names cannot be detected).

    @property
    def names(self) -> list:
        return [*self.required, *self.optional]

def task_arguments(cls: type) -> TaskArguments:
    """Config arguments of task class `cls` (constructor parameters minus self and injected ones)."""
    required, optional, accepts_any = [], {}, False
    for param in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if param.kind == param.VAR_KEYWORD:
            accepts_any = True
        elif param.kind == param.VAR_POSITIONAL or param.name in BaseTask.INJECTED_PARAMS:
            continue
        elif param.default is param.empty:
            required.append(param.name)
        else:
            optional[param.name] = param.default
    return TaskArguments(tuple(required), optional, accepts_any)

#----------------------------------------------------------------------------

def build_tasks(config, device, shared_models, *, z_dim: int, img_resolution: int, img_channels: int = 3) -> list:
    """Instantiate the tasks of a resolved expansion config, in config order.

    Args:
        config:         ExpansionConfig from training.expansion.config (validated).
        device:         device for latents, targets and models.
        shared_models:  SharedModels, so heavy networks load once and are shared by all tasks.
        z_dim, img_resolution, img_channels: the generator's, for sampling and target checks.
    """
    runtime = TaskRuntime(device=torch.device(device), z_dim=int(z_dim), w_dim=int(config.w_dim),
        img_resolution=int(img_resolution), img_channels=int(img_channels), models=shared_models)
    tasks = []
    for task_cfg in config.tasks:
        kwargs = task_cfg.kwargs()
        spec = task_arguments(task_cfg.task_class)
        if 'name' in spec.names or spec.accepts_any:
            kwargs['name'] = task_cfg.name # The name resolved (and checked unique) by the config.
        tasks.append(task_cfg.task_class(**kwargs, dimension=task_cfg.dimension, runtime=runtime))
    return tasks

#----------------------------------------------------------------------------

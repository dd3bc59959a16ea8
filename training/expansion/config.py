"""The expansion config (`--expansion_cfg_file`): parse, validate, assign dimensions.

Format (the official one; spec section 8, interfaces.md section 2):

    {"tasks": [{"type": "NADA", "dimension": 510, "args": {"source_text": "photo", "target_text": "sketch"}},
               {"type": "Transform", "args": {"transform": "grayscale"}}],
     "tasks_losses": {"NADA": {"clip_models": ["ViT-B/32"], "clip_model_weights": [1.0]}}}

- `type`: a registered task type or a dotted path to a BaseTask subclass. A dotted path is
  imported only from a config the user gives (`--expansion_cfg_file`); a config read from a
  snapshot resolves registered types only, unless the user passes `--allow-task-import`.
- `dimension` (optional): the basis column the task repurposes, in [0, w_dim). Tasks without
  one get the highest dimensions not used by any task, in task order.
- `parameterization` (optional; ours, issue 14): one of `channel_scale`, `style_offset`,
  `rgb_affine` (training/expansion/parameterizations.py). The task then repurposes no dimension
  (giving one is an error): its domain is a trained parameter vector theta applied to the
  synthesis network on the base-subspace latent (training/expansion/theta_domains.py).
- `args` (optional): the task's own arguments; `tasks_losses[type]` (optional): arguments
  shared by every task of that type. Both are checked against the task class's constructor.

Everything is checked here, before anything heavy is loaded; all problems are collected and
raised together as one `ExpansionConfigError`, one line per problem, each naming its key.
"""

import copy
import dataclasses
import json
import os
from typing import Optional

import dnnlib
from training.expansion.parameterizations import PARAMETERIZATIONS
from training.expansion.tasks.base import ConfigContext, TaskTypeError, get_task_class, task_arguments

TOP_LEVEL_KEYS = ('tasks', 'tasks_losses')
TASK_KEYS = ('type', 'dimension', 'parameterization', 'args')

#----------------------------------------------------------------------------

class ExpansionConfigError(dnnlib.util.UserError, ValueError):
    """Invalid expansion config; the message has one line per problem (`.problems`)."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__('\n'.join(self.problems))

class TaskImportRefusedError(dnnlib.util.UserError):
    """A dotted task type in a config read from snapshot data: data names nothing we import."""

#----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TaskConfig:
    """One validated task of the config."""
    index:       int    # Position in `tasks`.
    type:        str    # As written: a registered name or a dotted path.
    task_class:  type   # The resolved BaseTask subclass.
    dimension:   int    # Repurposed basis column (given, or assigned); None for a parameterised task.
    args:        dict   # The task's own `args`, as written.
    shared_args: dict   # `tasks_losses` entry for its class ({} when absent).
    name:        str    # Resolved task name (unique within the config).
    parameterization: Optional[str] = None  # Theta's parameterisation; None = a repurposed direction.

    def kwargs(self) -> dict:
        """Constructor arguments: shared args overlaid by the task's own (they never overlap)."""
        return {**copy.deepcopy(self.shared_args), **copy.deepcopy(self.args)}

@dataclasses.dataclass(frozen=True)
class ExpansionConfig:
    """A validated expansion config with every dimension resolved."""
    tasks:  tuple   # TaskConfig, in config order.
    w_dim:  int     # The generator's W size the config was checked against.
    raw:    dict    # The config as given (deep copy).
    source: str     # Where it came from (for messages).

    @property
    def repurposed_dims(self) -> list:
        """Repurposed dims in task order (the snapshot's `repurposed_dims`); parameterised tasks have none."""
        return [task.dimension for task in self.tasks if task.parameterization is None]

    @property
    def domain_slots(self) -> list:
        """Per task, in config order: `('direction', i)`, its column i of B_R (the i-th repurposed
        dim), or `('theta', j)`, the j-th parameterised task."""
        slots, counts = [], {'direction': 0, 'theta': 0}
        for task in self.tasks:
            kind = 'direction' if task.parameterization is None else 'theta'
            slots.append((kind, counts[kind]))
            counts[kind] += 1
        return slots

    @property
    def task_names(self) -> list:
        return [task.name for task in self.tasks]

    def to_dict(self) -> dict:
        """The original config with every task's resolved `dimension` filled in."""
        result = copy.deepcopy(self.raw)
        result['tasks'] = []
        for task, raw_task in zip(self.tasks, self.raw.get('tasks', [])):
            entry = {'type': raw_task['type']}
            if task.parameterization is None:
                entry['dimension'] = task.dimension
            entry.update({key: copy.deepcopy(value) for key, value in raw_task.items() if key not in ('type', 'dimension')})
            result['tasks'].append(entry)
        return result

    def to_json(self, indent: int = 2) -> str:
        """`to_dict()` as JSON text (what the run directory's expansion_cfg.json holds)."""
        return json.dumps(self.to_dict(), indent=indent)

    def save(self, path: str) -> None:
        """Write `to_json()` to `path` (atomically)."""
        dnnlib.util.write_text_atomic(path, self.to_json() + '\n')

#----------------------------------------------------------------------------

def load_expansion_config(path: str, w_dim: int, img_resolution: int = None, img_channels: int = None,
        check_resources: bool = True) -> ExpansionConfig:
    """Read and validate the JSON file given by `--expansion_cfg_file`.

    Raises ExpansionConfigError (one line per problem, each starting with the flag and path).
    """
    source = f'--expansion_cfg_file {path}'
    if not os.path.isfile(path):
        raise ExpansionConfigError([f'{source}: file not found'])
    try:
        with open(path, 'r', encoding='utf-8') as f:
            cfg = json.load(f)
    except json.JSONDecodeError as err:
        raise ExpansionConfigError([f'{source}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}']) from err
    except RecursionError:
        raise ExpansionConfigError([f'{source}: JSON nests too deeply to be a config']) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ExpansionConfigError([f'{source}: cannot be read ({err})']) from err
    return parse_expansion_config(cfg, w_dim, img_resolution=img_resolution, img_channels=img_channels,
        check_resources=check_resources, source=source)

def parse_expansion_config(cfg, w_dim: int, img_resolution: int = None, img_channels: int = None,
        check_resources: bool = True, source: str = 'expansion config',
        allow_task_import: bool = True) -> ExpansionConfig:
    """Validate an expansion config (a dict as loaded from JSON) against a generator.

    Args:
        cfg:             the config dict (official format; `{}` is valid: no tasks).
        w_dim:           the generator's W size (dimensions must lie in [0, w_dim)).
        img_resolution:  the generator's resolution, for image checks (None: skip them).
        img_channels:    the generator's channel count (None: unknown).
        check_resources: check files and folders the tasks name (False for tools that only
                         need names and dims, e.g. reading a snapshot on another machine).
        source:          prefix of every message (the flag and file).
        allow_task_import: import dotted task types (a user's own config file). False for a
                         config read from a snapshot: a dotted type raises
                         TaskImportRefusedError before anything is imported.

    Returns:
        ExpansionConfig. Raises ExpansionConfigError listing every problem.
    """
    if not allow_task_import:
        refuse_task_imports(cfg, source)
    ctx = ConfigContext(w_dim=int(w_dim), img_resolution=img_resolution, img_channels=img_channels,
        check_resources=check_resources)
    problems = []
    if not isinstance(cfg, dict):
        raise ExpansionConfigError([f'{source}: must be a JSON object with "tasks" and "tasks_losses", got {type(cfg).__name__}'])
    for key in cfg:
        if key not in TOP_LEVEL_KEYS:
            problems.append(f'{key}: unknown key; valid keys: {", ".join(TOP_LEVEL_KEYS)}')
    raw_tasks, raw_losses = cfg.get('tasks', []), cfg.get('tasks_losses', {})
    if not isinstance(raw_tasks, list):
        problems.append(f'tasks: must be a list of task objects, got {type(raw_tasks).__name__}')
        raw_tasks = []
    if not isinstance(raw_losses, dict):
        problems.append(f'tasks_losses: must be an object {{type: {{argument: value}}}}, got {type(raw_losses).__name__}')
        raw_losses = {}
    shared = _check_tasks_losses(raw_losses, problems)
    parsed = [_check_task(index, raw, shared, ctx, problems) for index, raw in enumerate(raw_tasks)]
    dims = _assign_dimensions(parsed, ctx.w_dim, problems)
    _check_unique_names(parsed, problems)
    if problems:
        raise ExpansionConfigError([f'{source}: {problem}' for problem in _unique(problems)])
    tasks = tuple(TaskConfig(index=index, type=p['type'], task_class=p['class'], dimension=dims[index],
        args=p['args'], shared_args=p['shared'], name=p['name'], parameterization=p['parameterization'])
        for index, p in enumerate(parsed))
    return ExpansionConfig(tasks=tasks, w_dim=ctx.w_dim, raw=copy.deepcopy(cfg), source=source)

def refuse_task_imports(cfg, source: str, flag: str = '--allow-task-import') -> None:
    """TaskImportRefusedError (one line) when `cfg` names a dotted task type in `tasks[*].type`
    or a `tasks_losses` key; imports nothing. Other malformations are left to the parser."""
    names = []
    if isinstance(cfg, dict):
        tasks = cfg.get('tasks')
        for index, task in enumerate(tasks if isinstance(tasks, list) else []):
            if isinstance(task, dict) and isinstance(task.get('type'), str):
                names.append((f'tasks[{index}].type', task['type']))
        losses = cfg.get('tasks_losses')
        names += [(f'tasks_losses key', key) for key in (losses if isinstance(losses, dict) else {})
                  if isinstance(key, str)]
    for where, name in names:
        if '.' in name:
            raise TaskImportRefusedError(dnnlib.util.one_line(
                f'{source}: {where} {name!r} is a dotted class path; a class named by snapshot data is never '
                f'imported. If you trust this file, re-run with {flag} to import it'))

#----------------------------------------------------------------------------

def _check_tasks_losses(raw_losses: dict, problems: list) -> dict:
    """Resolve every `tasks_losses` key to a class; returns class -> (key, kwargs)."""
    shared = {}
    for key, kwargs in raw_losses.items():
        where = f'tasks_losses.{key}'
        try:
            cls = get_task_class(key)
        except TaskTypeError as err:
            problems.append(f'{where}: {err}')
            continue
        if not isinstance(kwargs, dict):
            problems.append(f'{where}: must be an object {{argument: value}}, got {type(kwargs).__name__}')
            continue
        if cls in shared:
            problems.append(f'{where}: names the same task class as tasks_losses.{shared[cls][0]}; merge them')
            continue
        spec = task_arguments(cls)
        if not spec.accepts_any:
            for arg in kwargs:
                if arg not in spec.names:
                    problems.append(f'{where}.{arg}: unknown argument for {key}; accepted: {", ".join(spec.names)}')
        shared[cls] = (key, kwargs)
    return shared

def _check_task(index: int, raw, shared: dict, ctx: ConfigContext, problems: list) -> dict:
    """Check one task entry. Returns a dict (type, class, args, shared, dimension, name); class None if unusable."""
    where = f'tasks[{index}]'
    parsed = dict(type=None, cls=None, args={}, shared={}, dimension=None, name=None, parameterization=None)
    if not isinstance(raw, dict):
        problems.append(f'{where}: must be an object with "type", optional "dimension" or "parameterization", '
                        f'and "args", got {type(raw).__name__}')
        return _rename_class(parsed)
    for key in raw:
        if key not in TASK_KEYS:
            problems.append(f'{where}.{key}: unknown key; valid keys: {", ".join(TASK_KEYS)}')
    parsed['parameterization'] = _check_parameterization(raw, where, problems)
    if raw.get('parameterization') is None:
        parsed['dimension'] = _check_dimension(raw, where, ctx.w_dim, problems)
    elif raw.get('dimension') is not None:
        problems.append(f'{where}.dimension: a task with "parameterization" trains theta on the base latent and '
                        f'repurposes no dimension; remove "dimension" (or "parameterization")')
    args = raw.get('args', {})
    if not isinstance(args, dict):
        problems.append(f'{where}.args: must be an object {{argument: value}}, got {type(args).__name__}')
        args = {}
    parsed['args'] = args
    if 'type' not in raw:
        problems.append(f'{where}.type: missing; give a registered type or a dotted class path')
        return _rename_class(parsed)
    parsed['type'] = raw['type']
    try:
        cls = get_task_class(raw['type'])
    except TaskTypeError as err:
        problems.append(f'{where}.type: {err}')
        return _rename_class(parsed)
    shared_key, shared_args = shared.get(cls, (None, {}))
    parsed['shared'] = shared_args
    if _check_arguments(cls, args, shared_key, shared_args, where, ctx, problems):
        parsed['cls'] = cls
        parsed['name'] = cls.resolve_name({**task_arguments(cls).optional, **shared_args, **args})
    return _rename_class(parsed)

def _rename_class(parsed: dict) -> dict:
    parsed['class'] = parsed.pop('cls')
    return parsed

def _check_dimension(raw: dict, where: str, w_dim: int, problems: list):
    """The given dimension if valid, else None (a problem is recorded when it was given)."""
    if raw.get('dimension') is None:
        return None
    dim = raw['dimension']
    if isinstance(dim, bool) or not isinstance(dim, int):
        problems.append(f'{where}.dimension: must be an integer in [0, {w_dim - 1}], got {dim!r}')
        return None
    if not 0 <= dim < w_dim:
        problems.append(f'{where}.dimension: {dim} is out of range; the generator has w_dim {w_dim}, '
            f'so dimensions lie in [0, {w_dim - 1}]')
        return None
    return dim

def _check_parameterization(raw: dict, where: str, problems: list):
    """The given parameterisation name if valid, else None (a problem is recorded when it was given)."""
    name = raw.get('parameterization')
    if name is None:
        return None
    if not isinstance(name, str) or name not in PARAMETERIZATIONS:
        problems.append(f'{where}.parameterization: unknown parameterization {name!r}; choose one of '
                        f'{", ".join(PARAMETERIZATIONS)}')
        return None
    return name

def _check_arguments(cls, args: dict, shared_key, shared_args: dict, where: str, ctx, problems: list) -> bool:
    """Argument names against the constructor, then the class's own value checks. True if usable."""
    spec = task_arguments(cls)
    ok = True
    for arg in args:
        if arg in shared_args:
            problems.append(f'{where}.args.{arg}: also given in tasks_losses.{shared_key}; give it in one place')
            ok = False
        elif not spec.accepts_any and arg not in spec.names:
            problems.append(f'{where}.args.{arg}: unknown argument for {cls.__name__}; accepted: {", ".join(spec.names)}')
            ok = False
    given = {**shared_args, **args}
    for arg in spec.required:
        if arg not in given:
            problems.append(f'{where}.args.{arg}: missing; {cls.__name__} requires {", ".join(spec.required)}')
            ok = False
    if not ok or (not spec.accepts_any and any(arg not in spec.names for arg in shared_args)):
        return False
    class_problems = cls.check_config({**spec.optional, **given}, ctx)
    for arg, message in class_problems:
        if arg is None:
            problems.append(f'{where}: {message}')
        elif arg in args or arg not in shared_args:
            problems.append(f'{where}.args.{arg}: {message}')
        else:
            problems.append(f'tasks_losses.{shared_key}.{arg}: {message}')
    return len(class_problems) == 0

def _first_users(parsed: list, key: str, problems: list, describe) -> dict:
    """Index of the first task for each value of `key` (None: not set, skipped). Every later task
    with a value already taken adds `describe(index, value, first_index)` to `problems`."""
    first = {}
    for index, p in enumerate(parsed):
        value = p[key]
        if value is None:
            continue
        if value in first:
            problems.append(describe(index, value, first[value]))
        else:
            first[value] = index
    return first

def _assign_dimensions(parsed: list, w_dim: int, problems: list) -> list:
    """Given dims stay; the others get the highest unused dims in task order (Sec. 4.1: most dormant).
    Parameterised tasks take none (None)."""
    owner = _first_users(parsed, 'dimension', problems, lambda index, dim, first:
        f'tasks[{index}].dimension: {dim} is already used by tasks[{first}]; every task needs its own dimension')
    directional = [p['parameterization'] is None for p in parsed]
    if sum(directional) >= w_dim:
        which = 'tasks' if all(directional) else 'tasks with a dimension'
        problems.append(f'tasks: {sum(directional)} {which} but w_dim is {w_dim}; at most {w_dim - 1} tasks leave a '
                        f'base subspace (a task with "parameterization" takes no dimension)')
        return [p['dimension'] for p in parsed]
    free = (dim for dim in range(w_dim - 1, -1, -1) if dim not in owner)
    return [None if not is_dir else p['dimension'] if p['dimension'] is not None else next(free)
            for p, is_dir in zip(parsed, directional)]

def _check_unique_names(parsed: list, problems: list) -> None:
    """Task names key logs, grids and metrics: two tasks may not share one."""
    _first_users(parsed, 'name', problems, lambda index, name, first:
        f'tasks[{index}]: task name {name!r} is already used by tasks[{first}]; set args.name to tell them apart')

def _unique(items: list) -> list:
    """Drop repeated messages (shared arguments are checked once per task), keeping order."""
    return list(dict.fromkeys(items))

#----------------------------------------------------------------------------

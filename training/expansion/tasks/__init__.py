"""Domain-expansion tasks: the interface, the registry and the built-in task types.

Configs name a task by its registered type (`"type": "NADA"`); a user's `BaseTask` subclass is
named by a dotted path (`"type": "my_pkg.tasks.Sketch"`) in a config file the user gives on the
command line. Each built-in type lives in its own module here; see `base.py` for how to write one.
Everything a user's task needs is importable from this package.
"""

from training.expansion.tasks.base import (BaseTask, ConfigContext, TaskArguments, TaskBatch, TaskRuntime,
    TaskTypeError, build_tasks, get_task_class, register_task, registered_task_types, slugify, task_arguments)
from training.expansion.tasks.mystyle import MyStyle
from training.expansion.tasks.nada import NADA
from training.expansion.tasks.shared_models import ClipEncoder, PretrainedWeightsError, SharedModels
from training.expansion.tasks.transform import Transform

__all__ = [
    'BaseTask', 'ConfigContext', 'TaskArguments', 'TaskBatch', 'TaskRuntime', 'TaskTypeError',
    'build_tasks', 'get_task_class', 'register_task', 'registered_task_types', 'slugify', 'task_arguments',
    'MyStyle', 'NADA', 'Transform', 'ClipEncoder', 'PretrainedWeightsError', 'SharedModels',
]

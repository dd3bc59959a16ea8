"""Domain-adaptation tasks for domain expansion: interface, registry and built-in types.

The official configs name tasks by type (`"type": "NADA"`), looked up here; a dotted path
(`"type": "my_pkg.tasks.Sketch"`) names a user's `BaseTask` subclass. The implementations live
in `training/tasks/`, one file per task.
"""

from training.tasks.base import (BaseTask, ConfigContext, TaskArguments, TaskBatch, TaskRuntime, TaskTypeError,
    build_tasks, get_task_class, register_task, registered_task_types, slugify, task_arguments)
from training.tasks.mystyle import MyStyle
from training.tasks.nada import NADA
from training.tasks.shared_models import ClipEncoder, PretrainedWeightsError, SharedModels
from training.tasks.transform import Transform

__all__ = [
    'BaseTask', 'ConfigContext', 'TaskArguments', 'TaskBatch', 'TaskRuntime', 'TaskTypeError',
    'build_tasks', 'get_task_class', 'register_task', 'registered_task_types', 'slugify', 'task_arguments',
    'MyStyle', 'NADA', 'Transform', 'ClipEncoder', 'PretrainedWeightsError', 'SharedModels',
]

"""Old import path of the expansion tasks, kept so configs and users' task modules written for it
(`"type": "training.adaptation_tasks.NADA"`, `from training.adaptation_tasks import BaseTask`)
keep working. The tasks live in `training/expansion/tasks/`."""

from training.expansion.tasks import *  # noqa: F401,F403 (the alias re-exports the package's names)
from training.expansion.tasks import __all__  # noqa: F401

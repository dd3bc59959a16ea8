"""Domain-expansion tasks: the interface, the registry and the built-in task types.

`training.adaptation_tasks` re-exports everything users need; see training/tasks/base.py for
how to write a task.
"""

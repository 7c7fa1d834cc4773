"""Long-time-lag tasks: seeded generators with a baseline and a "solved" criterion each.

`make_task("adding", T=200)` builds one by name; `task.sample(n, generator)` draws training
sequences and `task.test_set(n, seed)` a fixed test set from its own seed.
"""

from __future__ import annotations

from dataclasses import fields

from lstmkit.tasks.adding import Adding1997Task, AddingTask
from lstmkit.tasks.base import Batch, Task
from lstmkit.tasks.copy import CopyTask
from lstmkit.tasks.reber import EmbeddedReberTask
from lstmkit.tasks.temporal_order import TemporalOrderTask

TASKS: dict[str, type[Task]] = {
    task.name: task for task in (AddingTask, Adding1997Task, CopyTask, TemporalOrderTask, EmbeddedReberTask)
}


def make_task(name: str, T: int | None = None) -> Task:
    """The task registered as `name`, of length T (its default when None)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}")
    task_type = TASKS[name]
    if T is None:
        return task_type()
    if "T" not in {field.name for field in fields(task_type)}:
        raise ValueError(f"task {name!r} has no length parameter, so T cannot be set (got T={T})")
    return task_type(T=T)


__all__ = [
    "Adding1997Task",
    "AddingTask",
    "Batch",
    "CopyTask",
    "EmbeddedReberTask",
    "TASKS",
    "Task",
    "TemporalOrderTask",
    "make_task",
]

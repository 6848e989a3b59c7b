"""Reading tasks by id on Kling's new-standard API: ``GET /tasks?task_ids=a,b,...``.

One request answers for up to [`TASKS_PER_QUERY`][kling_async.standard.TASKS_PER_QUERY] tasks of
any kind, so a watcher of many tasks on Kling direct needs an order of magnitude fewer requests
than one GET per task, even where no list route would help.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from . import wire
from .errors import KlingError, NotFoundError
from .models import Task, TaskKind
from .scheduler import PartialBatchError
from .standard import TASKS_PER_QUERY

__all__ = ["fetch_by_ids", "fetch_one", "find_by_external_ids"]

_Call = Callable[..., Awaitable[Any]]

_PATH = "tasks"


async def fetch_by_ids(call: _Call, tasks: Sequence[Task]) -> list[Task]:
    """The current state of *tasks*, ``TASKS_PER_QUERY`` per request.

    Tasks the answer leaves out are left out here too (the scheduler checks them again later).

    Raises:
        PartialBatchError: a later request failed; it carries the tasks already read.
        KlingError: the first request failed.
    """
    found: list[Task] = []
    for start in range(0, len(tasks), TASKS_PER_QUERY):
        chunk = tasks[start : start + TASKS_PER_QUERY]
        try:
            found.extend(await _query(call, {task.id: task.kind for task in chunk}))
        except KlingError as exc:
            if not found:
                raise
            raise PartialBatchError(found, exc) from None
    return found


async def fetch_one(call: _Call, task_id: str, kind: TaskKind) -> Task:
    """One task's state.

    Raises:
        NotFoundError: the answer does not hold the task.
    """
    for task in await _query(call, {task_id: kind}):
        if task.id == task_id:
            return task
    raise NotFoundError(f"task {task_id} is not in the answer to GET {_PATH}", status=404)


async def find_by_external_ids(call: _Call, ext_id: str, kind: TaskKind) -> Task | None:
    """The task created with *ext_id*, or ``None`` when Kling knows none."""
    answer = await call("GET", _PATH, params={"external_task_ids": ext_id}, standard=True)
    for task in wire.parse_task_list(answer, kind, where=f"GET {_PATH}"):
        if task.external_task_id == ext_id:
            return task
    return None


async def _query(call: _Call, kinds: Mapping[str, TaskKind]) -> list[Task]:
    answer = await call("GET", _PATH, params={"task_ids": ",".join(kinds)}, standard=True)
    items = wire.task_items(answer, where=f"GET {_PATH}")
    # Each answer is read with the kind of the task it answers (its result type depends on it);
    # ids nobody asked about are skipped.
    found: list[Task] = []
    for item in items:
        kind = kinds.get(wire.item_id(item) or "")
        if kind is not None:
            found.append(wire.parse_task(item, kind, where=f"GET {_PATH}"))
    return found

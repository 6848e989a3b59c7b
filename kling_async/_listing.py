"""Checking many tasks with list requests, where the provider lists tasks (Kling's own API).

One ``GET <kind>?pageNum=&pageSize=500`` answers for up to 500 tasks, so a watcher of thousands
checks them with a few requests instead of one each.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from .errors import KlingError, NotFoundError
from .models import Task, TaskKind
from .scheduler import PartialBatchError

__all__ = ["LIST_MAX_PAGES", "LIST_PAGE_SIZE", "NoListRoute", "fetch_by_listing"]

logger = logging.getLogger("kling_async.client")

LIST_PAGE_SIZE = 500
LIST_MAX_PAGES = 4
"""List pages one batched check may read: 2,000 tasks back, then single GETs take over."""

ListTasks = Callable[..., Awaitable[list[Task]]]


class NoListRoute(Exception):  # noqa: N818 - a signal to the caller, never raised to users
    """The provider claims a list route but answers 404 for it (a gateway in front)."""


async def fetch_by_listing(
    tasks: Sequence[Task], list_tasks: ListTasks, observe: Callable[[Task], Awaitable[None]]
) -> Sequence[Task]:
    """Read the list pages that cover *tasks*; every task on them is returned and observed.

    Args:
        tasks: the tasks to check.
        list_tasks: ``KlingClient.list_tasks`` (``(kind, page=, page_size=)``).
        observe: called with each listed task (frees the slots of finished ones).

    Raises:
        NoListRoute: the first page answered 404.
        PartialBatchError: a later page failed; it carries the tasks already read.
        KlingError: the first page failed.
    """
    found: list[Task] = []
    failure: KlingError | None = None
    try:
        for kind in {task.kind for task in tasks}:
            await _walk(kind, {task.id for task in tasks if task.kind == kind}, found, list_tasks)
    except KlingError as exc:
        if not found:
            raise
        failure = exc
    for task in found:
        await observe(task)
    if failure is not None:
        # Pages already read are news: the scheduler uses them and retries the rest.
        raise PartialBatchError(found, failure)
    return found


async def _walk(kind: TaskKind, wanted: set[str], found: list[Task], list_tasks: ListTasks) -> None:
    # The newest tasks come first; walk back until every wanted one was seen, a short page
    # says there are no more, or the page cap is reached (older tasks then fall back to their
    # own GETs in the scheduler).
    for page in range(1, LIST_MAX_PAGES + 1):
        try:
            listed = await list_tasks(kind, page=page, page_size=LIST_PAGE_SIZE)
        except NotFoundError:
            if page > 1 or found:
                raise
            logger.warning("GET %s lists nothing here; checking tasks one by one", kind.path)
            raise NoListRoute(kind.path) from None
        found.extend(listed)
        wanted.difference_update(task.id for task in listed)
        if not wanted or len(listed) < LIST_PAGE_SIZE:
            return

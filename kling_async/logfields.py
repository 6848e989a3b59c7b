"""Structured logging: which task a library log record is about, as ``extra`` fields.

Every record the library logs about one task carries three attributes, so that a JSON formatter
(or any formatter reading record attributes) can index them:

* ``kling_task_id``: the server's task id;
* ``kling_task_kind``: the task kind (``"text2video"``);
* ``kling_external_task_id``: the ``external_task_id`` the task was created with.

Records not about one task (a rate-limit pause, a slot limit) do not carry them; add
[`TaskFields`][kling_async.logfields.TaskFields] to a handler to give every record all three (``None`` where not about a
task), so that a format string such as ``"%(kling_task_id)s %(message)s"`` never fails.

Examples:
    >>> from kling_async.kinds import TEXT_TO_VIDEO
    >>> from kling_async.models import Task, TaskStatus
    >>> task_fields(Task(id="42", kind=TEXT_TO_VIDEO, status=TaskStatus.SUBMITTED))
    {'kling_task_id': '42', 'kling_task_kind': 'text2video', 'kling_external_task_id': None}
"""

from __future__ import annotations

import logging

from .models import Task

__all__ = ["FIELDS", "TaskFields", "id_fields", "task_fields"]

FIELDS = ("kling_task_id", "kling_task_kind", "kling_external_task_id")
"""The names of the three attributes, in a stable order."""


def task_fields(task: Task) -> dict[str, str | None]:
    """The ``extra`` mapping for a log record about *task*.

    Args:
        task: the task the record is about.

    Returns:
        the three fields of [`FIELDS`][kling_async.logfields.FIELDS].
    """
    return id_fields(task.id, task.kind.name, task.external_task_id)


def id_fields(
    task_id: str | None, kind: str | None, external_task_id: str | None
) -> dict[str, str | None]:
    """The ``extra`` mapping for a record about a task known only by its ids (a journal entry).

    Args:
        task_id: the server's task id, if known.
        kind: the task kind's name.
        external_task_id: the task's ``external_task_id``, if any.

    Returns:
        the three fields of [`FIELDS`][kling_async.logfields.FIELDS].
    """
    return {
        "kling_task_id": task_id,
        "kling_task_kind": kind,
        "kling_external_task_id": external_task_id,
    }


class TaskFields(logging.Filter):
    """A handler filter that gives every record the three task fields (``None`` when absent).

    It never drops a record. Example::

        handler = logging.StreamHandler()
        handler.addFilter(TaskFields())
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Fill in the fields *record* lacks; keep the record.

        Args:
            record: the record on its way to the handler.
        """
        for name in FIELDS:
            if not hasattr(record, name):
                setattr(record, name, None)
        return True

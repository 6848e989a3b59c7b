"""What the integration remembers per task: its span and the attributes its metrics carry.

One ``TaskRegistry`` per instrumented client. Open tasks are bounded (the oldest span is
ended when too many are open, say when tasks are submitted and never watched); recently finished
ones keep only their span context, so that a later download, callback or refresh joins the
task's trace.
"""

from __future__ import annotations

from collections import OrderedDict

import attrs
from opentelemetry import trace

from kling_async.models import Task, TaskRequest

from . import _names as n
from ._http import AttributeValue

__all__ = ["OpenTask", "TaskRegistry", "metric_attributes"]


@attrs.define
class OpenTask:
    """A task between its creation (or first sighting) and its final status.

    Attributes:
        span: its ``kling.task`` span.
        attributes: kind, model and mode: the task metrics' attributes.
        started_ns: when the span started (unix nanoseconds).
        status: the last status seen, for status-change span events.
    """

    span: trace.Span
    attributes: dict[str, AttributeValue]
    started_ns: int
    status: str


def metric_attributes(task: Task, request: TaskRequest | None) -> dict[str, AttributeValue]:
    """Kind, model and mode of *task* (model and mode only when the request named them)."""
    attributes: dict[str, AttributeValue] = {n.ATTR_TASK_KIND: task.kind.name}
    if request is not None:
        # Not every kind has a model or a mode (effects, audio, lip-sync).
        model = getattr(request, "model_name", None)
        mode = getattr(request, "mode", None)
        if model:
            attributes[n.ATTR_MODEL] = model
        if mode:
            attributes[n.ATTR_MODE] = mode
    return attributes


class TaskRegistry:
    """Open tasks by id and external id, plus the span contexts of recently finished ones.

    Args:
        max_open: open tasks kept; beyond it the oldest span ends (``kling.task.evicted``).
        max_finished: finished tasks whose span context is kept.
    """

    def __init__(self, *, max_open: int = 100_000, max_finished: int = 10_000) -> None:
        self._open: OrderedDict[str, OpenTask] = OrderedDict()
        # None for a task seen finished that never had a span here (created elsewhere).
        self._finished: OrderedDict[str, trace.SpanContext | None] = OrderedDict()
        # Gateways may answer callbacks with their own ids; the external id still matches.
        self._by_external: dict[str, str] = {}
        self._external_of: dict[str, str] = {}
        self._max_open = max_open
        self._max_finished = max_finished

    def __len__(self) -> int:
        """Return the number of open tasks."""
        return len(self._open)

    def __contains__(self, task_id: object) -> bool:
        """Whether task *task_id* is open."""
        return task_id in self._open

    def open(self, task: Task, entry: OpenTask) -> None:
        """Remember *task* as open, ending the oldest span when there are too many."""
        self._open[task.id] = entry
        if task.external_task_id:
            self._by_external[task.external_task_id] = task.id
            self._external_of[task.id] = task.external_task_id
        while len(self._open) > self._max_open:
            oldest, evicted = next(iter(self._open.items()))
            evicted.span.set_attribute("kling.task.evicted", True)
            evicted.span.end()
            self.close(oldest)

    def get(self, task_id: str) -> OpenTask | None:
        """The open task *task_id*, if any."""
        return self._open.get(task_id)

    def find(self, task: Task) -> OpenTask | None:
        """The open task *task* is, by id or else by external id."""
        entry = self._open.get(task.id)
        if entry is None and task.external_task_id:
            own = self._by_external.get(task.external_task_id)
            entry = self._open.get(own) if own is not None else None
        return entry

    def close(self, task_id: str) -> OpenTask | None:
        """Forget the open task *task_id*, keeping its span context; return it if it was open."""
        entry = self._open.pop(task_id, None)
        external = self._external_of.pop(task_id, None)
        if external is not None:
            self._by_external.pop(external, None)
        self._finished[task_id] = entry.span.get_span_context() if entry is not None else None
        while len(self._finished) > self._max_finished:
            self._finished.popitem(last=False)
        return entry

    def was_closed(self, task_id: str) -> bool:
        """Whether task *task_id* was seen finished (or expired) recently.

        Two watchers of one task both report it finished; it is counted once.
        """
        return task_id in self._finished

    def span_context(self, task_id: str) -> trace.SpanContext | None:
        """The span context of task *task_id*, open or recently finished."""
        entry = self._open.get(task_id)
        if entry is not None:
            return entry.span.get_span_context()
        return self._finished.get(task_id)

    def end_all(self) -> None:
        """End every open span (the integration is being turned off)."""
        for task_id in list(self._open):
            entry = self.close(task_id)
            if entry is not None:
                entry.span.end()

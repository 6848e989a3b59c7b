"""A blocking facade over [`KlingClient`][kling_async.client.KlingClient], for scripts and notebooks.

A convenience, not a second implementation: the async client runs on a private event loop in
a thread of its own, and each method here hands it one call and blocks until the answer. So
everything (retries, the rate limit, task slots, verified downloads) behaves exactly as in the
async client, and it also works where an event loop is already running (a Jupyter cell).
What it cannot give is concurrency in *your* code: for many tasks at once, use
[`submit_many`][kling_async.sync.KlingClient.submit_many] and
[`watch`][kling_async.sync.KlingClient.watch], or
[`as_completed`][kling_async.sync.KlingClient.as_completed], or the async client itself.

Example::

    from kling_async.sync import KlingClient

    with KlingClient() as client:  # key from $COMETAPI_KEY
        path = client.generate("A beach at sunset", to="out/")
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, TypeVar

from . import _fields
from ._closing import Scoped
from .as_completed import AsCompleted
from .client import KlingClient as AsyncKlingClient
from .errors import ConfigurationError, KlingError
from .models import Task, TaskKind, TaskRequest
from .watch import Watcher

__all__ = ["KlingClient", "TaskStream"]

_T = TypeVar("_T")


class KlingClient(Scoped):
    """The blocking twin of [`kling_async.KlingClient`][kling_async.client.KlingClient].

    Takes the same arguments; each method blocks until its async counterpart is done. Close
    it (``with`` or [`close`][kling_async.sync.KlingClient.close]) to stop its thread.
    Calls from several threads at once are safe: they share the one async client.

    Args:
        *args: passed to the async client.
        **kwargs: passed to the async client.

    Raises:
        ConfigurationError: as the async client would (no credentials, a bad base URL).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="kling-async-sync", daemon=True
        )
        self._thread.start()
        self._closed = False
        # Streams still running, stopped by close(): a `break` out of a for loop leaves them.
        self._streams: set[TaskStream] = set()

        async def build() -> AsyncKlingClient:
            # Inside the loop: the client's locks and sessions belong to it.
            return AsyncKlingClient(*args, **kwargs)

        try:
            self._client = self._run(build())
        except BaseException:
            self._stop_loop()
            raise

    def __repr__(self) -> str:
        return f"sync.{self._client!r}"

    @property
    def aio(self) -> AsyncKlingClient:
        """The async client underneath (its ``events``, ``provider`` and other attributes)."""
        return self._client

    def _run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        if self._closed:
            coroutine.close()
            raise ConfigurationError("this client is closed; create a new KlingClient")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except BaseException:
            # Ctrl-C while blocked here: stop the work on the loop too, not only the wait.
            future.cancel()
            raise

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def close(self) -> None:
        """Close the async client and stop the loop thread. Safe to call twice."""
        if self._closed:
            return
        for stream in list(self._streams):
            stream.close()
        try:
            self._run(self._client.aclose())
            self._run(self._loop.shutdown_asyncgens())
        finally:
            self._closed = True
            self._stop_loop()

    def _enter(self) -> None:
        if self._closed:
            raise ConfigurationError("this client is closed; create a new KlingClient")

    def _exit(self) -> None:
        self.close()

    # -- the verbs of the async client -----------------------------------------------------

    def submit(self, request: TaskRequest, *, external_task_id: str | None = None) -> Task:
        """See [`KlingClient.submit`][kling_async.client.KlingClient.submit]."""
        return self._run(self._client.submit(request, external_task_id=external_task_id))

    def text_to_video(self, prompt: str, **fields: Any) -> Task:
        """See [`KlingClient.text_to_video`][kling_async.client.KlingClient.text_to_video]."""
        return self._run(self._client.text_to_video(prompt, **fields))

    def image_to_video(
        self, image: str | os.PathLike[str], prompt: str | None = None, **fields: Any
    ) -> Task:
        """See [`KlingClient.image_to_video`][kling_async.client.KlingClient.image_to_video]."""
        return self._run(self._client.image_to_video(image, prompt, **fields))

    def generate(
        self,
        prompt: str | TaskRequest,
        *,
        to: str | os.PathLike[str] = ".",
        timeout: float | None = 1800.0,
        **fields: Any,
    ) -> Path:
        """See [`KlingClient.generate`][kling_async.client.KlingClient.generate]."""
        return self._run(self._client.generate(prompt, to=to, timeout=timeout, **fields))

    def get_task(self, task: Task | str, kind: TaskKind | str = "text2video") -> Task:
        """See [`KlingClient.get_task`][kling_async.client.KlingClient.get_task]."""
        return self._run(self._client.get_task(task, kind))

    def wait(self, task: Task, *, timeout: float | None = 900.0) -> Task:
        """See [`KlingClient.wait`][kling_async.client.KlingClient.wait]."""
        return self._run(self._client.wait(task, timeout=timeout))

    def download(
        self, task: Task, dest: str | os.PathLike[str], *, watermark: bool = False, index: int = 0
    ) -> Path:
        """See [`KlingClient.download`][kling_async.client.KlingClient.download]."""
        return self._run(self._client.download(task, dest, watermark=watermark, index=index))

    def submit_many(self, requests: Iterable[TaskRequest], *, concurrency: int = 16) -> list[Task]:
        """See [`KlingClient.submit_many`][kling_async.client.KlingClient.submit_many]."""
        # Checked here: a bad call raises in the caller's thread, not the loop's.
        items = _fields.request_list(requests, "submit_many")
        return self._run(self._client.submit_many(items, concurrency=concurrency))

    def list_tasks(
        self, kind: TaskKind | str = "text2video", *, page: int = 1, page_size: int = 30
    ) -> list[Task]:
        """See [`KlingClient.list_tasks`][kling_async.client.KlingClient.list_tasks]."""
        return self._run(self._client.list_tasks(kind, page=page, page_size=page_size))

    def find_by_external_id(
        self, external_task_id: str, kind: TaskKind | str = "text2video"
    ) -> Task | None:
        """See [`KlingClient.find_by_external_id`][kling_async.client.KlingClient.find_by_external_id]."""
        return self._run(self._client.find_by_external_id(external_task_id, kind))

    def watch(
        self,
        tasks: Iterable[Task],
        *,
        timeout: float | None = None,
        task_timeout: float | None = None,
    ) -> TaskStream:
        """Yield *tasks* as they finish, in completion order.

        See [`KlingClient.watch`][kling_async.client.KlingClient.watch]; here *tasks* is required
        (a stream cannot be fed from the blocking side). Leaving the loop early stops watching.

        Raises:
            WaitTimeoutError: *timeout* passed, after the tasks that finished were yielded.
        """
        tracked = _fields.listed(tasks, "watch takes a list of tasks", one=": watch([task])")
        return self._iterate(
            lambda: self._client.watch(tracked, timeout=timeout, task_timeout=task_timeout)
        )

    def as_completed(
        self,
        requests: Iterable[TaskRequest],
        *,
        concurrency: int = 16,
        task_timeout: float | None = None,
    ) -> TaskStream:
        """Submit *requests* as task slots free and yield the tasks as they finish.

        See [`KlingClient.as_completed`][kling_async.client.KlingClient.as_completed]. Every
        request is checked here, before the first is sent. A ``break`` alone does not stop
        the submissions: use the stream as ``with`` (or call its ``close()``), which stops
        submitting and watching; created tasks keep running on the server, and the stream's
        ``created``, ``unsettled`` and ``errors`` say what came of each request.

        Example::

            with client.as_completed(requests) as results:
                for task in results:
                    if task.succeeded:
                        client.download(task, "videos/")

        Raises:
            PartialSubmitError: after every created task, when some submissions failed.
        """
        items = _fields.request_list(requests, "as_completed")
        for request in items:
            # Checked here, so that a bad request raises at the call, before anything runs.
            self._client.check_request(request)
        return self._iterate(
            lambda: self._client.as_completed(
                items, concurrency=concurrency, task_timeout=task_timeout
            )
        )

    def _iterate(self, open_results: Callable[[], Watcher | AsCompleted]) -> TaskStream:
        if self._closed:
            raise ConfigurationError("this client is closed; create a new KlingClient")
        stream = TaskStream(self._loop, open_results, self._streams.discard)
        self._streams.add(stream)
        return stream


class TaskStream(Scoped):
    """Finished tasks in completion order, for the blocking client: an iterator.

    Returned by [`watch`][kling_async.sync.KlingClient.watch] and
    [`as_completed`][kling_async.sync.KlingClient.as_completed]. Breaking out of a ``for``
    loop does not stop a stream (Python never tells an iterator it was left): use it as
    ``with`` or call [`close`][kling_async.sync.TaskStream.close]. Closing the client closes
    the streams still running.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        open_results: Callable[[], Watcher | AsCompleted],
        forget: Callable[[TaskStream], None],
    ) -> None:
        self._loop = loop
        self._open = open_results
        self._forget = forget
        self._results: queue.Queue[tuple[bool, Any]] = queue.Queue()
        self._started = False
        self._done = False
        self._stop_first = False  # closed before the pump ran: it must not start
        self._task: asyncio.Task[None] | None = None
        self._opened: Watcher | AsCompleted | None = None

    @property
    def created(self) -> tuple[Task, ...]:
        """``as_completed``: the tasks created so far (empty for ``watch``)."""
        return self._opened.created if isinstance(self._opened, AsCompleted) else ()

    @property
    def unsettled(self) -> tuple[str, ...]:
        """``as_completed``: external ids of creates cut off by closing early (see
        [`AsCompleted.unsettled`][kling_async.as_completed.AsCompleted.unsettled])."""
        return self._opened.unsettled if isinstance(self._opened, AsCompleted) else ()

    @property
    def errors(self) -> tuple[tuple[int, KlingError], ...]:
        """``as_completed``: ``(index, error)`` of the submissions that failed so far."""
        return self._opened.errors if isinstance(self._opened, AsCompleted) else ()

    async def _pump(self) -> None:
        # One coroutine owns the async iterator from start to end: its task group must be
        # entered and left by the same task, which one call per item could not promise.
        self._task = asyncio.current_task()
        if self._stop_first:
            return
        try:
            async with self._open() as opened:
                self._opened = opened
                async for task in opened:
                    self._results.put((True, task))
        except Exception as exc:  # noqa: BLE001 - re-raised in the caller's thread
            self._results.put((False, exc))
            return
        self._results.put((False, None))

    async def _stop(self) -> None:
        task = self._task
        if task is None:
            self._stop_first = True
            return
        task.cancel()
        await asyncio.wait({task})

    def __iter__(self) -> TaskStream:
        return self

    def __next__(self) -> Task:
        """The next finished task; raises what the async iterator raised (in this thread)."""
        if self._done:
            raise StopIteration
        if not self._started:
            self._started = True
            asyncio.run_coroutine_threadsafe(self._pump(), self._loop)
        try:
            more, value = self._results.get()
        except BaseException:
            self.close()  # Ctrl-C while waiting: stop the work on the loop too
            raise
        if more:
            return value  # type: ignore[no-any-return]
        self._finish()
        if value is None:
            raise StopIteration
        raise value

    def _finish(self) -> None:
        self._done = True
        self._forget(self)

    def close(self) -> None:
        """Stop submitting and checking, and wait until that is done. Safe to call twice."""
        if self._started and not self._done and not self._loop.is_closed():
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result()
        self._finish()

    def _exit(self) -> None:
        self.close()

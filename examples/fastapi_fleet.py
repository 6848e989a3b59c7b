"""A FastAPI service run by several uvicorn workers that share one Kling account through Redis.

Every worker process has its own ``KlingClient``; ``shared=RedisStore(...)`` makes their request
rate, their task slots and their cool-downs one, so ``--workers 4`` sends no more than one
worker would be allowed to.

Routes:

* ``POST /videos`` ``{"prompt": "..."}`` submits a task (waiting for a free slot of the account)
  and answers ``{"task_id": ..., "worker": <pid>}``.
* ``GET /videos/{task_id}`` waits (up to 15 minutes) for the task and answers its final status.
* ``GET /health`` answers the worker's process id.

Run it (the API key from ``$COMETAPI_KEY``)::

    REDIS_URL=redis://localhost:6379/0 KLING_ACCOUNT=prod KLING_MAX_ACTIVE=10 \\
        uvicorn examples.fastapi_fleet:app --workers 4
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

import kling_async as kling
from kling_async.redis_store import RedisStore


class VideoRequest(BaseModel):
    """The body of ``POST /videos``."""

    prompt: str = Field(min_length=1)


def make_client() -> kling.KlingClient:
    """The worker's client: limits from the environment, shared through ``$REDIS_URL``.

    ``$KLING_EMULATOR=1`` (with ``$KLING_BASE_URL``) points it at the local emulator, whose tasks
    finish in moments rather than minutes.
    """
    emulator = os.environ.get("KLING_EMULATOR") == "1"
    return kling.KlingClient(
        provider=kling.local_emulator(os.environ["KLING_BASE_URL"]) if emulator else "cometapi",
        max_active_tasks=int(os.environ.get("KLING_MAX_ACTIVE", "10")),
        shared=RedisStore(
            os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
            account=os.environ.get("KLING_ACCOUNT", "default"),
        ),
    )


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One client per worker process, opened at start-up and closed at shutdown."""
    async with make_client() as client:
        app.state.client = client
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/health")
async def health() -> dict[str, object]:
    """Which worker process answered (load balancers and tests use it)."""
    return {"worker": os.getpid()}


@app.post("/videos")
async def create_video(body: VideoRequest) -> dict[str, object]:
    """Submit a text-to-video task; waits for a task slot of the account first."""
    client: kling.KlingClient = app.state.client
    try:
        task = await client.text_to_video(body.prompt)
    except kling.StoreUnavailableError as exc:
        # Redis is away: nothing was sent. Tell the caller to come back rather than guess.
        raise HTTPException(status_code=503, detail=str(exc)) from None
    return {"task_id": task.id, "worker": os.getpid()}


@app.get("/videos/{task_id}")
async def video_status(task_id: str) -> dict[str, object]:
    """Wait for the task to finish; answer its status (and the video URL when it succeeded)."""
    client: kling.KlingClient = app.state.client
    task = await client.get_task(task_id)
    async with client.watch([task], timeout=900) as results:
        async for done in results:
            url = done.videos[0].url if done.succeeded and done.videos else None
            return {"task_id": done.id, "status": done.status.value, "url": url}
    raise HTTPException(status_code=504, detail="the task did not finish in time")

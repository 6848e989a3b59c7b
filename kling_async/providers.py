"""Where the API lives and which of its unconfirmed features we rely on.

Two providers are built in: CometAPI's gateway (the default) and Kling's own API. Everything the
research notes mark UNCONFIRMED for a provider is a setting here, not a hard-coded belief.
"""

from __future__ import annotations

import enum
import functools

import attrs

from .standard import PRODUCTS, ApiStyle
from .validation import RequestLimits

__all__ = [
    "COMETAPI",
    "DEFAULT_VIDEO_MODEL",
    "KLING",
    "KLING_STANDARD",
    "ExternalIdLookup",
    "Provider",
    "local_emulator",
]

DEFAULT_VIDEO_MODEL = "kling-v2-6"
"""The ``model_name`` sent when neither the request nor the client names one.

Kling's own default is ``kling-v1``, a model being retired, and CometAPI documents none (gateways
such as new-api refuse a create without it), so the library always names the model: the newest
one that every gateway's list carries, with both ``std`` and ``pro`` at 5 and 10 seconds."""


class ExternalIdLookup(str, enum.Enum):
    """How to find a task by its ``external_task_id`` after an ambiguous create.

    Kling documents that a task "can be queried" by external id but shows no URL; public clients
    disagree on the form, and CometAPI documents none. Pick the form your provider answers.
    """

    PATH = "path"
    """``GET <kind path>/<external_task_id>`` (the id in the task-id slot)."""
    QUERY = "query"
    """``GET <kind path>?external_task_id=<id>``."""
    FLAG = "flag"
    """``GET <kind path>/<external_task_id>?external_task_id=true`` (the id in the task-id slot,
    flagged as an external id)."""
    EVERY = "every"
    """Each of ``PATH``, ``FLAG`` and ``QUERY`` in turn until one finds the task. A "none"
    counts only when every form gave one: a form the server does not serve answers "not
    found" for a task that exists, and believing it would send the create a second time."""
    NONE = "none"
    """No look-up: an ambiguous create raises [`SubmitUncertainError`][kling_async.errors.SubmitUncertainError]."""


@attrs.frozen
class Provider:
    """An API endpoint and what it supports.

    Attributes:
        name: a label for logs and reprs.
        base_url: scheme and host, e.g. ``https://api.cometapi.com``.
        prefix: the path prefix before resource paths (``/kling/v1`` or ``/v1``).
        limits: request limits the provider documents.
        external_lookup: how to look a task up by external id.
        trust_not_found: whether a "not found" answer to that look-up proves no task was created.
            Only then does the client re-submit after an ambiguous failure.
        supports_list: whether ``GET <kind path>?pageNum=&pageSize=`` lists your tasks, so the
            scheduler may check many tasks with one request.
        default_model: the video ``model_name`` sent when a request and the client name none
            (``None``: leave it out and let the server choose).
        real_durations: whether tasks take as long as Kling's (a minute or more): the default
            poll policy then checks where such tasks finish. ``False`` (the emulator, whose
            tasks finish in moments) keeps the age-based schedule from the first seconds.
        api_style: [`ApiStyle.STANDARD`][kling_async.standard.ApiStyle] sends the kinds that
            Kling's new-standard API serves (text2video, image2video, motion-control) to its
            model-in-path endpoints and reads them many at a time through ``GET /tasks``; the
            other kinds keep their legacy paths. API-key authentication only.
        standard_prefix: the path prefix of the new-standard endpoints (the host's root at Kling).
        supports_account: whether Kling's account endpoints (``GET /account/costs``) answer,
            beside the new-standard ones. CometAPI documents none.

    Examples:
        >>> KLING.with_base_url("http://127.0.0.1:8765").url("videos/text2video")
        'http://127.0.0.1:8765/v1/videos/text2video'
    """

    name: str
    base_url: str
    prefix: str
    limits: RequestLimits = attrs.field(factory=RequestLimits.cometapi)
    external_lookup: ExternalIdLookup = ExternalIdLookup.EVERY
    trust_not_found: bool = False
    supports_list: bool = False
    default_model: str | None = DEFAULT_VIDEO_MODEL
    real_durations: bool = True
    api_style: ApiStyle = ApiStyle.LEGACY
    standard_prefix: str = ""
    supports_account: bool = False

    def url(self, path: str) -> str:
        """The absolute URL of a resource path."""
        return f"{_root(self.base_url, self.prefix)}/{path.lstrip('/')}"

    def standard_url(self, path: str) -> str:
        """The absolute URL of a new-standard path (``tasks``, ``text-to-video/kling-3.0``)."""
        prefix = self.standard_prefix.strip("/")
        base = f"{self.base_url.rstrip('/')}/{prefix}" if prefix else self.base_url.rstrip("/")
        return f"{base}/{path.lstrip('/')}"

    def is_standard(self, kind: str) -> bool:
        """Whether tasks of *kind* (a kind's name) are created and read the new-standard way."""
        return self.api_style is ApiStyle.STANDARD and kind in PRODUCTS

    def with_base_url(self, base_url: str) -> Provider:
        """A copy pointing at another host (a proxy, a regional host, or the emulator)."""
        return attrs.evolve(self, base_url=base_url)


COMETAPI = Provider(
    name="cometapi",
    base_url="https://api.cometapi.com",
    prefix="/kling/v1",
    limits=RequestLimits.cometapi(),
    # CometAPI documents no external-id query and no list route (both UNCONFIRMED): try every
    # form, but never treat a "not found" as proof that nothing was created.
    external_lookup=ExternalIdLookup.EVERY,
    trust_not_found=False,
    supports_list=False,
)
"""CometAPI's gateway (the default): ``https://api.cometapi.com/kling/v1``, Bearer CometAPI key."""

KLING = Provider(
    name="kling",
    base_url="https://api-singapore.klingai.com",
    prefix="/v1",
    limits=RequestLimits.kling(),
    # Kling documents the look-up but not its URL (kling-api.md §1.7): a "none" must come
    # from every form the public clients use before it licenses sending the create again.
    external_lookup=ExternalIdLookup.EVERY,
    trust_not_found=True,
    supports_list=True,
    supports_account=True,
)
"""Kling's own API (Singapore host), with an API key or access key + secret key."""

KLING_STANDARD = attrs.evolve(KLING, name="kling-standard", api_style=ApiStyle.STANDARD)
"""Kling's own API, new-standard style where a kind has it (an API key only): creates go to
``POST /text-to-video/<model>`` and tasks are read 20 at a time with ``GET /tasks?task_ids=``."""


def local_emulator(base_url: str, *, api_style: ApiStyle = ApiStyle.LEGACY) -> Provider:
    """The built-in emulator ([`kling_async.testing.FakeKlingServer`][kling_async.testing.server.FakeKlingServer]) at *base_url*.

    It answers the CometAPI paths, supports both external-id look-up and listing, and enforces
    external-id uniqueness, so its "not found" can be trusted. With
    ``api_style=ApiStyle.STANDARD`` the client uses the emulator's new-standard endpoints.

    Example::

        async with FakeKlingServer() as server:
            client = KlingClient(api_key=server.api_key, provider=local_emulator(server.url))
    """
    return Provider(
        name="emulator",
        base_url=base_url,
        prefix="/kling/v1",
        limits=RequestLimits.cometapi(),
        external_lookup=ExternalIdLookup.PATH,
        trust_not_found=True,
        supports_list=True,
        real_durations=False,
        api_style=api_style,
        supports_account=True,
    )


@functools.lru_cache(maxsize=64)
def _root(base_url: str, prefix: str) -> str:
    """``base_url`` joined with ``prefix`` (built once: every status check needs it)."""
    prefix = prefix.strip("/")
    # No prefix (a gateway whose base URL holds the whole path): no empty path segment.
    return f"{base_url.rstrip('/')}/{prefix}" if prefix else base_url.rstrip("/")

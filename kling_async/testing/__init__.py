"""Test support: [`FakeKlingServer`][kling_async.testing.server.FakeKlingServer], a local emulator of the Kling video API.

The emulator is an independent implementation of the wire format (it imports nothing from the
client), so tests that run the client against it check both sides.

Example::

    async with FakeKlingServer(api_key="test-key", timeline=Timeline(queue_seconds=0.05)) as server:
        ...  # point a client at server.url; videos are served from server.cdn_url
        server.faults.next_create("drop_after_create")
"""

from __future__ import annotations

from ._config import FAULT_KINDS, FaultKind, Faults, RouteKind, Timeline, Validation
from ._faults import Fault, FaultInjector
from ._jwt import JwtRejectedError, encode_jwt, verify_jwt
from ._kinds import (
    DEFAULT_KINDS,
    IMAGE2VIDEO,
    TEXT2VIDEO,
    InvalidParameterError,
    KindSpec,
    validate_image2video,
    validate_lenient,
    validate_text2video,
)
from ._mp4 import build_mp4
from ._records import CallbackRecord, RequestRecord, ServerStats
from ._tasks import FakeTask, Status
from .server import FakeKlingServer

__all__ = [
    # the server and its configuration
    "FakeKlingServer",
    "Timeline",
    "Faults",
    "Validation",
    # faults
    "Fault",
    "FaultInjector",
    "FaultKind",
    "FAULT_KINDS",
    "RouteKind",
    # task kinds
    "KindSpec",
    "DEFAULT_KINDS",
    "TEXT2VIDEO",
    "IMAGE2VIDEO",
    "InvalidParameterError",
    "validate_text2video",
    "validate_image2video",
    "validate_lenient",
    # what the server stores and records
    "FakeTask",
    "Status",
    "RequestRecord",
    "CallbackRecord",
    "ServerStats",
    # helpers
    "encode_jwt",
    "verify_jwt",
    "JwtRejectedError",
    "build_mp4",
]

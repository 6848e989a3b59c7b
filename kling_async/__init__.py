"""kling_async: an asyncio-native client for the Kling text-to-video API.

Example::

    import kling_async as kling

    async with kling.KlingClient() as client:          # $COMETAPI_KEY
        task = await client.text_to_video("A beach at sunset", aspect_ratio="9:16")
        done = await client.wait(task, timeout=900)
        path = await client.download(done, "out/")

The names here (``__all__``) are what a program needs: the client, requests and tasks,
batches and their journals, configuration and the errors. Everything else stays in its
documented submodule, for instance:

* ``kling_async.testing``: the emulator (``FakeKlingServer``) and ``FakeClock``, for tests;
* ``kling_async.events``: the event classes a sink receives;
* ``kling_async.limiter``, ``kling_async.slots``, ``kling_async.scheduler``: the engine's parts;
* ``kling_async.redis_store`` (the ``redis`` extra), ``kling_async.otel`` (``otel``),
  ``kling_async.webhooks_asgi`` (``webhooks``): integrations that need an optional extra;
* ``kling_async.sync``: a blocking ``KlingClient`` for scripts and notebooks.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .as_completed import AsCompleted as AsCompleted
from .auth import AccessKeyAuth as AccessKeyAuth
from .auth import ApiKeyAuth as ApiKeyAuth
from .batch import Batch as Batch
from .batch import BatchResult as BatchResult
from .client import KlingClient as KlingClient
from .errors import AccountError as AccountError
from .errors import APIConnectionError as APIConnectionError
from .errors import APIError as APIError
from .errors import APITimeoutError as APITimeoutError
from .errors import AuthenticationError as AuthenticationError
from .errors import BadRequestError as BadRequestError
from .errors import ConcurrencyLimitError as ConcurrencyLimitError
from .errors import ConfigurationError as ConfigurationError
from .errors import ContentPolicyError as ContentPolicyError
from .errors import DownloadError as DownloadError
from .errors import GatewaySaturatedError as GatewaySaturatedError
from .errors import InvalidRequestError as InvalidRequestError
from .errors import JournalLockedError as JournalLockedError
from .errors import KlingError as KlingError
from .errors import MissingResultError as MissingResultError
from .errors import NotFoundError as NotFoundError
from .errors import PartialSubmitError as PartialSubmitError
from .errors import PermissionDeniedError as PermissionDeniedError
from .errors import RateLimitError as RateLimitError
from .errors import ResponseParseError as ResponseParseError
from .errors import ServerError as ServerError
from .errors import StorageError as StorageError
from .errors import StoreUnavailableError as StoreUnavailableError
from .errors import SubmitUncertainError as SubmitUncertainError
from .errors import TaskError as TaskError
from .errors import TaskFailedError as TaskFailedError
from .errors import ValidationError as ValidationError
from .errors import WaitTimeoutError as WaitTimeoutError
from .errors import WebhookVerificationError as WebhookVerificationError
from .journal import InMemoryJournal as InMemoryJournal
from .journal import SqliteJournal as SqliteJournal

# psycopg is imported only when a PostgresJournal opens, so this import needs no extra.
from .journal_postgres import PostgresJournal as PostgresJournal
from .kinds import IMAGE_TO_VIDEO as IMAGE_TO_VIDEO
from .kinds import KINDS as KINDS
from .kinds import TEXT_TO_VIDEO as TEXT_TO_VIDEO
from .limiter import RateLimit as RateLimit
from .media import Audio as Audio
from .media import Image as Image
from .model_rules import ModelRuleError as ModelRuleError
from .models import CameraConfig as CameraConfig
from .models import CameraControl as CameraControl
from .models import ImageToVideo as ImageToVideo
from .models import MultiPrompt as MultiPrompt
from .models import Task as Task
from .models import TaskKind as TaskKind
from .models import TaskRequest as TaskRequest
from .models import TaskStatus as TaskStatus
from .models import TextToVideo as TextToVideo
from .models import Video as Video
from .providers import COMETAPI as COMETAPI
from .providers import KLING as KLING
from .providers import KLING_STANDARD as KLING_STANDARD
from .providers import ExternalIdLookup as ExternalIdLookup
from .providers import Provider as Provider
from .providers import local_emulator as local_emulator
from .requests import AvatarImageToVideo as AvatarImageToVideo
from .requests import ImageExpand as ImageExpand
from .requests import ImageGeneration as ImageGeneration
from .requests import LegacyLipSync as LegacyLipSync
from .requests import LipSyncInput as LipSyncInput
from .requests import MotionControl as MotionControl
from .requests import MultiImageToImage as MultiImageToImage
from .requests import MultiImageToVideo as MultiImageToVideo
from .requests import OmniImage as OmniImage
from .requests import OmniVideo as OmniVideo
from .requests import TextToAudio as TextToAudio
from .requests import VideoEffects as VideoEffects
from .requests import VideoExtend as VideoExtend
from .requests import VideoToAudio as VideoToAudio
from .requests import VirtualTryOn as VirtualTryOn
from .retry import RetryPolicy as RetryPolicy
from .scheduler import PollPolicy as PollPolicy
from .signatures import verify_signature as verify_signature
from .standard import ApiStyle as ApiStyle
from .validation import RequestLimits as RequestLimits
from .watch import Watcher as Watcher
from .webhooks import WebhookReceiver as WebhookReceiver
from .webhooks import aiohttp_handler as aiohttp_handler
from .worker import BatchWorker as BatchWorker

try:
    __version__ = version("kling-async")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = [
    # the session
    "KlingClient",
    "Watcher",
    "AsCompleted",
    "WebhookReceiver",
    "aiohttp_handler",
    "verify_signature",
    # requests and tasks
    "TextToVideo",
    "ImageToVideo",
    "CameraControl",
    "CameraConfig",
    "MultiPrompt",
    "TaskRequest",
    "Task",
    "TaskStatus",
    "TaskKind",
    "Video",
    "Image",
    "Audio",
    # the other kinds' requests (kling_async.requests)
    "MultiImageToVideo",
    "VideoEffects",
    "LegacyLipSync",
    "LipSyncInput",
    "OmniVideo",
    "AvatarImageToVideo",
    "ImageGeneration",
    "VirtualTryOn",
    "TextToAudio",
    "VideoToAudio",
    "VideoExtend",
    "ImageExpand",
    "OmniImage",
    "MultiImageToImage",
    "MotionControl",
    "TEXT_TO_VIDEO",
    "IMAGE_TO_VIDEO",
    "KINDS",
    # batches and their journals
    "Batch",
    "BatchResult",
    "BatchWorker",
    "SqliteJournal",
    "PostgresJournal",
    "InMemoryJournal",
    # configuration
    "Provider",
    "COMETAPI",
    "KLING",
    "KLING_STANDARD",
    "ApiStyle",
    "ExternalIdLookup",
    "local_emulator",
    "RequestLimits",
    "RetryPolicy",
    "RateLimit",
    "PollPolicy",
    "ApiKeyAuth",
    "AccessKeyAuth",
    # errors
    "KlingError",
    "ConfigurationError",
    "InvalidRequestError",
    "ValidationError",
    "ModelRuleError",
    "APIError",
    "AuthenticationError",
    "AccountError",
    "PermissionDeniedError",
    "BadRequestError",
    "NotFoundError",
    "ContentPolicyError",
    "RateLimitError",
    "ConcurrencyLimitError",
    "GatewaySaturatedError",
    "MissingResultError",
    "ServerError",
    "StoreUnavailableError",
    "APIConnectionError",
    "APITimeoutError",
    "PartialSubmitError",
    "SubmitUncertainError",
    "ResponseParseError",
    "TaskError",
    "TaskFailedError",
    "WaitTimeoutError",
    "DownloadError",
    "StorageError",
    "JournalLockedError",
    "WebhookVerificationError",
    "__version__",
]

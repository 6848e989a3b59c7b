"""kling_async: an asyncio-native client for the Kling text-to-video API.

Example::

    import kling_async as kling

    async with kling.KlingClient() as client:          # $COMETAPI_KEY
        task = await client.text_to_video("A beach at sunset", aspect_ratio="9:16")
        done = await client.wait(task, timeout=900)
        path = await client.download(done, "out/")
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .auth import AccessKeyAuth as AccessKeyAuth
from .auth import ApiKeyAuth as ApiKeyAuth
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
from .errors import InvalidRequestError as InvalidRequestError
from .errors import KlingError as KlingError
from .errors import NotFoundError as NotFoundError
from .errors import PartialSubmitError as PartialSubmitError
from .errors import PermissionDeniedError as PermissionDeniedError
from .errors import RateLimitError as RateLimitError
from .errors import ResponseParseError as ResponseParseError
from .errors import ServerError as ServerError
from .errors import SubmitUncertainError as SubmitUncertainError
from .errors import TaskError as TaskError
from .errors import TaskFailedError as TaskFailedError
from .errors import ValidationError as ValidationError
from .errors import WaitTimeoutError as WaitTimeoutError
from .errors import WebhookVerificationError as WebhookVerificationError
from .kinds import IMAGE_TO_VIDEO as IMAGE_TO_VIDEO
from .kinds import KINDS as KINDS
from .kinds import TEXT_TO_VIDEO as TEXT_TO_VIDEO
from .limiter import RateLimit as RateLimit
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
from .providers import ExternalIdLookup as ExternalIdLookup
from .providers import Provider as Provider
from .providers import local_emulator as local_emulator
from .retry import RetryPolicy as RetryPolicy
from .scheduler import PollPolicy as PollPolicy
from .signatures import verify_signature as verify_signature
from .validation import RequestLimits as RequestLimits
from .watch import Watcher as Watcher
from .webhooks import WebhookReceiver as WebhookReceiver
from .webhooks import aiohttp_handler as aiohttp_handler

try:
    __version__ = version("kling-async")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = [
    # the session
    "KlingClient",
    "Watcher",
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
    "TEXT_TO_VIDEO",
    "IMAGE_TO_VIDEO",
    "KINDS",
    # configuration
    "Provider",
    "COMETAPI",
    "KLING",
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
    "APIError",
    "AuthenticationError",
    "AccountError",
    "PermissionDeniedError",
    "BadRequestError",
    "NotFoundError",
    "ContentPolicyError",
    "RateLimitError",
    "ConcurrencyLimitError",
    "ServerError",
    "APIConnectionError",
    "APITimeoutError",
    "PartialSubmitError",
    "SubmitUncertainError",
    "ResponseParseError",
    "TaskError",
    "TaskFailedError",
    "WaitTimeoutError",
    "DownloadError",
    "WebhookVerificationError",
    "__version__",
]

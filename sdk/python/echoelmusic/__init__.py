"""Python SDK of the Echoelmusic video generation API.

    from echoelmusic import VideoGenClient

    async with VideoGenClient(api_key="YOUR_API_KEY") as client:
        result = await client.generate("A serene lake at sunset", duration_seconds=8, resolution="1080p")
        print(result.video_url)
"""

from ._version import __version__
from .client import VideoGenClient
from .errors import (
    APIConnectionError, APITimeoutError, AuthenticationError, BadRequestError, ConflictError, EchoelError,
    GenerationFailed, GenerationTimeout, NotFoundError, PermissionDeniedError, RateLimitError, ServerError,
    ServiceUnavailableError, TaskCancelled,
)
from .models import GenreInfo, ModelInfo, ResultMetadata, Submission, TaskStatus, VideoResult
from .sync import SyncVideoGenClient

__all__ = [
    "__version__", "VideoGenClient", "SyncVideoGenClient",
    "Submission", "TaskStatus", "VideoResult", "ResultMetadata", "ModelInfo", "GenreInfo",
    "EchoelError", "APIConnectionError", "APITimeoutError", "BadRequestError", "AuthenticationError",
    "PermissionDeniedError", "NotFoundError", "ConflictError", "RateLimitError", "ServerError",
    "ServiceUnavailableError", "GenerationFailed", "TaskCancelled", "GenerationTimeout",
]

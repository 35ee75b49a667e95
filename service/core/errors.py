"""Domain errors, each carrying the HTTP status and problem ``type`` it maps to.

Data flow they guard::

    request      -> upload      -> decode & sample -> batch -> infer -> respond
    401/414/431     400/408/413    415/422/504          503      500

Core code raises these; one handler in :mod:`service.api.problems` turns them
into ``application/problem+json`` (RFC 9457). They keep a single message
argument so they pickle across the decode worker process boundary.
"""

from __future__ import annotations

PROBLEM_BASE = "https://vidlstm.dev/problems/"


class VidlstmError(Exception):
    """Base of every error the service maps to an HTTP response."""

    status: int = 500
    slug: str = "internal"
    title: str = "Internal server error"
    public: bool = True  # whether the message may reach the client

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE + self.slug

    @property
    def detail(self) -> str:
        return str(self.args[0]) if self.args else self.title

    def problem(self) -> dict[str, str | int]:
        """The RFC 9457 members that describe the error itself (an internal one's detail is
        only its title: the message is for the log)."""
        detail = self.detail if self.public else self.title
        return {"type": self.type_uri, "title": self.title, "status": self.status, "detail": detail}


class ClientError(VidlstmError):
    """The request itself is at fault (4xx)."""

    status = 400
    slug = "bad-request"
    title = "Bad request"


class NoFileError(ClientError):
    status = 400
    slug = "no-file"
    title = "No video file in the request"


class PayloadTooLargeError(ClientError):
    status = 413
    slug = "payload-too-large"
    title = "Upload too large"


class VideoError(ClientError):
    """The upload is not something the decode path accepts."""

    status = 415
    slug = "not-a-video"
    title = "Not a decodable video"


class NotAVideoError(VideoError):
    """No container or codec we can read (empty, random bytes, text, ...)."""


class NoVideoStreamError(VideoError):
    status = 422
    slug = "no-video-stream"
    title = "The file has no video stream"


class LimitExceededError(VideoError):
    """The video is valid but outside the configured limits."""

    status = 422
    slug = "limit-exceeded"
    title = "Video outside the accepted limits"


class FrameTooLargeError(LimitExceededError):
    slug = "frame-too-large"
    title = "Video frame exceeds the pixel limit"


class ParameterError(ClientError):
    status = 422
    slug = "invalid-parameter"
    title = "Invalid request parameter"


class UnauthorizedError(ClientError):
    status = 401
    slug = "unauthorized"
    title = "Missing or invalid credentials"


class DecodeTimeoutError(VidlstmError):
    status = 504
    slug = "decode-timeout"
    title = "Decoding took longer than allowed"


class UnavailableError(VidlstmError):
    """Temporarily unable to take work; the client may retry elsewhere or later."""

    status = 503
    slug = "unavailable"
    title = "Service unavailable"
    retry_after_s: int = 1


class OverloadedError(UnavailableError):
    slug = "overloaded"
    title = "Too many requests in flight"


class DrainingError(UnavailableError):
    slug = "draining"
    title = "Server is shutting down"
    retry_after_s = 2


class InternalError(VidlstmError):
    """A fault of ours; its message is logged, never sent to the client."""

    public = False


class UnsupportedMediaTypeError(ClientError):
    """The request body is neither multipart/form-data nor a raw video."""

    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported request content type"


class UploadTimeoutError(ClientError):
    """The upload paused too long, or took too long overall (a stalled or trickling client)."""

    status = 408
    slug = "upload-timeout"
    title = "Upload too slow"


class HeadersTooLargeError(ClientError):
    """The request's header fields are larger than the server accepts."""

    status = 431
    slug = "headers-too-large"
    title = "Request header fields too large"


class UriTooLongError(ClientError):
    """The request target (path and query) is longer than the server accepts."""

    status = 414
    slug = "uri-too-long"
    title = "Request URI too long"


class ClientDisconnectedError(ClientError):
    """The client went away before its upload was complete (nobody reads the answer)."""

    status = 400
    slug = "client-disconnected"
    title = "Client disconnected during upload"


class DecoderCrashedError(VideoError):
    """The decoder process died on this file (segfault, killed): the file is suspect."""

    status = 422
    slug = "decoder-crashed"
    title = "The decoder crashed on this file"


class DecodeFailedError(VideoError):
    """The decoder raised something unexpected on this file; logged with its traceback."""

    status = 415
    slug = "decode-failed"
    title = "The file could not be decoded"


class ModelNotFoundError(ClientError):
    """No model (or no version of it) by the name the request gives."""

    status = 404
    slug = "model-not-found"
    title = "No such model or version"


class ModelUnavailableError(UnavailableError):
    """The model exists but no version of it is ready (loading, failed or removed)."""

    slug = "model-unavailable"
    title = "Model not ready"
    retry_after_s = 2


class StartingError(UnavailableError):
    slug = "starting"
    title = "Server is starting"
    retry_after_s = 5


class RoutingError(ClientError):
    """A routing-level HTTP error (404, 405, ...) raised by the framework."""

    def __init__(self, status: int, title: str, slug: str) -> None:
        super().__init__(title)
        self.status = status
        self.title = title
        self.slug = slug


class JobsDisabledError(ClientError):
    """The jobs API is off: no jobs directory is configured."""

    status = 404
    slug = "jobs-disabled"
    title = "Jobs are not enabled on this server"


class JobNotFoundError(ClientError):
    status = 404
    slug = "job-not-found"
    title = "No such job"


class IdempotencyKeyReusedError(ClientError):
    """The Idempotency-Key names a job submitted with other bytes or parameters."""

    status = 422
    slug = "idempotency-key-reused"
    title = "Idempotency-Key already used for another request"


class JobsFullError(UnavailableError):
    """The jobs directory is at its size cap."""

    slug = "jobs-full"
    title = "No room for another job"
    retry_after_s = 60


class JobInterruptedError(VidlstmError):
    """The server stopped while running the job, too many times."""

    slug = "job-interrupted"
    title = "The job was interrupted too often"


class StartupError(Exception):
    """The server cannot start (bad model file, unusable temp dir): not an HTTP error."""

"""What each hostile case must get back, and the check that it did."""

from __future__ import annotations

import json
from dataclasses import dataclass

from service.api.schemas import ClassifyResponse
from service.core.errors import PROBLEM_BASE


@dataclass(frozen=True, slots=True)
class Expected:
    """200 (``slug`` None) or a problem's status and ``type`` slug."""

    status: int
    slug: str | None = None

    @property
    def label(self) -> str:
        return str(self.status) if self.slug is None else f"{self.status} {self.slug}"


OK = Expected(200)
NO_FILE = Expected(400, "no-file")
NOT_A_VIDEO = Expected(415, "not-a-video")
NO_VIDEO_STREAM = Expected(422, "no-video-stream")
FRAME_TOO_LARGE = Expected(422, "frame-too-large")
LIMIT_EXCEEDED = Expected(422, "limit-exceeded")


HTTP_LAYER = "http"  # refused by the HTTP server itself (plain text), before the app
BAD_REQUEST = Expected(400, "bad-request")
INVALID_PARAMETER = Expected(422, "invalid-parameter")
UNSUPPORTED_TYPE = Expected(415, "unsupported-media-type")
UPLOAD_TIMEOUT = Expected(408, "upload-timeout")
NO_ANSWER = Expected(0, "client-gone")  # the client hung up; nobody reads an answer


@dataclass(frozen=True, slots=True)
class Reply:
    """What came back: status (0: nothing), content type and body."""

    status: int
    content_type: str = ""
    body: bytes = b""


def mismatch(reply: Reply, expected: Expected) -> str | None:
    """Why ``reply`` is not the ``expected`` answer, or None when it is.

    A 200 must carry a result that fits the response schema; a problem must be
    ``application/problem+json`` with the expected ``type``; a refusal by the
    HTTP layer must not pretend to be one.
    """
    if reply.status != expected.status:
        return f"status {reply.status}, expected {expected.label}: {reply.body[:300]!r}"
    if expected.status == 0:
        return None
    if expected.status == 200:
        try:
            body = ClassifyResponse.model_validate_json(reply.body)
        except ValueError as err:
            return f"200 body does not fit the schema: {err}"
        if abs(sum(body.probabilities.values()) - 1) > 1e-4:
            return "probabilities do not sum to 1"
        if len(body.top) != min(5, len(body.probabilities)) or body.video.width <= 0:
            return f"implausible result: {body.model_dump_json()[:300]}"
        return None
    if expected.slug == HTTP_LAYER:
        if reply.content_type.startswith("application/problem+json"):
            return "expected the HTTP server's own refusal, got a problem"
        return None
    if reply.content_type != "application/problem+json":
        return f"content type {reply.content_type!r}: {reply.body[:300]!r}"
    problem = json.loads(reply.body)
    if (
        problem.get("type") != PROBLEM_BASE + str(expected.slug)
        or problem.get("status") != expected.status
    ):
        return f"problem {problem}, expected {expected.label}"
    return None

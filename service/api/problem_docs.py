"""How each route documents its problem responses in the OpenAPI document."""

from __future__ import annotations

from typing import Any

from service.api.schemas import Problem

PROBLEM_TEXT = {
    400: "No file in the request, or a malformed body (no-file, bad-request).",
    401: "Missing or invalid API key (unauthorized).",
    408: "The upload stalled or took too long (upload-timeout).",
    413: "Upload over the size cap, refused while streaming (payload-too-large).",
    404: "No model or version by that name (model-not-found), or no such job (job-not-found).",
    414: "Request target too long (uri-too-long).",
    415: "Not a decodable video or an unsupported content type "
    "(not-a-video, decode-failed, unsupported-media-type).",
    422: "Video outside the limits, no video stream, decoder crash, or bad parameters "
    "(limit-exceeded, frame-too-large, no-video-stream, decoder-crashed, invalid-parameter).",
    431: "Request header fields too large (headers-too-large).",
    500: "A fault of the server's; the body names the request id only (internal).",
    503: "Queue full, starting, draining or the model not ready; see Retry-After "
    "(overloaded, starting, draining, model-unavailable).",
    504: "Decoding took longer than allowed (decode-timeout).",
}


def problem_docs(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {
        code: {
            "model": Problem,
            "description": PROBLEM_TEXT.get(code, "Problem"),
            "content": {"application/problem+json": {}},
        }
        for code in codes
    }

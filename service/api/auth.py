"""Optional API keys: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``.

Keys come from ``api_keys`` and ``api_keys_file`` (see settings). A refusal is
one 401 whatever went wrong (no key, a malformed header, a wrong key), so it
tells a prober nothing; the comparison takes the same time for every key of
every length, and no key is ever logged (the access log names method, path
and status only).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from pydantic import SecretStr
from starlette.datastructures import Headers

from service.core.errors import UnauthorizedError

REFUSAL = "a valid API key is required (Authorization: Bearer KEY, or X-API-Key: KEY)"


def presented_key(headers: Headers) -> str | None:
    """The key the client sent, from either header, or None."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or None


def check_api_key(keys: Sequence[SecretStr], headers: Headers) -> str:
    """Pass when no keys are configured or the client sent one of them; returns who the
    client is: the SHA-256 of its key (hex), or ``""`` when there are no keys."""
    if not keys:
        return ""
    key = presented_key(headers)
    # Digests of equal length, so compare_digest leaks no key's length either.
    sent = _digest(key or "")
    matched = False
    for known in keys:  # every key, so timing does not tell which one matched
        matched |= hmac.compare_digest(_digest(known.get_secret_value()), sent)
    if key is None or not matched:
        raise UnauthorizedError(REFUSAL)
    return sent.hex()


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()

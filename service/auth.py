"""Optional API keys: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from pydantic import SecretStr
from starlette.datastructures import Headers

from service.errors import UnauthorizedError


def presented_key(headers: Headers) -> str | None:
    """The key the client sent, from either header, or None."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or None


def check_api_key(keys: Sequence[SecretStr], headers: Headers) -> None:
    """Pass when no keys are configured or the client sent one of them."""
    if not keys:
        return
    key = presented_key(headers)
    if key is None:
        raise UnauthorizedError("an API key is required (Authorization: Bearer or X-API-Key)")
    sent = key.encode()
    # Compare with every key, in constant time each, so timing tells nothing.
    matched = False
    for known in keys:
        matched |= hmac.compare_digest(known.get_secret_value().encode(), sent)
    if not matched:
        raise UnauthorizedError("the API key is not valid")

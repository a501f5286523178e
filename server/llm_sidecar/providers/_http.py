"""HTTP plumbing shared by the HTTP providers: error mapping and JSON bodies."""

from __future__ import annotations

import json
import time
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from llm_sidecar.core.vocabulary.errors import ErrorKind, ProviderError


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def error_for_status(status: int, headers: Any) -> ProviderError:
    """The ProviderError for a non-2xx answer. Never includes the body: it may echo input."""
    retry_after = parse_retry_after(headers.get("Retry-After"))
    if status == 429:
        return ProviderError(
            ErrorKind.RATE_LIMITED, "HTTP 429", status=status, retry_after=retry_after
        )
    if status in (401, 403):
        return ProviderError(ErrorKind.AUTH, f"HTTP {status}", status=status)
    if status in (408, 409):
        return ProviderError(
            ErrorKind.SERVER_ERROR, f"HTTP {status}", status=status, retry_after=retry_after
        )
    if 400 <= status < 500:
        return ProviderError(ErrorKind.REQUEST_REJECTED, f"HTTP {status}", status=status)
    return ProviderError(
        ErrorKind.SERVER_ERROR, f"HTTP {status}", status=status, retry_after=retry_after
    )


def connection_error(exc: BaseException) -> ProviderError:
    """Map a transport failure without quoting its text (it names the URL)."""
    return ProviderError(ErrorKind.CONNECTION, type(exc).__name__)


def obj(value: Any, what: str) -> dict[str, Any]:
    """A JSON object field: {} when absent or null, BAD_RESPONSE when it is another type."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProviderError(ErrorKind.BAD_RESPONSE, f"{what} is not an object")
    return value


def json_body(value: dict[str, Any]) -> bytes:
    """A request body as JSON. (orjson, which refuses integers beyond 64 bits: a
    caller's tool schema may hold one, and then the standard library writes it.)"""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value).encode()


def loads(raw: bytes) -> Any:
    """JSON a provider sent; ValueError when it is not. Bytes that are not UTF-8 are
    replaced rather than refused: the rest of the text may still be whole."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return orjson.loads(raw.decode("utf-8", errors="replace"))


def parse_json_body(raw: bytes, what: str = "the body") -> dict[str, Any]:
    """A JSON object a provider sent (a body, or ``what`` it is), or BAD_RESPONSE."""
    try:
        body = loads(raw)
    except ValueError:
        raise ProviderError(ErrorKind.BAD_RESPONSE, f"{what} is not JSON") from None
    if not isinstance(body, dict):
        raise ProviderError(ErrorKind.BAD_RESPONSE, f"{what} is not a JSON object")
    return body


def joined(texts: list[str], parts: list[str]) -> str:
    """The text a batch of events adds (kept in ``parts`` too), or "" for none."""
    if not texts:
        return ""
    text = texts[0] if len(texts) == 1 else "".join(texts)
    parts.append(text)
    return text

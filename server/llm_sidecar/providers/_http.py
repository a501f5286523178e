"""HTTP plumbing shared by the HTTP providers: one pooled session, error mapping, SSE."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from llm_sidecar.core.errors import ErrorKind, ProviderError


def new_session(limit: int = 256) -> aiohttp.ClientSession:
    """The process's one pooled client session (keep-alive, no per-request timeout:
    the router bounds every attempt)."""
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, ttl_dns_cache=300)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        json_serialize=json.dumps,
        raise_for_status=False,
        auto_decompress=True,
    )


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


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """A JSON object body, or BAD_RESPONSE."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise ProviderError(ErrorKind.BAD_RESPONSE, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise ProviderError(ErrorKind.BAD_RESPONSE, "the body is not a JSON object")
    return body


async def sse_events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, str]]:
    """(event, data) pairs of a text/event-stream body."""
    event = ""
    data: list[str] = []
    async for raw_line in response.content:
        line = raw_line.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:
        yield event, "\n".join(data)

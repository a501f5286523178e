"""HTTP plumbing shared by the HTTP providers: error mapping, JSON bodies, SSE."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from llm_sidecar.core.errors import ErrorKind, ProviderError


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


def joined(texts: list[str], parts: list[str]) -> str:
    """The text a batch of events adds (kept in ``parts`` too), or "" for none."""
    if not texts:
        return ""
    text = texts[0] if len(texts) == 1 else "".join(texts)
    parts.append(text)
    return text


def _events(block: bytes) -> list[tuple[str, str]]:
    """(event, data) pairs of complete SSE events (``block`` ends at an event boundary)."""
    events: list[tuple[str, str]] = []
    for raw in block.split(b"\n\n"):
        if not raw:
            continue
        event = ""
        data: list[str] = []
        for line in raw.decode("utf-8", errors="replace").split("\n"):
            if not line or line[0] == ":":
                continue
            name, _, value = line.partition(":")
            if value[:1] == " ":
                value = value[1:]
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
        if data:
            events.append((event, "\n".join(data)))
    return events


async def sse_batches(response: aiohttp.ClientResponse) -> AsyncIterator[list[tuple[str, str]]]:
    """The (event, data) pairs of a text/event-stream body, in batches: each batch is
    every complete event received by then.

    A reader that keeps up gets one event per batch, as soon as it arrives; one
    that fell behind gets all waiting events at once, so it catches up in one
    step instead of one per event (adaptive coalescing, with no added delay).
    """
    pending = b""
    async for data in response.content.iter_any():
        if b"\r" in data or pending.endswith(b"\r"):
            # CRLF and CR line ends, normalised; a CR at the very end may be half a CRLF.
            pending += data
            keep_cr = pending.endswith(b"\r")
            pending = pending.replace(b"\r\n", b"\n").rstrip(b"\r").replace(b"\r", b"\n")
            if keep_cr:
                pending += b"\r"
        else:
            pending += data
        end = pending.rfind(b"\n\n")
        if end < 0:
            continue
        block, pending = pending[: end + 2], pending[end + 2 :]
        events = _events(block)
        if events:
            yield events
    tail = _events(pending.rstrip(b"\r") + b"\n\n")
    if tail:
        yield tail

"""Server-sent events from a streamed HTTP body, read in batches: what adaptive
coalescing rests on, and the per-delta path of every stream.

Each :meth:`SSEReader.read` takes everything the connection has delivered by
then and returns every event it completes. A reader that keeps up gets one
event per read, as soon as it arrives; one that fell behind gets all waiting
events at once, and catches up in one step instead of one per event. Nothing
is ever held back to wait for more.

Per delta this is one await of aiohttp's ``readany()``, a split on blank
lines, and (for the usual one-line ``data:`` event) no further parsing before
the JSON parser, which takes the bytes as they came.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from llm_sidecar.providers._http import parse_json_body

#: (event name, data) of one event; the data as the upstream sent it.
Event = tuple[str, bytes]


def _events(block: bytes) -> list[Event]:
    """The events of ``block``, which ends at an event boundary, LF line ends only."""
    events: list[Event] = []
    for raw in block.split(b"\n\n"):
        if not raw:
            continue
        if raw.startswith(b"data: ") and b"\n" not in raw:
            events.append(("", raw[6:]))  # the usual event: one data line
            continue
        event = ""
        data: list[bytes] = []
        for line in raw.split(b"\n"):
            if not line or line[:1] == b":":
                continue
            name, _, value = line.partition(b":")
            if value[:1] == b" ":
                value = value[1:]
            if name == b"data":
                data.append(value)
            elif name == b"event":
                event = value.decode("utf-8", errors="replace")
        if data:
            events.append((event, b"\n".join(data)))
    return events


class SSEReader:
    """The events of one ``text/event-stream`` response, a batch per read."""

    __slots__ = ("_content", "_ended", "_pending")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._content = response.content
        self._pending = b""
        self._ended = False

    async def read(self) -> list[Event] | None:
        """Every event completed by what has arrived (waiting for at least one), or
        None once the body has ended."""
        while not self._ended:
            data = await self._content.readany()
            if not data:
                self._ended = True
                # A last event without its blank line still counts.
                tail = self._pending.rstrip(b"\r")
                self._pending = b""
                return _events(tail + b"\n\n") if tail else None
            events = self.feed(data)
            if events:
                return events
        return None

    def feed(self, data: bytes) -> list[Event]:
        """Take one read of the body; return the events it completes."""
        pending = self._pending + data if self._pending else data
        if b"\r" in pending:
            # CRLF and CR line ends, normalised; a CR at the very end may be half a CRLF.
            keep_cr = pending.endswith(b"\r")
            pending = pending.replace(b"\r\n", b"\n").rstrip(b"\r").replace(b"\r", b"\n")
            if keep_cr:
                pending += b"\r"
        end = pending.rfind(b"\n\n")
        if end < 0:
            self._pending = pending
            return []
        self._pending = pending[end + 2 :]
        return _events(pending[: end + 2])


def is_done(data: bytes) -> bool:
    """Whether an event's data is the chat-completions end marker."""
    return data == b"[DONE]" or data.strip() == b"[DONE]"


def event_object(data: bytes) -> dict[str, Any]:
    """An event's data as a JSON object, or BAD_RESPONSE."""
    return parse_json_body(data, "a stream event")

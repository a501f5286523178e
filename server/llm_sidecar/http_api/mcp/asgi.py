"""Runs an ASGI application (the MCP SDK's Streamable HTTP transport) for one aiohttp
request whose body the entrance has already read within its limit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

Message = MutableMapping[str, Any]
Asgi = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[Message]],
        Callable[[Message], Awaitable[None]],
    ],
    Awaitable[None],
]


def scope_of(request: web.Request, extra: dict[str, Any]) -> dict[str, Any]:
    """The ASGI scope of ``request``, with ``extra`` keys (the caller, the owner)."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) and len(peer) >= 2 else None
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": f"{request.version.major}.{request.version.minor}",
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.raw_path.encode("latin-1"),
        "root_path": "",
        "query_string": request.query_string.encode("latin-1"),
        "headers": [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in request.headers.items()
        ],
        "client": client,
        "server": None,
        "state": {},
        **extra,
    }


async def serve_asgi(
    app: Asgi,
    request: web.Request,
    body: bytes,
    extra: dict[str, Any],
    headers: dict[str, str],
) -> web.StreamResponse:
    """``app``'s answer to ``request`` (with ``headers`` added), as aiohttp's response."""
    replier = _Replier(request, headers)
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        # Nothing more will come: wait until the caller goes away (the handler is then
        # cancelled, as every handler is when its client disconnects).
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}  # pragma: no cover

    await app(scope_of(request, extra), receive, replier.send)
    return await replier.finish()


class _Replier:
    """ASGI ``send`` over an aiohttp StreamResponse: one body is sent with its length,
    a body in parts (an SSE stream) is sent as it comes."""

    __slots__ = ("_done", "_headers", "_request", "response")

    def __init__(self, request: web.Request, headers: dict[str, str]) -> None:
        self._request = request
        self._headers = headers
        self._done = False
        self.response: web.StreamResponse | None = None

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            pairs = CIMultiDict(
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", ())
            )
            pairs.update(self._headers)
            self.response = web.StreamResponse(status=message["status"], headers=pairs)
            return
        if kind != "http.response.body" or self._done:
            return
        response = self.response
        assert response is not None, "a body before the response's start"
        chunk = bytes(message.get("body", b""))
        more = bool(message.get("more_body", False))
        if not response.prepared:
            if not more:
                response.content_length = len(chunk)
            await response.prepare(self._request)
        if chunk:
            await response.write(chunk)
        if not more:
            self._done = True
            await response.write_eof()

    async def finish(self) -> web.StreamResponse:
        response = self.response
        if response is None:
            raise RuntimeError("the MCP transport sent no response")
        if not self._done:
            if not response.prepared:
                await response.prepare(self._request)
            await response.write_eof()
        return response

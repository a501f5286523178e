"""The HTTP side of the entrance: what aiohttp hands over (headers, the peer, the
route's template) goes to :class:`~llm_sidecar.entrance.Entrance`, which decides who
the caller is and writes the call's record; here are only HTTP's own parts: the body
read within its limit, the deadline header, the response headers, and each API's
error body and status."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import StreamReader, web
from opentelemetry.trace import SpanKind

from llm_sidecar.core.observability import Observability
from llm_sidecar.core.vocabulary.context import UserExecutionContext
from llm_sidecar.core.vocabulary.errors import (
    InvalidRequestError,
    RequestTooLargeError,
    SidecarError,
)
from llm_sidecar.core.vocabulary.models import AskResult, EmbedResult
from llm_sidecar.entrance import CallScope, Entrance, read_incoming
from llm_sidecar.entrance.incoming import Incoming
from llm_sidecar.http_api.errors import Dialect, HttpError, Refusal, refusal_for
from llm_sidecar.http_api.fields import Fields
from llm_sidecar.telemetry.access import AccessLog

#: A header a caller may set to give a call less time than its route's default.
TIMEOUT_HEADER = "x-request-timeout"
#: Methods an access line names as sent; any other reads OTHER.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


@dataclass(slots=True)
class HttpCall:
    """One request on its way: who it is for, when it must end, what it answered."""

    request: web.Request
    dialect: Dialect
    scope: CallScope
    ctx: UserExecutionContext | None = None
    body: Fields | None = None
    #: The body as sent, for an endpoint that parses its own (``json_body=False``).
    raw: bytes = b""
    started: float = field(default_factory=time.monotonic)
    #: Headers every response to this call carries (the request id, then the answer's).
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def request_id(self) -> str:
        return self.scope.request_id

    def deadline(self, route_seconds: float) -> float:
        """When the call must end: its route's default, or sooner when the caller's
        ``x-request-timeout`` says so (monotonic clock)."""
        seconds = route_seconds
        given = self.request.headers.get(TIMEOUT_HEADER)
        if given is not None:
            try:
                asked = float(given)
            except ValueError:
                asked = -1.0
            if not 0 < asked <= 86400:
                raise InvalidRequestError(TIMEOUT_HEADER, "must be seconds, above 0")
            seconds = min(seconds, asked)
        return self.started + seconds

    def answered(self, result: AskResult) -> None:
        """Take the answer's figures for the access log and the response headers."""
        self.scope.answered(result)
        self.headers.update(
            answer_headers(result.route, result.provider, result.cached, result.cost_micro_usd)
        )

    def embedded(self, result: EmbedResult) -> None:
        """Take an embedding call's figures (``x-llm-cached``: every input was cached)."""
        self.scope.embedded(result)
        self.headers.update(
            answer_headers(result.route, result.provider, all(result.cached), result.cost_micro_usd)
        )
        self.headers["x-llm-cached-inputs"] = str(sum(result.cached))

    def failed_mid_stream(self, exc: SidecarError, refusal: Refusal) -> None:
        """A stream that had begun ended in ``exc`` (its error event says so)."""
        self.scope.refused(exc, str(refusal.status), exc.reason, {})

    def same_user(self, given: Any, field: str) -> None:
        """A user named in the body must be the caller's ``x-user-id``: two answers to
        "who is this for" in one request are refused, not guessed between."""
        assert self.ctx is not None
        if given is not None and given != self.ctx.user_id:
            raise InvalidRequestError(field, "differs from the x-user-id header")

    def json(self, body: dict[str, Any] | bytes) -> web.Response:
        """A JSON answer (a document, or its bytes) carrying this call's headers."""
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        return web.Response(body=raw, content_type="application/json", headers=self.headers)


def answer_headers(route: str, provider: str, cached: bool, cost: int | None) -> dict[str, str]:
    """The sidecar's extras, in headers (the bodies stay the APIs' own)."""
    headers = {
        "x-llm-route": route,
        "x-llm-provider": provider,
        "x-llm-cached": "true" if cached else "false",
    }
    if cost is not None:
        headers["x-llm-cost-micro-usd"] = str(cost)
    return headers


Handler = Callable[[HttpCall], Awaitable[web.StreamResponse]]


class Edge:
    """Runs the handlers of the HTTP APIs through the entrance."""

    def __init__(
        self,
        obs: Observability,
        access: AccessLog,
        *,
        token: str = "",
        max_request_bytes: int,
    ) -> None:
        self.obs = obs
        self.entrance = Entrance(obs, access, token=token)
        self.max_request_bytes = max_request_bytes

    def route(
        self, dialect: Dialect, handler: Handler, *, needs_user: bool = True, json_body: bool = True
    ) -> Any:
        """An aiohttp handler running ``handler`` for requests of ``dialect``'s API (a POST's
        body parsed as JSON, or kept as sent when ``json_body`` is False)."""

        async def handle(request: web.Request) -> web.StreamResponse:
            return await self.serve(request, dialect, handler, needs_user, json_body)

        return handle

    async def serve(
        self,
        request: web.Request,
        dialect: Dialect,
        handler: Handler,
        needs_user: bool,
        json_body: bool = True,
    ) -> web.StreamResponse:
        # The route's template, never the path: a path may hold a response id.
        route = request.match_info.route.resource
        template = route.canonical if route is not None else request.path
        scope = self.entrance.open(f"{request.method} {template}", _incoming(request))
        attributes = {"http.request.method": request.method, "http.route": template}
        with self.obs.span(
            scope.record.method, SpanKind.SERVER, attributes, scope.parent()
        ) as span:
            call = HttpCall(request, dialect, scope)
            call.headers["x-request-id"] = scope.request_id
            status = 500
            try:
                call.ctx = scope.admit(span, local=_local(request), needs_user=needs_user)
                if request.method == "POST":
                    raw = await self._body(request)
                    if json_body:
                        call.body = Fields(_parse(raw))
                    else:
                        call.raw = raw
                response = await handler(call)
                status = response.status
                return response
            except asyncio.CancelledError:
                scope.cancelled()
                status = 499
                raise
            except Exception as exc:
                response = self._refused(call, exc)
                status = response.status
                return response
            finally:
                if scope.record.status == "OK" and status != 200:
                    scope.record.status = str(status)
                scope.done(self.obs.http_duration, _metric(request.method, template, status))

    def unrouted(self, request: web.Request, error: HttpError, start: float) -> web.Response:
        """The answer to an unknown path or method, logged like any request: named by its
        method alone (a path may hold anything), under the path's API's error shape."""
        method = request.method if request.method in _METHODS else "OTHER"
        scope = self.entrance.open(f"{method} (no route)", _incoming(request))
        scope.started = start
        refusal = refusal_for(error)
        scope.refused(error, str(refusal.status), error.reason, {})
        scope.done(self.obs.http_duration, _metric(method, "(no route)", refusal.status))
        # Anthropic's SDK reads its own error shape under its own path.
        dialect: Dialect = "anthropic" if request.path.startswith("/v1/messages") else "openai"
        return _refusal_response(refusal, dialect, scope.request_id)

    async def _body(self, request: web.Request) -> bytes:
        declared = request.content_length
        if declared is not None and declared > self.max_request_bytes:
            raise _too_large(declared, self.max_request_bytes)
        return await read_body(request.content, self.max_request_bytes)

    def _refused(self, call: HttpCall, exc: BaseException) -> web.Response:
        refusal = refusal_for(exc)
        reason = exc.reason if isinstance(exc, SidecarError | HttpError) else "INTERNAL"
        if refusal.status == 500:
            reason = "INTERNAL"
        attributes = {"http.response.status_code": refusal.status}
        call.scope.refused(exc, str(refusal.status), reason, attributes)
        return _refusal_response(refusal, call.dialect, call.request_id)


def _parse(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise HttpError(400, "the body is not JSON", reason="NOT_JSON") from None


def _incoming(request: web.Request) -> Incoming:
    """The headers the entrance reads (their names lower-cased, as gRPC's are)."""
    return read_incoming([(name.lower(), value) for name, value in request.headers.items()])


def _metric(method: str, route: str, status: int) -> dict[str, Any]:
    return {
        "http.request.method": method,
        "http.route": route,
        "http.response.status_code": status,
    }


def _refusal_response(refusal: Refusal, dialect: Dialect, request_id: str) -> web.Response:
    """A refusal in ``dialect``'s error shape, with its headers and the request id."""
    return web.Response(
        body=orjson.dumps(refusal.body(dialect)),
        status=refusal.status,
        content_type="application/json",
        headers={**refusal.headers, "x-request-id": request_id},
    )


def _local(request: web.Request) -> bool:
    """Whether the request came over the Unix socket (file permissions guard it), or
    from no transport at all (an in-process test client)."""
    transport = request.transport
    if transport is None:
        return True
    sock = transport.get_extra_info("socket")
    return sock is not None and sock.family == socket.AF_UNIX


async def read_body(content: StreamReader, limit: int) -> bytes:
    """The whole body, however many writes the client sent it in, or 413 once it is
    past ``limit``. One ``read(n)`` returns what has arrived so far, not ``n`` bytes:
    a body over a few hundred KB came in several and was cut (then "not JSON")."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await content.read(limit + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
    return b"".join(chunks)


def _too_large(size: int, limit: int) -> RequestTooLargeError:
    return RequestTooLargeError("request", size, limit, setting="server.max_request_bytes")

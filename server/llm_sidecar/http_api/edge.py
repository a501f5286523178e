"""What every HTTP request goes through, the HTTP twin of ``transport/rpc.py``: the
bearer token, the user context from headers, the request id, a server span that
continues the caller's trace, the body read within its limit, the deadline, the
error body of the request's API, the metrics and the access log."""

from __future__ import annotations

import asyncio
import hmac
import itertools
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import StreamReader, web
from opentelemetry import propagate
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from llm_sidecar.core.observability import Observability
from llm_sidecar.core.vocabulary.context import (
    CONTEXT_KEYS,
    REQUEST_ID_KEY,
    UserExecutionContext,
    validate_id,
)
from llm_sidecar.core.vocabulary.errors import (
    InvalidContextError,
    InvalidRequestError,
    RequestTooLargeError,
)
from llm_sidecar.core.vocabulary.models import AskResult, EmbedResult
from llm_sidecar.http_api.errors import Dialect, HttpError, Refusal, refusal_for
from llm_sidecar.http_api.fields import Fields
from llm_sidecar.telemetry.access import AccessLog, CallRecord
from llm_sidecar.telemetry.logs import bind_request_id, unbind_request_id

#: A header a caller may set to give a call less time than its route's default.
TIMEOUT_HEADER = "x-request-timeout"
_TRACE_HEADERS = ("traceparent", "tracestate", "baggage")
#: Methods an access line names as sent; any other reads OTHER.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_PROCESS_PART = os.urandom(6).hex()
_SERIAL = itertools.count(1)


def new_request_id() -> str:
    """A request id for a call that brought none."""
    return f"sc-{_PROCESS_PART}-h{next(_SERIAL):x}"


@dataclass(slots=True)
class HttpCall:
    """One request on its way: who it is for, when it must end, what it answered."""

    request: web.Request
    dialect: Dialect
    record: CallRecord
    span: Span
    ctx: UserExecutionContext | None = None
    body: Fields | None = None
    started: float = field(default_factory=time.monotonic)
    #: Headers every response to this call carries (the request id, then the answer's).
    headers: dict[str, str] = field(default_factory=dict)

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
        self.record.answered(result)
        self.headers.update(
            answer_headers(result.route, result.provider, result.cached, result.cost_micro_usd)
        )

    def embedded(self, result: EmbedResult) -> None:
        """Take an embedding call's figures (``x-llm-cached``: every input was cached)."""
        self.record.embedded(result)
        self.headers.update(
            answer_headers(result.route, result.provider, all(result.cached), result.cost_micro_usd)
        )
        self.headers["x-llm-cached-inputs"] = str(sum(result.cached))

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
    """Runs the handlers of the HTTP APIs under the common policy."""

    def __init__(
        self,
        obs: Observability,
        access: AccessLog,
        *,
        token: str = "",
        max_request_bytes: int,
    ) -> None:
        self.obs = obs
        self.access = access
        self.token = token
        self.max_request_bytes = max_request_bytes

    def route(self, dialect: Dialect, handler: Handler, *, needs_user: bool = True) -> Any:
        """An aiohttp handler running ``handler`` for requests of ``dialect``'s API."""

        async def handle(request: web.Request) -> web.StreamResponse:
            return await self.serve(request, dialect, handler, needs_user)

        return handle

    async def serve(
        self, request: web.Request, dialect: Dialect, handler: Handler, needs_user: bool
    ) -> web.StreamResponse:
        start = time.perf_counter()
        # The route's template, never the path: a path may hold a response id.
        route = request.match_info.route.resource
        template = route.canonical if route is not None else request.path
        name = f"{request.method} {template}"
        record = CallRecord(name, self._request_id(request))
        # A connection's task serves its requests one after another: unbound at the end.
        bound = bind_request_id(record.request_id)
        carrier = {k: v for k in _TRACE_HEADERS if (v := request.headers.get(k)) is not None}
        attributes = {"http.request.method": request.method, "http.route": template}
        with self.obs.span(
            name, SpanKind.SERVER, attributes, propagate.extract(carrier) if carrier else None
        ) as span:
            call = HttpCall(request, dialect, record, span)
            call.headers["x-request-id"] = record.request_id
            status = 500
            try:
                await self._enter(call, needs_user)
                response = await handler(call)
                status = response.status
                return response
            except asyncio.CancelledError:
                record.failed("CANCELLED", "CLIENT_DISCONNECTED", record.attempts)
                status = 499
                raise
            except Exception as exc:
                response = self._refused(call, exc)
                status = response.status
                return response
            finally:
                self._done(call, start, status)
                unbind_request_id(bound)

    def unrouted(self, request: web.Request, error: HttpError, start: float) -> web.Response:
        """The answer to an unknown path or method, logged like any request: named by its
        method alone (a path may hold anything), under the path's API's error shape."""
        method = request.method if request.method in _METHODS else "OTHER"
        record = CallRecord(f"{method} (no route)", self._request_id(request))
        refusal = refusal_for(error)
        record.failed(str(refusal.status), "no_route")
        self.access.write(record, time.perf_counter() - start)
        # Anthropic's SDK reads its own error shape under its own path.
        dialect: Dialect = "anthropic" if request.path.startswith("/v1/messages") else "openai"
        return _refusal_response(refusal, dialect, record.request_id)

    def _request_id(self, request: web.Request) -> str:
        given = request.headers.get(REQUEST_ID_KEY)
        try:
            if validate_id(REQUEST_ID_KEY, given, required=False) is not None:
                return given  # type: ignore[return-value]  # validated: not None
        except InvalidContextError:
            pass  # refused when the context is read; never echoed
        return new_request_id()

    async def _enter(self, call: HttpCall, needs_user: bool) -> None:
        request = call.request
        if self.token and request.transport is not None and not _on_unix_socket(request):
            _check_token(request, self.token)
        if needs_user:
            call.ctx = _context(request, call.record.request_id)
            ref = self.obs.user_ref(call.ctx.user_id)
            call.record.user = ref
            if ref and call.span.is_recording():
                raw = self.obs.user_id_mode == "raw"
                call.span.set_attribute("enduser.id" if raw else "enduser.pseudo.id", ref)
        if request.method == "POST":
            call.body = Fields(await self._json(request))

    async def _json(self, request: web.Request) -> Any:
        declared = request.content_length
        if declared is not None and declared > self.max_request_bytes:
            raise _too_large(declared, self.max_request_bytes)
        raw = await read_body(request.content, self.max_request_bytes)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise HttpError(400, "the body is not JSON") from None

    def _refused(self, call: HttpCall, exc: BaseException) -> web.Response:
        refusal = refusal_for(exc)
        call.record.failed(str(refusal.status), refusal.code, len(getattr(exc, "attempts", ())))
        span = call.span
        if span.is_recording():
            span.set_attribute("http.response.status_code", refusal.status)
            span.set_attribute("error.type", refusal.code)
            span.set_status(Status(StatusCode.ERROR, str(refusal.status)))
        return _refusal_response(refusal, call.dialect, call.record.request_id)

    def _done(self, call: HttpCall, start: float, status: int) -> None:
        elapsed = time.perf_counter() - start
        self.obs.http_duration.record(
            elapsed,
            {
                "http.request.method": call.request.method,
                "http.route": call.record.method.partition(" ")[2],
                "http.response.status_code": status,
            },
        )
        if call.record.status == "OK" and status != 200:
            call.record.status = str(status)
        self.access.write(call.record, elapsed)


def _refusal_response(refusal: Refusal, dialect: Dialect, request_id: str) -> web.Response:
    """A refusal in ``dialect``'s error shape, with its headers and the request id."""
    return web.Response(
        body=orjson.dumps(refusal.body(dialect)),
        status=refusal.status,
        content_type="application/json",
        headers={**refusal.headers, "x-request-id": request_id},
    )


def _on_unix_socket(request: web.Request) -> bool:
    """Whether the request came over the Unix socket (file permissions guard it)."""
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    return sock is not None and sock.family == socket.AF_UNIX


def _check_token(request: web.Request, token: str) -> None:
    """The sidecar's token, as ``Authorization: Bearer`` (the OpenAI SDKs) or
    ``x-api-key`` (the Anthropic SDK); compared in constant time."""
    presented = request.headers.get("x-api-key", "")
    scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and bearer:
        presented = bearer
    if not presented or not hmac.compare_digest(
        presented.encode("utf-8", "replace"), token.encode("utf-8")
    ):
        raise InvalidContextError(
            "authorization", "must carry the sidecar's token (Bearer or x-api-key)", missing=True
        )


def _context(request: web.Request, request_id: str) -> UserExecutionContext:
    """The user context from headers named like the gRPC metadata, each at most once."""
    values: dict[str, str] = {}
    for key in CONTEXT_KEYS:
        found = request.headers.getall(key, [])
        if len(found) > 1:
            raise InvalidContextError(key, "appears more than once")
        if found:
            values[key] = found[0]
    values.setdefault(REQUEST_ID_KEY, request_id)
    return UserExecutionContext.from_metadata(values)


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

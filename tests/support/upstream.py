"""An OpenAI- and Anthropic-compatible upstream served by aiohttp, with fault injection.

It answers deterministically from what it was sent, so tests can check that an
answer belongs to the request (and user) it came back to, and it records every
request so tests can check what a provider actually received.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.agent_upstream import (
    openai_tool_chunks,
    openai_tool_reply,
    planned_calls,
    tool_results,
)
from tests.support.anthropic_upstream import AnthropicFormat, stream_pieces
from tests.support.fault_mode import MODE
from tests.support.wire_formats import (
    embeddings_reply,
    openai_chunk,
    openai_reply,
    request_problem,
)

MODES = (
    "healthy",
    "error",
    "hang",
    "reset",
    "bad_json",
    "rate_limited",
    "bad_request",
    "refuse",
    "stream_break",  # a stream whose connection drops after two chunks
    "bad_event",  # a stream whose first event is JSON but not an object
    "wrong_count",  # embeddings: one vector fewer than the inputs
    "wrong_dimension",  # embeddings: vectors one longer than asked
)

#: The fake embedding model's dimension when a request sets none.
EMBEDDING_DIMENSIONS = 8


def fake_vector(text: str, dimensions: int) -> list[float]:
    """The fake model's vector for ``text``: deterministic, and exact in float32 (each
    value a multiple of 1/128), so a test can compare what it got bit for bit."""
    digest = hashlib.shake_256(text.encode("utf-8")).digest(dimensions)
    return [(byte - 128) / 128 for byte in digest]


@dataclass
class Recorded:
    """One request the upstream received."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def messages(self) -> list[dict[str, str]]:
        return list(self.body.get("messages", []))

    @property
    def last_user(self) -> str:
        users = [text_of(m.get("content")) for m in self.messages if m.get("role") == "user"]
        return users[-1] if users else ""

    @property
    def inputs(self) -> list[str]:
        """The texts of an embeddings request."""
        given = self.body.get("input", [])
        return [given] if isinstance(given, str) else list(given)


def words(text: str) -> int:
    return len(text.split())


def text_of(content: Any) -> str:
    """A message's text, whether its content is a string or a list of parts/blocks
    (OpenAI text parts, Anthropic text and tool_result blocks)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for block in content:
        if block.get("type") == "text":
            texts.append(block.get("text", ""))
        elif block.get("type") == "tool_result":
            texts.append(text_of(block.get("content")))
    return " ".join(t for t in texts if t)


@dataclass
class FakeUpstream(AnthropicFormat):
    """Start with ``await up.start()``; switch faults with ``up.mode = ...``."""

    name: str = "up"
    mode: str = "healthy"
    error_status: int = 503
    retry_after: str | None = None
    latency: float = 0.0
    stream_chunk_delay: float = 0.0
    #: Stream deltas of this many characters (0: a word each).
    stream_piece_chars: int = 0
    #: Report usage in answers (off: the sidecar must estimate).
    report_usage: bool = True
    #: Parts of the reported usage: input tokens read from / written to the prompt
    #: cache, and reasoning output tokens (each reported in the provider's own format).
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    #: Report exactly this many completion tokens (a model that spends its whole
    #: max_tokens), whatever the answer's length; None: count the answer's words.
    completion_tokens: int | None = None
    #: The finish reason of OpenAI-format answers ("length": the output cap was hit).
    finish_reason: str = "stop"
    #: Text a structured request is answered with (None: built from the schema).
    json_answer: str | None = None
    #: Apply ``mode`` to this many more chat requests, then heal (None: forever).
    fault_budget: int | None = None
    #: Apply ``mode`` only to requests whose last user message contains this.
    fail_when: str | None = None
    #: Set a cookie ``session=<this>`` on every non-streamed answer (None: no cookie).
    set_cookie: str | None = None
    requests: list[Recorded] = field(default_factory=list)
    #: Arguments of every tool call it makes (None: {"query": <the user's text>}).
    tool_arguments: str | None = None
    #: Request bodies the official SDKs' types rejected (each answered with HTTP 400).
    format_errors: list[str] = field(default_factory=list)
    probes: int = 0
    #: Streams whose client went away before the end.
    streams_aborted: int = 0
    streams_completed: int = 0
    #: Hung requests whose caller went away (the sidecar cancelled the call).
    hangs_abandoned: int = 0
    _stopping: bool = False
    _runner: web.AppRunner | None = None
    port: int = 0
    _hangs: list[asyncio.Future[None]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def chat_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith(("/chat/completions", "/messages"))]

    @property
    def embedding_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/embeddings")]

    @web.middleware
    async def _cookies(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Like a gateway with sticky sessions: an answer sets a cookie, when asked to
        (a streamed one has sent its headers already)."""
        response: web.StreamResponse = await handler(request)
        if self.set_cookie is not None and not response.prepared:
            response.set_cookie("session", self.set_cookie)
        return response

    async def start(self, port: int = 0) -> FakeUpstream:
        # Providers take bodies far over the sidecar's own limit (images, long histories).
        app = web.Application(middlewares=[self._cookies], client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/messages", self._anthropic)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        # handler_cancellation: a handler learns when its caller hangs up, as real servers do.
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        self._stopping = True
        for hang in self._hangs:
            if not hang.done():
                hang.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- answers -----------------------------------------------------------------

    def answer_text(self, body: dict[str, Any]) -> str:
        """What a healthy upstream says: its name and the last user message, echoed
        (after tool calls: the tool results it was sent)."""
        msgs = body.get("messages", [])
        results = tool_results("openai", body) or tool_results("anthropic", body)
        if results:
            return f"{self.name} says: tools answered {'; '.join(results)} (turn {len(msgs)})"
        last = next(
            (text_of(m.get("content")) for m in reversed(msgs) if m.get("role") == "user"), ""
        )
        return f"{self.name} says: {last} (turn {len(msgs)})"

    def structured_text(self, body: dict[str, Any]) -> str:
        if self.json_answer is not None:
            return self.json_answer
        schema = None
        rf = body.get("response_format")
        if rf:
            schema = rf.get("json_schema", {}).get("schema")
        msgs = body.get("messages", [])
        last = next(
            (text_of(m.get("content")) for m in reversed(msgs) if m.get("role") == "user"), ""
        )
        doc: dict[str, Any] = {}
        for name, sub in (schema or {}).get("properties", {}).items():
            kind = sub.get("type")
            doc[name] = {
                "string": last,
                "integer": words(last),
                "number": 0.5,
                "boolean": True,
            }.get(kind)
        return json.dumps(doc)

    def usage(self, body: dict[str, Any], text: str) -> dict[str, Any]:
        """OpenAI's usage object for this request (every input and output token)."""
        prompt = sum(words(text_of(m.get("content"))) for m in body.get("messages", [])) + 3
        prompt += self.cached_tokens + self.cache_write_tokens
        completion = words(text) + self.reasoning_tokens
        if self.completion_tokens is not None:
            completion = self.completion_tokens
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if self.cached_tokens:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        if self.reasoning_tokens:
            usage["completion_tokens_details"] = {"reasoning_tokens": self.reasoning_tokens}
        return usage

    def _mode_for(self, body: dict[str, Any] | None) -> str:
        if self.mode == "healthy":
            return "healthy"
        if self.fail_when is not None and body is not None:
            msgs = body.get("messages", [])
            last = next(
                (text_of(m.get("content")) for m in reversed(msgs) if m.get("role") == "user"), ""
            )
            if "input" in body:  # embeddings: any of the texts
                last = " ".join(Recorded("", body, {}).inputs)
            if self.fail_when not in last:
                return "healthy"
        if self.fault_budget is not None:
            if self.fault_budget <= 0:
                self.mode, self.fault_budget = "healthy", None
                return "healthy"
            self.fault_budget -= 1
        return self.mode

    async def _fault(
        self, request: web.Request, body: dict[str, Any] | None = None
    ) -> web.StreamResponse | None:
        if self.latency:
            await asyncio.sleep(self.latency)
        mode = self._mode_for(body) if body is not None else self.mode
        request[MODE] = mode
        if mode in ("stream_break", "bad_event"):
            return None
        if mode in ("error",):
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return web.json_response(
                {"error": {"message": "boom"}}, status=self.error_status, headers=headers
            )
        if mode == "rate_limited":
            return web.json_response(
                {"error": {"message": "slow down"}},
                status=429,
                headers={"Retry-After": self.retry_after or "0"},
            )
        if mode == "bad_request":
            return web.json_response({"error": {"message": "bad request"}}, status=400)
        if mode == "hang":
            hang: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._hangs.append(hang)
            try:
                await hang
            except asyncio.CancelledError:
                if not self._stopping:
                    self.hangs_abandoned += 1
                raise
        if mode in ("reset", "refuse"):
            transport = request.transport
            if transport is not None:
                transport.abort()
            raise asyncio.CancelledError
        if mode == "bad_json":
            return web.Response(text="{not json", content_type="application/json")
        return None

    async def _sse(
        self, request: web.Request, events: list[tuple[str, dict[str, Any]]], *, done: bool
    ) -> web.StreamResponse:
        """An event stream of ready-made events (with ``data: [DONE]`` for OpenAI)."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for name, data in events:
            head = f"event: {name}\n" if name else ""
            await response.write(f"{head}data: {json.dumps(data)}\n\n".encode())
        if done:
            await response.write(b"data: [DONE]\n\n")
        self.streams_completed += 1
        return response

    async def _record(self, request: web.Request) -> dict[str, Any]:
        body = await request.json()
        self.requests.append(Recorded(request.path, body, dict(request.headers)))
        kind = "anthropic" if request.path.endswith("/messages") else "openai"
        kind = "embeddings" if request.path.endswith("/embeddings") else kind
        problem = request_problem(kind, body)
        if problem is not None:
            self.format_errors.append(problem)
            raise web.HTTPBadRequest(text=json.dumps({"error": {"message": "invalid request"}}))
        return body

    async def _models(self, request: web.Request) -> web.StreamResponse:
        self.probes += 1
        if self.mode in ("error", "hang", "reset", "refuse", "rate_limited") and not self.fail_when:
            fault = await self._fault(request)
            if fault is not None:
                return fault
        return web.json_response({"object": "list", "data": [{"id": "fake-model"}]})

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        """OpenAI's embeddings answer: a vector per input (the fake model's), in order,
        as floats or base64, with every input's words as its tokens."""
        body = await self._record(request)
        fault = await self._fault(request, body)
        if fault is not None:
            return fault
        texts = Recorded(request.path, body, {}).inputs
        dimensions = int(body.get("dimensions") or EMBEDDING_DIMENSIONS)
        mode = request[MODE]
        if mode == "wrong_count":
            texts = texts[:-1]
        if mode == "wrong_dimension":
            dimensions += 1
        vectors = [fake_vector(text, dimensions) for text in texts]
        encode: Any = _base64 if body.get("encoding_format") == "base64" else list
        tokens = sum(max(1, words(text)) for text in texts)
        reply: dict[str, Any] = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": encode(v)}
                for i, v in enumerate(vectors)
            ],
            "model": body.get("model", "fake-embedding"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        if not self.report_usage:  # some compatible servers send none: the sidecar estimates
            del reply["usage"]
            return web.json_response(reply)
        return web.json_response(embeddings_reply(reply))

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        fault = await self._fault(request, body)
        if fault is not None:
            return fault
        calls = planned_calls("openai", body, self.tool_arguments)
        if calls:
            rid = f"chatcmpl-{self.name}-{len(self.requests)}"
            usage = self.usage(body, "") if self.report_usage else None
            if body.get("stream"):
                chunks = openai_tool_chunks(body, rid, calls, usage)
                return await self._sse(request, [("", c) for c in chunks], done=True)
            return web.json_response(openai_tool_reply(body, rid, calls, usage))
        structured = "response_format" in body
        text = self.structured_text(body) if structured else self.answer_text(body)
        if body.get("stream"):
            return await self._stream_openai(request, body, text)
        reply: dict[str, Any] = {
            "id": f"chatcmpl-{self.name}-{len(self.requests)}",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "fake-model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": self.finish_reason,
                }
            ],
        }
        if self.report_usage:
            reply["usage"] = self.usage(body, text)
        return web.json_response(openai_reply(reply))

    async def _stream_openai(
        self, request: web.Request, body: dict[str, Any], text: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        rid = f"chatcmpl-{self.name}-{len(self.requests)}"
        head = {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": 0,
            "model": body.get("model"),
        }
        pieces = stream_pieces(text, self.stream_piece_chars)
        try:
            for n, piece in enumerate(pieces):
                if n == 2 and request.get(MODE) == "stream_break":
                    # Let the two chunks be read before the connection drops: a client
                    # discards what it buffered when it sees a truncated body.
                    await asyncio.sleep(0.05)
                    if request.transport is not None:
                        request.transport.close()
                    return response
                chunk = {
                    **head,
                    "choices": [{"index": 0, "delta": {"content": piece}}],
                }
                await response.write(f"data: {json.dumps(openai_chunk(chunk))}\n\n".encode())
                if self.stream_chunk_delay:
                    await asyncio.sleep(self.stream_chunk_delay)
            final: dict[str, Any] = {
                **head,
                "choices": [{"index": 0, "delta": {}, "finish_reason": self.finish_reason}],
            }
            await response.write(f"data: {json.dumps(openai_chunk(final))}\n\n".encode())
            if self.report_usage:
                usage = {**head, "choices": [], "usage": self.usage(body, text)}
                await response.write(f"data: {json.dumps(openai_chunk(usage))}\n\n".encode())
            await response.write(b"data: [DONE]\n\n")
        except (ConnectionResetError, asyncio.CancelledError):
            self.streams_aborted += 1
            raise
        self.streams_completed += 1
        return response


def _base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")

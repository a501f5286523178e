"""An OpenAI-compatible upstream that bills every answer it sends, per user, and whose
faults a chaos schedule switches: 500, 503, 429 with Retry-After, hang, reset, slow."""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

#: Every soak prompt names its user: "[user-17 call 42] ...".
_USER = re.compile(r"\[(user-\d+) call \d+\]")

FAULTS = ("server_error", "unavailable", "rate_limited", "hang", "reset", "slow")


@dataclass
class Bill:
    """What one upstream billed one user."""

    answers: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: (prompt, completion) of each answer, to price each one as the sidecar does.
    each: list[tuple[int, int]] = field(default_factory=list)


class ChaosUpstream:
    """Answers chat completions (JSON or SSE) and bills each answer it sends."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.mode = "healthy"
        self.bills: dict[str, Bill] = defaultdict(Bill)
        self.requests = 0
        self.faults: dict[str, int] = defaultdict(int)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> ChaosUpstream:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.shutdown()
            await self._runner.cleanup()

    async def _models(self, request: web.Request) -> web.Response:
        if self.mode in ("server_error", "unavailable", "hang", "reset"):
            return web.json_response({}, status=503)
        return web.json_response({"object": "list", "data": [{"id": "soak"}]})

    async def _fault(self, request: web.Request) -> web.StreamResponse | None:
        mode = self.mode
        if mode == "healthy":
            return None
        self.faults[mode] += 1
        if mode == "server_error":
            return web.json_response({"error": {"message": "boom"}}, status=500)
        if mode == "unavailable":
            return web.json_response({"error": {"message": "busy"}}, status=503)
        if mode == "rate_limited":
            return web.json_response(
                {"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "1"}
            )
        if mode == "hang":
            await asyncio.sleep(3600)  # until the sidecar gives up on the attempt
        if mode == "reset":
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        if mode == "slow":  # slow, but inside the attempt timeout: answered and billed
            await asyncio.sleep(random.uniform(0.2, 0.8))
        return None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        body = await request.json()
        refused = await self._fault(request)
        if refused is not None:
            return refused
        prompt_text = " ".join(str(m.get("content") or "") for m in body["messages"])
        found = _USER.findall(prompt_text)
        user = found[-1] if found else "unknown"
        prompt_tokens = len(prompt_text.split()) + len(body["messages"])
        text = f"{self.name} answers turn {len(body['messages'])} of {user}"
        completion_tokens = len(text.split())
        if body.get("stream"):
            return await self._stream(request, body, text, (user, prompt_tokens, completion_tokens))
        reply = json.dumps(
            {
                "id": f"{self.name}-{self.requests}",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        ).encode()
        return await self._send(request, reply, (user, prompt_tokens, completion_tokens))

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        """A vector of 8 per text, billed by the texts' words (no output tokens)."""
        self.requests += 1
        body = await request.json()
        refused = await self._fault(request)
        if refused is not None:
            return refused
        texts: list[str] = body["input"]
        found = _USER.findall(" ".join(texts))
        user = found[-1] if found else "unknown"
        prompt_tokens = sum(len(text.split()) for text in texts)
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": [(len(text) % 7 + k) / 8 for k in range(8)],
            }
            for i, text in enumerate(texts)
        ]
        reply = json.dumps(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
            }
        ).encode()
        return await self._send(request, reply, (user, prompt_tokens, 0))

    async def _send(
        self, request: web.Request, reply: bytes, billed: tuple[str, int, int]
    ) -> web.StreamResponse:
        """Write a whole answer, billed only if the caller is still there to take it (the
        sidecar gives up on a slow attempt; a provider would bill that, the fake does not,
        so the books can be checked exactly)."""
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(reply)
        if request.transport is None or request.transport.is_closing():
            return response
        await response.prepare(request)
        self._bill(*billed)
        await response.write(reply)
        await response.write_eof()
        return response

    async def _stream(
        self, request: web.Request, body: dict[str, Any], text: str, billed: tuple[str, int, int]
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = {
            "id": f"{self.name}-{self.requests}",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": body["model"],
        }
        for word in text.split(" "):
            chunk = {**base, "choices": [{"index": 0, "delta": {"content": word + " "}}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await asyncio.sleep(0.005)
        user, prompt_tokens, completion_tokens = billed
        last = {
            **base,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        # Billed once the usage is on its way: a provider bills a stream it finished.
        self._bill(user, prompt_tokens, completion_tokens)
        await response.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())
        await response.write_eof()
        return response

    def _bill(self, user: str, prompt_tokens: int, completion_tokens: int) -> None:
        bill = self.bills[user]
        bill.answers += 1
        bill.prompt_tokens += prompt_tokens
        bill.completion_tokens += completion_tokens
        bill.each.append((prompt_tokens, completion_tokens))

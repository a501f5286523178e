"""The guardrails' promise, as a property over every surface and call kind: for prompts
with values of every category among ordinary words, no value reaches an upstream
body, a log line or a span, and every pseudonymized value comes back exactly as the
user wrote it (in text, in streams cut through placeholders, in tool-call arguments).

The official SDKs (OpenAI, Anthropic) and the project's gRPC client are the callers;
the sidecar runs in this process, so that its spans and log records can be read, and
the properties run in a worker thread with blocking clients while the event loop
serves."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import anthropic
import openai
from hypothesis import HealthCheck, given, settings

from llm_manager_client import InvalidArgumentError, LLMManagerClient, UserContext
from tests.integration.guardrails.conftest import GUARDRAILS, guarded_models
from tests.support.guard_values import (
    BLOCKED,
    PASSING,
    Piece,
    expected,
    prompts,
    written,
)
from tests.support.sidecar import make_settings, provider
from tests.support.telemetry import Traced

MASKED = frozenset(name for name, action in GUARDRAILS.items() if action == "mask")
PROPERTY = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class Surfaces:
    """One blocking call per surface and call kind; each returns what the caller got
    back as text (the echo of its prompt), or None where nothing echoes (vectors)."""

    def __init__(self, traced: Traced) -> None:
        sidecar = traced.sidecar
        headers = {"x-user-id": "alice", "x-session-id": "s1"}
        self.openai = openai.OpenAI(
            base_url=f"{sidecar.http_url}/v1", api_key="-", default_headers=headers, max_retries=0
        )
        self.anthropic = anthropic.Anthropic(
            base_url=sidecar.http_url, api_key="-", default_headers=headers, max_retries=0
        )
        self.grpc = LLMManagerClient(f"127.0.0.1:{sidecar.port}", UserContext("alice"), timeout=10)

    def close(self) -> None:
        self.openai.close()
        self.anthropic.close()
        self.grpc.close()

    def calls(self) -> dict[str, Callable[[str], str | None]]:
        return {
            "chat": self.chat,
            "chat_stream_cut": self.chat_stream_cut,
            "chat_tool_call": self.chat_tool_call,
            "messages": self.messages,
            "messages_stream": self.messages_stream,
            "responses": self.responses,
            "responses_stream": self.responses_stream,
            "embeddings": self.embeddings,
            "grpc_ask": self.grpc_ask,
            "grpc_stream": self.grpc_stream,
        }

    def chat(self, text: str) -> str:
        reply = self.openai.chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": text}]
        )
        return reply.choices[0].message.content or ""

    def chat_stream_cut(self, text: str) -> str:
        """Deltas of three characters from upstream: placeholders arrive in pieces."""
        stream = self.openai.chat.completions.create(
            model="cut", messages=[{"role": "user", "content": text}], stream=True
        )
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    def chat_tool_call(self, text: str) -> str:
        tool = {"type": "function", "function": {"name": "lookup", "parameters": {}}}
        reply = self.openai.chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": text}], tools=[tool]
        )
        (call,) = reply.choices[0].message.tool_calls or []
        return str(json.loads(call.function.arguments)["query"])

    def messages(self, text: str) -> str:
        reply = self.anthropic.messages.create(
            model="claude", max_tokens=200, messages=[{"role": "user", "content": text}]
        )
        return "".join(block.text for block in reply.content if block.type == "text")

    def messages_stream(self, text: str) -> str:
        with self.anthropic.messages.stream(
            model="gpt", max_tokens=200, messages=[{"role": "user", "content": text}]
        ) as stream:
            return "".join(stream.text_stream)

    def responses(self, text: str) -> str:
        return self.openai.responses.create(model="claude", input=text).output_text

    def responses_stream(self, text: str) -> str:
        events = self.openai.responses.create(model="cut", input=text, stream=True)
        return "".join(e.delta for e in events if e.type == "response.output_text.delta")

    def embeddings(self, text: str) -> None:
        self.openai.embeddings.create(model="embed", input=[text, "plain words"])

    def grpc_ask(self, text: str) -> str:
        return self.grpc.ask(text, model="gpt")

    def grpc_stream(self, text: str) -> str:
        return "".join(chunk.delta for chunk in self.grpc.ask_stream(text, model="claude"))


def _refusal(call: Callable[[str], str | None], text: str) -> str:
    """The message of the 400 / INVALID_ARGUMENT the call gets."""
    try:
        call(text)
    except (openai.BadRequestError, anthropic.BadRequestError, InvalidArgumentError) as exc:
        return str(exc)
    raise AssertionError("a blocked value was let through")


def _echoed(answer: str, text: str) -> str:
    """The user's words in an echo ("gpt says: <text> (turn 1)")."""
    start = answer.index(": ") + 2
    return answer[start : answer.rindex(" (turn ")]


async def _run_untold(
    traced: Traced, surfaces: Surfaces, check: Callable[[], None], values: list[str], logs: Any
) -> None:
    """The property, run in a worker thread while the loop serves; then no value it
    sent may be in any span or log line."""
    try:
        await asyncio.to_thread(check)
    finally:
        surfaces.close()
    told = json.dumps([s.to_json() for s in traced.spans()], ensure_ascii=False)
    told += "\n".join(logs.lines)
    for value in values:
        assert value not in told


async def _sidecar(traced_factory, upstream_factory) -> tuple[Traced, list[Any], Surfaces]:
    gpt, claude = await upstream_factory("gpt"), await upstream_factory("claude")
    cut = await upstream_factory("cut", stream_piece_chars=3)
    models = {**guarded_models(gpt, claude), "cut": {"providers": [provider("cut", cut.url)]}}
    settings_ = make_settings(
        models=models, guardrails=GUARDRAILS, telemetry={"log_format": "json"}
    )
    traced = await traced_factory(settings_)
    return traced, [gpt, claude, cut], Surfaces(traced)


async def test_no_value_goes_upstream_and_every_placeholder_comes_back(
    traced_factory, upstream_factory, json_logs
) -> None:
    traced, upstreams, surfaces = await _sidecar(traced_factory, upstream_factory)
    calls = surfaces.calls()
    values: list[str] = []

    @PROPERTY
    @given(pieces=prompts(PASSING))
    def check(pieces: list[Piece]) -> None:
        text = written(pieces)
        values.extend(p.text for p in pieces if p.category)
        for surface, call in calls.items():
            sent_before = len([r for u in upstreams for r in u.requests])
            answer = call(text)
            if answer is not None:
                answer = answer if surface == "chat_tool_call" else _echoed(answer, text)
                assert answer == expected(pieces, MASKED), surface
            # (nothing at all when the user's cache answered)
            sent = [r.body for u in upstreams for r in u.requests][sent_before:]
            body = json.dumps(sent, ensure_ascii=False)
            for piece in pieces:
                if piece.category:
                    assert piece.text not in body, (
                        surface,
                        piece.category,
                        [m for b in sent for m in b.get("messages", []) if piece.text in str(m)],
                    )

    await _run_untold(traced, surfaces, check, values, json_logs)
    counted = traced.metric_points("llm_sidecar.guardrails.detections")
    assert {a["llm_sidecar.guardrails.category"] for a, _ in counted} == set(PASSING)


async def test_a_blocked_value_refuses_the_call_naming_category_and_place(
    traced_factory, upstream_factory, json_logs
) -> None:
    traced, upstreams, surfaces = await _sidecar(traced_factory, upstream_factory)
    calls = surfaces.calls()
    values: list[str] = []

    refusals: list[str] = []

    @PROPERTY
    @given(pieces=prompts(BLOCKED))
    def check(pieces: list[Piece]) -> None:
        values.extend(p.text for p in pieces if p.category)
        for surface, call in calls.items():
            sent_before = len([r for u in upstreams for r in u.requests])
            message = _refusal(call, written(pieces))
            refusals.append(surface)
            assert "category 'credit_card'" in message or "category 'secret'" in message
            assert re.search(r"(messages\[\d+\]\.content|input\[\d+\]): ", message), message
            for piece in pieces:
                assert not piece.category or piece.text not in message
            assert len([r for u in upstreams for r in u.requests]) == sent_before, surface

    await _run_untold(traced, surfaces, check, values, json_logs)
    records = [json.loads(line) for line in json_logs.lines]
    blocked = [r for r in records if r.get("msg") == "guardrail blocked a call"]
    assert len(blocked) == len(refusals) and all(
        r["guard_category"] in BLOCKED and r["logger"] == "llm_sidecar.guardrails" for r in blocked
    )

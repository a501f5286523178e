"""Anthropic Messages API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from llm_sidecar.core.vocabulary.errors import ErrorKind, ProviderError
from llm_sidecar.core.vocabulary.models import ChatRequest, Completion, Usage
from llm_sidecar.core.vocabulary.tools import ToolCall
from llm_sidecar.providers._anthropic_body import messages_body
from llm_sidecar.providers._endpoint import HttpProvider
from llm_sidecar.providers._http import joined, json_body, obj
from llm_sidecar.providers._sse import Event, SSEReader, event_object
from llm_sidecar.providers._tools import ToolCallParts, arguments_text, checked

API_VERSION = "2023-06-01"
_PATH = "/v1/messages"


class AnthropicProvider(HttpProvider):
    """POST {base_url}/v1/messages with an x-api-key."""

    system = "anthropic"
    models_path = "/v1/models"

    @staticmethod
    def credentials(api_key: str) -> dict[str, str]:
        """The headers that carry ``api_key`` (and the API version every call names)."""
        headers = {"anthropic-version": API_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        return headers

    async def complete(self, request: ChatRequest) -> Completion:
        payload = json_body(
            messages_body(self.model, request, stream=False, prompt_caching=self._prompt_caching)
        )
        body = await self._endpoint.post_json(_PATH, payload, request.deadline)
        raw_usage = obj(body.get("usage"), "usage")
        try:
            usage = _Tokens().update(raw_usage).usage() if raw_usage else None
        except (TypeError, ValueError):
            raise ProviderError(ErrorKind.BAD_RESPONSE, "usage is not numbers") from None
        try:
            blocks = body["content"]
            text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
            calls = tuple(
                checked(str(b["id"]), str(b["name"]), arguments_text(b.get("input", {})))
                for b in blocks
                if b.get("type") == "tool_use"
            )
        except ProviderError as error:
            raise error.billing(usage) from None  # a whole answer, billed, then refused
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ProviderError(ErrorKind.BAD_RESPONSE, "no content blocks") from None
        return Completion(
            text=text,
            response_id=str(body.get("id", "")),
            model=str(body.get("model", self.model)),
            finish_reason=_finish(body.get("stop_reason")),
            usage=usage,
            tool_calls=calls,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[str | ToolCall | Completion]:
        payload = json_body(
            messages_body(self.model, request, stream=True, prompt_caching=self._prompt_caching)
        )
        state = _StreamState(self.model)
        async with self._endpoint.post(_PATH, payload, request.deadline) as reply:
            events = SSEReader(reply)
            while not state.done and (batch := await events.read()) is not None:
                text = state.feed(batch)
                if text:
                    yield text
                while state.finished:  # whole tool calls, in the order they closed
                    yield state.finished.pop(0)
        if not state.done:
            raise ProviderError(ErrorKind.BAD_RESPONSE, "the stream ended early")
        yield state.completion()


class _StreamState:
    """What a Messages API event stream said so far."""

    __slots__ = (
        "calls",
        "done",
        "finish",
        "finished",
        "model",
        "parts",
        "response_id",
        "saw_usage",
        "tokens",
        "tool_calls",
    )

    def __init__(self, model: str) -> None:
        self.calls = ToolCallParts()
        #: Tool calls completed by the last batch, not yet handed on.
        self.finished: list[ToolCall] = []
        self.tool_calls: list[ToolCall] = []
        self.parts: list[str] = []
        self.response_id = ""
        self.model = model
        self.finish = ""
        self.tokens = _Tokens()
        self.saw_usage = self.done = False

    def feed(self, batch: list[Event]) -> str:
        """Take a batch of events; return the text they add (all deltas, joined)."""
        texts: list[str] = []
        for event, data in batch:
            item = event_object(data)
            kind = item.get("type", event)
            if kind == "content_block_delta":
                delta = obj(item.get("delta"), "delta")
                if delta.get("type") == "input_json_delta":
                    self.calls.add(int(item.get("index", 0)), str(delta.get("partial_json", "")))
                    continue
                text = delta.get("text")
                if text:
                    texts.append(text)
            elif kind == "content_block_start":
                block = obj(item.get("content_block"), "content_block")
                if block.get("type") == "tool_use":
                    index = int(item.get("index", 0))
                    self.calls.start(index, str(block.get("id", "")), str(block.get("name", "")))
            elif kind == "content_block_stop":
                index = int(item.get("index", 0))
                if self.calls.has(index):
                    call = self.calls.finish(index)
                    self.finished.append(call)
                    self.tool_calls.append(call)
            elif kind == "message_start":
                message = obj(item.get("message"), "message")
                self.response_id = str(message.get("id", ""))
                self.model = str(message.get("model", self.model))
                usage = obj(message.get("usage"), "usage")
                if usage:
                    self.tokens.update(usage)
                    self.saw_usage = True
            elif kind == "message_delta":
                delta = obj(item.get("delta"), "delta")
                self.finish = _finish(delta.get("stop_reason")) or self.finish
                usage = obj(item.get("usage"), "usage")
                if usage:
                    # Counts here are cumulative: they replace what message_start said.
                    self.tokens.update(usage)
                    self.saw_usage = True
            elif kind == "message_stop":
                self.done = True
                break
            elif kind == "error":
                raise ProviderError(ErrorKind.SERVER_ERROR, "the stream reported an error")
        return joined(texts, self.parts)

    def completion(self) -> Completion:
        usage = self.tokens.usage() if self.saw_usage else None
        return Completion(
            "".join(self.parts),
            self.response_id,
            self.model,
            self.finish,
            usage,
            tuple(self.tool_calls),
        )


def _finish(stop_reason: object) -> str:
    """The API's stop reason, with tool use named as for every provider ("tool_calls")."""
    reason = str(stop_reason or "")
    return "tool_calls" if reason == "tool_use" else reason


class _Tokens:
    """The Messages API's usage counts. ``input_tokens`` there excludes cache reads and
    writes; the sidecar's prompt_tokens is every input token, so they are added."""

    __slots__ = ("cache_read", "cache_write", "input", "output")

    def __init__(self) -> None:
        self.input = self.output = self.cache_read = self.cache_write = 0

    def update(self, usage: dict[str, Any]) -> _Tokens:
        """Take the counts a usage object reports (absent or null ones stay as they were)."""
        for field, attribute in (
            ("input_tokens", "input"),
            ("output_tokens", "output"),
            ("cache_read_input_tokens", "cache_read"),
            ("cache_creation_input_tokens", "cache_write"),
        ):
            value = usage.get(field)
            if value is not None:
                setattr(self, attribute, int(value))
        return self

    def usage(self) -> Usage:
        prompt = self.input + self.cache_read + self.cache_write
        return Usage(
            prompt,
            self.output,
            prompt + self.output,
            cached_input_tokens=self.cache_read,
            cache_write_input_tokens=self.cache_write,
        )

"""OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, LM Studio, most gateways)."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from typing import Any

from llm_sidecar.core.vocabulary.errors import ErrorKind, ProviderError
from llm_sidecar.core.vocabulary.models import (
    ChatMessage,
    ChatRequest,
    Completion,
    EmbeddingRequest,
    Embeddings,
    GenerationParams,
    Usage,
    pack_vector,
)
from llm_sidecar.core.vocabulary.tools import ToolCall
from llm_sidecar.providers._endpoint import HttpProvider
from llm_sidecar.providers._http import joined, json_body, obj
from llm_sidecar.providers._sse import Event, SSEReader, event_object, is_done
from llm_sidecar.providers._tools import ToolCallParts, checked, data_url, portable_id

_PATH = "/chat/completions"
_EMBEDDINGS = "/embeddings"


def _message(message: ChatMessage) -> dict[str, Any]:
    """One turn in the chat-completions format."""
    if message.role == "tool":
        return {
            "role": "tool",
            "tool_call_id": portable_id(message.tool_call_id),
            "content": message.content,
        }
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": portable_id(call.id),
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in message.tool_calls
            ],
        }
    if message.images:
        parts: list[dict[str, Any]] = [
            {"type": "text", "text": part}
            if isinstance(part, str)
            else {"type": "image_url", "image_url": {"url": data_url(part)}}
            for part in message.ordered()
        ]
        return {"role": message.role, "content": parts}
    return {"role": message.role, "content": message.content}


def _tools(request: ChatRequest, body: dict[str, Any]) -> None:
    if not request.tools:
        return
    body["tools"] = [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.parameters,
            },
        }
        for tool in request.tools
    ]
    choice = request.tool_choice
    body["tool_choice"] = (
        {"type": "function", "function": {"name": choice.name}}
        if choice.mode == "tool"
        else choice.mode
    )
    if request.parallel_tool_calls is not None:
        body["parallel_tool_calls"] = request.parallel_tool_calls


def _body(
    model: str, request: ChatRequest, *, stream: bool, prompt_caching: bool = False
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": m.role, "content": m.content} if m.plain else _message(m)
            for m in request.messages
        ],
    }
    _tools(request, body)
    params = request.params
    if params.temperature is not None:
        body["temperature"] = params.temperature
    if params.max_tokens is not None:
        body["max_tokens"] = params.max_tokens
    if params.top_p is not None:
        body["top_p"] = params.top_p
    if params.stop:
        body["stop"] = list(params.stop)
    if params.seed is not None:
        body["seed"] = params.seed
    if request.json_schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": request.json_schema, "strict": False},
        }
    if prompt_caching and request.cache_hint:
        # Routes this user's thread to the same cache; a keyed pseudonym, never the id.
        body["prompt_cache_key"] = request.cache_hint
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _usage(raw: Any) -> Usage | None:
    """Usage as reported, with the cached-input and reasoning parts when given."""
    if not isinstance(raw, dict):
        return None
    try:
        prompt = int(raw.get("prompt_tokens", 0))
        completion = int(raw.get("completion_tokens", 0))
        total = int(raw.get("total_tokens", prompt + completion))
        prompt_details = raw.get("prompt_tokens_details")
        completion_details = raw.get("completion_tokens_details")
        cached = (
            int(prompt_details.get("cached_tokens") or 0) if isinstance(prompt_details, dict) else 0
        )
        reasoning = (
            int(completion_details.get("reasoning_tokens") or 0)
            if isinstance(completion_details, dict)
            else 0
        )
    except (TypeError, ValueError):
        return None
    return Usage(prompt, completion, total, cached_input_tokens=cached, reasoning_tokens=reasoning)


class OpenAIProvider(HttpProvider):
    """POST {base_url}/chat/completions with a bearer key."""

    system = "openai"
    models_path = "/models"

    @staticmethod
    def credentials(api_key: str) -> dict[str, str]:
        """The headers that carry ``api_key`` (none without one)."""
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def complete(self, request: ChatRequest) -> Completion:
        payload = json_body(
            _body(self.model, request, stream=False, prompt_caching=self._prompt_caching)
        )
        body = await self._endpoint.post_json(_PATH, payload, request.deadline)
        return self._parse(body)

    def _parse(self, body: dict[str, Any]) -> Completion:
        usage = _usage(body.get("usage"))
        try:
            choice = body["choices"][0]
            message = choice["message"]
            text = message.get("content") or ""
            if not isinstance(text, str):
                raise TypeError
            calls = tuple(
                checked(
                    str(call["id"]),
                    str(call["function"]["name"]),
                    str(call["function"].get("arguments") or ""),
                )
                for call in message.get("tool_calls") or ()
            )
        except ProviderError as error:
            raise error.billing(usage) from None  # a whole answer, billed, then refused
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ProviderError(ErrorKind.BAD_RESPONSE, "no choices[0].message") from None
        return Completion(
            text=text,
            response_id=str(body.get("id", "")),
            model=str(body.get("model", self.model)),
            finish_reason=str(choice.get("finish_reason") or ""),
            usage=usage,
            tool_calls=calls,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[str | ToolCall | Completion]:
        payload = json_body(
            _body(self.model, request, stream=True, prompt_caching=self._prompt_caching)
        )
        state = _StreamState(self.model)
        async with self._endpoint.post(_PATH, payload, request.deadline) as reply:
            events = SSEReader(reply)
            while not state.done and (batch := await events.read()) is not None:
                text = state.feed(batch)
                if text:
                    yield text
        if not state.done and not state.finish:
            raise ProviderError(ErrorKind.BAD_RESPONSE, "the stream ended early")
        try:
            calls = state.calls.finish_all()  # whole, checked: never a fragment goes out
        except ProviderError as error:
            raise error.billing(state.usage) from None  # the whole answer was billed
        for call in calls:
            yield call
        yield state.completion(tuple(calls))

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        """POST {base_url}/embeddings: a vector per text, in the texts' order."""
        body: dict[str, Any] = {
            "model": self.model,
            "input": list(request.texts),
            "encoding_format": "float",
        }
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        reply = await self._endpoint.post_json(_EMBEDDINGS, json_body(body), request.deadline)
        return _embeddings(reply, self.model)

    async def probe(self) -> None:
        if self._probe_mode == "chat":
            await self.complete(
                ChatRequest((ChatMessage("user", "ping"),), GenerationParams(max_tokens=1))
            )
            return
        await super().probe()


def _embeddings(body: dict[str, Any], model: str) -> Embeddings:
    """The vectors of an embeddings answer, ordered by their ``index``."""
    try:
        items = sorted(body["data"], key=lambda item: int(item["index"]))
        vectors = tuple(pack_vector(item["embedding"]) for item in items)
        ordered = [int(item["index"]) for item in items] == list(range(len(items)))
    except (KeyError, TypeError, ValueError, struct.error):
        raise ProviderError(ErrorKind.BAD_RESPONSE, "no data[].embedding vectors") from None
    if not ordered:  # a repeated or missing index would pair a text with another's vector
        raise ProviderError(ErrorKind.BAD_RESPONSE, "data[].index is not 0..n-1")
    return Embeddings(vectors, str(body.get("model", model)), _usage(body.get("usage")))


class _StreamState:
    """What a chat-completions stream said so far."""

    __slots__ = ("calls", "done", "finish", "model", "parts", "response_id", "usage")

    def __init__(self, model: str) -> None:
        self.calls = ToolCallParts()
        self.parts: list[str] = []
        self.response_id = ""
        self.model = model
        self.finish = ""
        self.usage: Usage | None = None
        self.done = False

    def feed(self, batch: list[Event]) -> str:
        """Take a batch of events; return the text they add (all deltas, joined)."""
        texts: list[str] = []
        for _, data in batch:
            if is_done(data):
                self.done = True
                break
            chunk = event_object(data)
            if "id" in chunk:
                self.response_id = str(chunk["id"])
            if "model" in chunk:
                self.model = str(chunk["model"])
            usage = chunk.get("usage")
            if usage is not None:
                self.usage = _usage(usage) or self.usage
            for raw_choice in chunk.get("choices") or ():
                choice = obj(raw_choice, "a choice")
                delta_obj = obj(choice.get("delta"), "delta")
                delta = delta_obj.get("content")
                if choice.get("finish_reason"):
                    self.finish = str(choice["finish_reason"])
                if delta:
                    texts.append(delta)
                for fragment in delta_obj.get("tool_calls") or ():
                    self._tool_fragment(obj(fragment, "a tool call"))
        return joined(texts, self.parts)

    def _tool_fragment(self, fragment: dict[str, Any]) -> None:
        index = int(fragment.get("index", 0))
        function = obj(fragment.get("function"), "function")
        self.calls.start(index, str(fragment.get("id") or ""), str(function.get("name") or ""))
        if function.get("arguments"):
            self.calls.add(index, str(function["arguments"]))

    def completion(self, calls: tuple[ToolCall, ...] = ()) -> Completion:
        return Completion(
            "".join(self.parts), self.response_id, self.model, self.finish, self.usage, calls
        )

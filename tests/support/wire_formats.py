"""The providers' real wire formats, from their official Python SDKs.

Every request body the sidecar sends is checked against the SDK's request type
(``CompletionCreateParams``, ``MessageCreateParams``, TypedDicts): a key the
SDK does not declare, a required key missing, or a Literal value it does not
allow fails. Replies are built through the SDKs' response models.
"""

from __future__ import annotations

import collections.abc
import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types import message_create_params as anthropic_params
from openai.types import CreateEmbeddingResponse, EmbeddingCreateParams
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.chat import completion_create_params as openai_params
from pydantic import TypeAdapter
from typing_extensions import is_typeddict  # the SDKs declare typing_extensions TypedDicts

_PARAMS: dict[tuple[str, bool], Any] = {
    ("openai", False): openai_params.CompletionCreateParamsNonStreaming,
    ("openai", True): openai_params.CompletionCreateParamsStreaming,
    ("anthropic", False): anthropic_params.MessageCreateParamsNonStreaming,
    ("anthropic", True): anthropic_params.MessageCreateParamsStreaming,
    ("embeddings", False): EmbeddingCreateParams,
}
_STREAM_EVENT: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)


def _problems(value: Any, hint: Any, path: str) -> list[str]:
    """What in ``value`` does not fit the SDK type ``hint``: unknown or missing keys of
    TypedDicts, Literal values, lists where a list belongs. Unions pass when one option
    does (the Literal ``type``/``role`` fields pick the option)."""
    origin = get_origin(hint)
    if hint is Any or hint is object:
        return []
    if origin in (Union, types.UnionType):
        first: list[str] | None = None
        for option in get_args(hint):
            found = _problems(value, option, path)
            if not found:
                return []
            first = first or found
        return first or []
    if origin is Literal:
        return (
            [] if value in get_args(hint) else [f"{path}: {value!r} is not one of {get_args(hint)}"]
        )
    if is_typeddict(hint):
        if not isinstance(value, dict):
            return [f"{path}: not an object"]
        fields = get_type_hints(hint)
        unknown = sorted(set(value) - set(fields))
        missing = sorted(set(hint.__required_keys__) - set(value))
        if unknown or missing:
            return [f"{path}: unknown keys {unknown}, missing keys {missing}"]
        return [p for k, v in value.items() for p in _problems(v, fields[k], f"{path}.{k}")]
    if origin in (list, tuple, collections.abc.Iterable, collections.abc.Sequence):
        if not isinstance(value, list):
            return [f"{path}: not a list"]
        (item,) = get_args(hint)[:1] or (Any,)
        return [p for i, v in enumerate(value) for p in _problems(v, item, f"{path}[{i}]")]
    if hint in (str, bool):
        return [] if type(value) is hint else [f"{path}: not a {hint.__name__}"]
    if hint in (int, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [f"{path}: not a number"]
    return []  # free-form maps, None, protocols: nothing more to check


def request_problem(kind: str, body: dict[str, Any]) -> str | None:
    """Why ``body`` is not a valid request of that API (None when it is)."""
    params = _PARAMS[(kind, bool(body.get("stream")))]
    found = _problems(body, params, "body")
    if found:
        return f"{kind} request does not fit the SDK's types: " + "; ".join(found[:5])
    return None


def openai_reply(reply: dict[str, Any]) -> dict[str, Any]:
    return ChatCompletion.model_validate(reply).model_dump(mode="json", exclude_unset=True)


def openai_chunk(chunk: dict[str, Any]) -> dict[str, Any]:
    return ChatCompletionChunk.model_validate(chunk).model_dump(mode="json", exclude_unset=True)


def embeddings_reply(reply: dict[str, Any]) -> dict[str, Any]:
    return CreateEmbeddingResponse.model_validate(reply).model_dump(mode="json")


def anthropic_reply(reply: dict[str, Any]) -> dict[str, Any]:
    return Message.model_validate(reply).model_dump(mode="json", exclude_unset=True)


def anthropic_event(event: dict[str, Any]) -> dict[str, Any]:
    parsed = _STREAM_EVENT.validate_python(event)
    return dict(_STREAM_EVENT.dump_python(parsed, mode="json", exclude_unset=True))

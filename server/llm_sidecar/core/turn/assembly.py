"""How one call's turn is put together: the messages a provider is asked, the cache
key, and the exchange a conversation remembers afterwards. Pure functions: the
chat kind of call does the I/O (loading history) and the pipeline writes the turn."""

from __future__ import annotations

from dataclasses import dataclass

from jsonschema.protocols import Validator

from llm_sidecar.core.state.cache_keys import cache_key
from llm_sidecar.core.turn.structured import compile_schema
from llm_sidecar.core.vocabulary.context import UserExecutionContext
from llm_sidecar.core.vocabulary.models import AskInput, ChatMessage, ChatRequest, Completion, Usage


@dataclass(slots=True)
class Prepared:
    """A call ready to be answered."""

    route: str
    #: The response cache key (None: not cached).
    key: str | None
    session_id: str | None
    thread_id: str
    validator: Validator | None
    #: What the providers are asked (the stream drops the schema).
    request: ChatRequest


def prepare(
    ctx: UserExecutionContext,
    inp: AskInput,
    route: str,
    history: list[ChatMessage],
    *,
    cache: bool,
    cache_hint: str,
) -> Prepared:
    """The request for ``inp`` after ``history`` (empty outside a conversation)."""
    validator = compile_schema(inp.json_schema) if inp.json_schema is not None else None
    session_id = ctx.session_id
    thread_id = ctx.conversation_thread
    # The turns in order: system prompt, the thread's history, the caller's own
    # turns, the prompt. History stays an unchanged prefix turn after turn, so a
    # provider's prompt cache keeps matching it.
    messages: list[ChatMessage] = []
    if inp.system_prompt:
        messages.append(ChatMessage("system", inp.system_prompt))
    messages.extend(history)
    messages.extend(inp.messages)
    if inp.prompt.strip():
        messages.append(ChatMessage("user", inp.prompt))
    frozen = tuple(messages)
    key = None
    if cache and not inp.skip_cache:
        key = cache_key(
            user_id=ctx.user_id,
            session_id=session_id,
            thread_id=thread_id if session_id is not None else None,
            model=route,
            params=inp.params,
            messages=frozen,
            json_schema=inp.json_schema,
            tools=(inp.tools, inp.tool_choice, inp.parallel_tool_calls),
        )
    request = ChatRequest(
        frozen,
        inp.params,
        inp.json_schema,
        inp.tools,
        inp.tool_choice,
        inp.parallel_tool_calls,
        cache_hint,
        len(history),
    )
    return Prepared(route, key, session_id, thread_id, validator, request)


def exchange(
    prep: Prepared, inp: AskInput, answer: str, completion: Completion
) -> tuple[tuple[str, str] | None, tuple[ChatMessage, ...]]:
    """(thread, messages) a conversation remembers of an answered call: the caller's
    own turns (not system ones), the prompt, and the answer with its tool calls; no
    thread outside a conversation."""
    if prep.session_id is None or inp.skip_history:
        return None, ()
    kept = [m for m in inp.messages if m.role != "system"]
    if inp.prompt.strip():
        kept.append(ChatMessage("user", inp.prompt))
    kept.append(ChatMessage("assistant", answer, tool_calls=completion.tool_calls))
    return (prep.session_id, prep.thread_id), tuple(kept)


def estimate_usage(messages: tuple[ChatMessage, ...], text: str) -> Usage:
    """Rough token counts (4 characters a token) for providers that report none."""
    prompt = sum(len(m.content) for m in messages) // 4 + 4 * len(messages)
    completion = max(1, len(text) // 4)
    return Usage(prompt, completion, prompt + completion, estimated=True)

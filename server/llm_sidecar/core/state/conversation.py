"""Conversation history: interfaces plus the in-process implementation.

A store hands out views scoped to one user (see :mod:`llm_sidecar.core.state.store`).
A view's methods take no user id at all, so code holding one user's view has
no way to name another user's history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from llm_sidecar.core.vocabulary.models import ChatMessage


@dataclass(frozen=True, slots=True)
class HistoryBounds:
    """Limits on one thread's history. Oldest turns are dropped first."""

    max_turns: int = 50
    max_bytes: int = 256 * 1024
    ttl_seconds: float = 24 * 3600.0


DEFAULT_HISTORY_BOUNDS = HistoryBounds()


def message_bytes(message: ChatMessage) -> int:
    """Bytes a message counts against the history bound (images and tool calls too)."""
    size = len(message.content.encode("utf-8")) + len(message.role)
    if not message.plain:
        size += sum(len(i.data) + len(i.url) for i in message.images)
        size += sum(len(c.id) + len(c.name) + len(c.arguments) for c in message.tool_calls)
        size += len(message.tool_call_id)
    return size


def bound_history(
    messages: list[ChatMessage], bounds: HistoryBounds, total: int | None = None
) -> int:
    """Drop the oldest turns in place until ``bounds`` hold; return the new byte total.

    A turn is a user message and the answer after it, so they go together.
    """
    if total is None:
        total = sum(message_bytes(m) for m in messages)
    max_messages = 2 * bounds.max_turns
    while messages and (len(messages) > max_messages or total > bounds.max_bytes):
        drop = 2 if len(messages) >= 2 else 1
        for message in messages[:drop]:
            total -= message_bytes(message)
        del messages[:drop]
    return total


class UserConversations(Protocol):
    """One user's conversations. Every method is scoped to that user."""

    async def load(self, session_id: str, thread_id: str) -> list[ChatMessage]:
        """The thread's history, oldest first."""

    async def append(
        self, session_id: str, thread_id: str, messages: Sequence[ChatMessage]
    ) -> None:
        """Append messages, then enforce the bounds."""

    async def end_session(self, session_id: str) -> int:
        """Forget every thread of the session; return how many threads there were."""

    def trim_local(self, keep_turns: int) -> None:
        """Shrink every thread held in this process to ``keep_turns`` turns (degraded mode)."""

    def forget_local(self) -> None:
        """Forget this user's process-local state (durable stores keep theirs)."""


class MemoryUserConversations:
    """In-process history of one user; owned by that user's manager."""

    __slots__ = ("_bounds", "_bytes", "_threads")

    def __init__(self, bounds: HistoryBounds) -> None:
        self._bounds = bounds
        self._threads: dict[tuple[str, str], list[ChatMessage]] = {}
        self._bytes: dict[tuple[str, str], int] = {}

    async def load(self, session_id: str, thread_id: str) -> list[ChatMessage]:
        return list(self._threads.get((session_id, thread_id), ()))

    async def append(
        self, session_id: str, thread_id: str, messages: Sequence[ChatMessage]
    ) -> None:
        key = (session_id, thread_id)
        thread = self._threads.setdefault(key, [])
        thread.extend(messages)
        total = self._bytes.get(key, 0) + sum(message_bytes(m) for m in messages)
        self._bytes[key] = bound_history(thread, self._bounds, total)

    async def replace(
        self, session_id: str, thread_id: str, messages: Sequence[ChatMessage]
    ) -> None:
        """Set a thread's whole history (used to mirror a durable store)."""
        key = (session_id, thread_id)
        self._threads[key] = list(messages)
        self._bytes[key] = bound_history(self._threads[key], self._bounds)

    async def mirror(
        self, session_id: str, thread_id: str, messages: Sequence[ChatMessage]
    ) -> None:
        """Like :meth:`replace`, skipped when the copy already matches. History only
        grows at the end and shrinks at the front, so length and both ends tell."""
        current = self._threads.get((session_id, thread_id))
        if (
            current is not None
            and len(current) == len(messages)
            and (not current or (current[0] == messages[0] and current[-1] == messages[-1]))
        ):
            return
        await self.replace(session_id, thread_id, messages)

    async def end_session(self, session_id: str) -> int:
        doomed = [key for key in self._threads if key[0] == session_id]
        for key in doomed:
            del self._threads[key]
            self._bytes.pop(key, None)
        return len(doomed)

    def trim_local(self, keep_turns: int) -> None:
        bounds = HistoryBounds(max_turns=keep_turns, max_bytes=self._bounds.max_bytes)
        for key, thread in self._threads.items():
            self._bytes[key] = bound_history(thread, bounds)

    def forget_local(self) -> None:
        self._threads.clear()
        self._bytes.clear()

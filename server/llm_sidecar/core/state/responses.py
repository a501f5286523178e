"""Stored responses: what a response-style call (OpenAI's Responses API) leaves behind,
so that a later call can continue from it by id.

A stored response belongs to one user: every view here is scoped to that user and
takes no user id, so an id another user made reads as one that never existed. Each
record holds its own new input and its output, and the ids of the responses before
it (bounded): a continuation reads the record and its ancestors, never a copy of
the whole conversation per response, and two continuations of one parent (a branch)
share every record they have in common.
"""

from __future__ import annotations

import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from llm_sidecar.core.state.conversation import message_bytes
from llm_sidecar.core.vocabulary.models import ChatMessage

_ID = re.compile(r"resp_[0-9a-f]{48}")


def new_response_id() -> str:
    """An unguessable id (192 random bits): knowing one id tells nothing of another."""
    return "resp_" + secrets.token_hex(24)


def is_response_id(value: str) -> bool:
    """Whether ``value`` has the shape of an id this sidecar makes (anything else names
    nothing, and is answered as an id that does not exist)."""
    return _ID.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class ResponseBounds:
    """How long stored responses live, and how much of a chain a continuation reads."""

    #: Lifetime of a stored response.
    ttl_seconds: float = 30 * 86400.0
    #: Responses a continuation reads: the one it names and those before it (older ones
    #: are dropped).
    max_chain: int = 100
    #: Bytes of messages a continuation reads; the oldest are dropped, whole turns.
    max_chain_bytes: int = 1024 * 1024
    #: In memory only: responses kept per user (the oldest go first).
    max_per_user: int = 256


DEFAULT_RESPONSE_BOUNDS = ResponseBounds()


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """One response as stored."""

    id: str
    #: The session the response was made in ("" for none): EndSession removes it.
    session_id: str
    created_at: float
    #: Ids of the responses before this one, oldest first; the last is its parent.
    ancestors: tuple[str, ...]
    #: What the call added: its new input, and the model's output.
    input: tuple[ChatMessage, ...]
    output: tuple[ChatMessage, ...]
    #: The response as the surface that made it renders it, returned as it is.
    view: bytes

    def size(self) -> int:
        """Bytes it counts against the bounds."""
        return len(self.view) + sum(message_bytes(m) for m in (*self.input, *self.output))


class UserResponses(Protocol):
    """One user's stored responses. Writes go through the user's turn writer, with the
    call's bill (see :mod:`llm_sidecar.core.state.turns`)."""

    async def get(self, response_id: str) -> StoredResponse | None:
        """The response, or None (never made, made by another user, deleted, expired)."""

    async def chain(self, response_id: str) -> list[StoredResponse] | None:
        """The response and those of its ancestors that still exist, oldest first; None
        when the response itself does not."""

    async def put(self, response: StoredResponse) -> None:
        """Store a response (the turn writer's part)."""

    async def delete(self, response_id: str) -> bool:
        """Remove a response; whether there was one."""

    async def end_session(self, session_id: str) -> int:
        """Remove every response made in a session; how many."""


@dataclass(frozen=True, slots=True)
class ChainItem:
    """One message of a chain, with where it is stored: which response, whether in its
    output, and its place there (so a surface can name it the same way every time)."""

    response_id: str
    output: bool
    index: int
    message: ChatMessage


def chain_items(chain: Sequence[StoredResponse], max_bytes: int) -> list[ChainItem]:
    """The conversation a continuation of ``chain`` (oldest first) continues: every
    response's input and output, in order. Past ``max_bytes`` the oldest messages are
    dropped. A conversation that lost its beginning (to that bound, to the bound on
    ancestors, or to a deleted or expired one) then starts at its first user message:
    a tool result without its call, or an answer without its question, is dropped too."""
    kept: list[ChainItem] = []
    total = 0
    cut = bool(chain) and bool(chain[0].ancestors)
    for response in reversed(chain):
        part = [ChainItem(response.id, False, i, m) for i, m in enumerate(response.input)]
        part += [ChainItem(response.id, True, i, m) for i, m in enumerate(response.output)]
        size = sum(message_bytes(item.message) for item in part)
        if total + size > max_bytes:
            # Of the response that does not fit whole, keep its newest messages that do.
            cut = True
            for item in reversed(part):
                total += message_bytes(item.message)
                if total > max_bytes:
                    break
                kept.insert(0, item)
            break
        kept[:0] = part
        total += size
    if cut:
        first = next((i for i, item in enumerate(kept) if item.message.role == "user"), len(kept))
        del kept[:first]
    return kept


def context_of(chain: Sequence[StoredResponse], max_bytes: int) -> list[ChatMessage]:
    """The messages of :func:`chain_items`."""
    return [item.message for item in chain_items(chain, max_bytes)]


class MemoryUserResponses:
    """A user's stored responses in this process: bounded by count (the least recently
    made or read go first), each with a TTL."""

    __slots__ = ("_bounds", "_clock", "_entries")

    def __init__(self, bounds: ResponseBounds, clock: Callable[[], float] = time.monotonic) -> None:
        self._bounds = bounds
        self._clock = clock
        self._entries: OrderedDict[str, tuple[StoredResponse, float]] = OrderedDict()

    async def get(self, response_id: str) -> StoredResponse | None:
        entry = self._entries.get(response_id)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._entries[response_id]
            return None
        self._entries.move_to_end(response_id)  # the least recently used go first
        return entry[0]

    async def chain(self, response_id: str) -> list[StoredResponse] | None:
        last = await self.get(response_id)
        if last is None:
            return None
        found = [await self.get(i) for i in last.ancestors]
        return [*after_gaps(found), last]

    async def put(self, response: StoredResponse) -> None:
        self._entries[response.id] = (response, self._clock() + self._bounds.ttl_seconds)
        self._entries.move_to_end(response.id)
        while len(self._entries) > self._bounds.max_per_user:
            self._entries.popitem(last=False)

    async def delete(self, response_id: str) -> bool:
        return self._entries.pop(response_id, None) is not None

    async def end_session(self, session_id: str) -> int:
        doomed = [i for i, (r, _) in self._entries.items() if r.session_id == session_id]
        for response_id in doomed:
            del self._entries[response_id]
        return len(doomed)

    def __len__(self) -> int:
        return len(self._entries)


def after_gaps(found: Sequence[StoredResponse | None]) -> list[StoredResponse]:
    """Ancestors after the newest one that no longer exists (deleted or expired): the
    chain starts again after a gap, as it does past its bounds."""
    kept: list[StoredResponse] = []
    for response in found:
        if response is None:
            kept.clear()
        else:
            kept.append(response)
    return kept

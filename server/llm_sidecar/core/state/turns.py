"""What one answer leaves behind, written as one unit: the bill and the exchange.

The default writes them through the user's ledger and conversation store one
after the other. A shared store may do both in one round trip (the Redis
adapter does: one script per answer instead of two).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from llm_sidecar.core.admission.quota_store import Settlement
from llm_sidecar.core.models import ChatMessage
from llm_sidecar.core.state.conversation import UserConversations
from llm_sidecar.core.state.usage import UsageRow, UserUsage


@dataclass(frozen=True, slots=True)
class Turn:
    """One call's usage rows and, when it joins a conversation, its exchange."""

    #: Counters to add, each labelled with its (session, model, provider) cell.
    usage: Sequence[UsageRow]
    #: (session_id, thread_id) of the conversation the exchange joins, if any.
    thread: tuple[str, str] | None = None
    messages: Sequence[ChatMessage] = ()
    #: The end of the call's quota reservation, applied with the turn (written in
    #: the same step where the store can).
    settlement: Settlement | None = None


class TurnWriter(Protocol):
    """Writes turns of one user."""

    async def commit(self, turn: Turn) -> None:
        """Record the usage, append the exchange (when ``turn.thread`` is set) and apply
        the settlement, even when the writes fail."""


class SeparateWrites:
    """The default: the ledger, then the conversation store."""

    __slots__ = ("_conversations", "_usage")

    def __init__(self, conversations: UserConversations, usage: UserUsage) -> None:
        self._conversations = conversations
        self._usage = usage

    async def commit(self, turn: Turn) -> None:
        try:
            if turn.usage:
                await self._usage.record(turn.usage)
            if turn.thread is not None:
                await self._conversations.append(*turn.thread, turn.messages)
        finally:
            if turn.settlement is not None:
                await turn.settlement.apply()

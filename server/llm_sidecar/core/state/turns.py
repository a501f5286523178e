"""What one answer leaves behind, written as one unit: the bill and the exchange.

The default writes them through the user's ledger and conversation store one
after the other. A shared store may do both in one round trip (the Redis
adapter does: one script per answer instead of two).

A quota window and a bill never disagree: a turn's settlement commits the same
spend its usage rows bill, and is applied with them or not at all. When a turn
cannot be written (a required store is down), the caller gets no answer, but the
provider billed it: :meth:`TurnWriter.commit_undelivered` then records that spend as
refused spend together with the settlement, whenever the store can take it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from llm_sidecar.core.state.conversation import UserConversations
from llm_sidecar.core.state.quota_store import Settlement
from llm_sidecar.core.state.responses import StoredResponse, UserResponses
from llm_sidecar.core.state.usage import UsageRow, UserUsage, undelivered
from llm_sidecar.core.vocabulary.errors import StoreUnavailableError
from llm_sidecar.core.vocabulary.models import ChatMessage

log = logging.getLogger(__name__)


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
    #: The response a response-style call stores (continued from by its id).
    stored: StoredResponse | None = None
    #: Names the turn's write wherever a store can apply it once (a replay, a retry on
    #: a fresh connection): a turn and its undelivered form share it, so a commit whose
    #: reply was lost and the undelivered commit that follows apply once between them.
    write_id: str = field(default_factory=lambda: os.urandom(16).hex())

    def undelivered(self) -> Turn:
        """This turn for a caller who never got the answer: no exchange to remember, no
        response to store, the provider's spend billed as refused, and the same
        settlement (the same spend) under the same write id."""
        return Turn(undelivered(self.usage), None, (), self.settlement, write_id=self.write_id)


class TurnWriter(Protocol):
    """Writes turns of one user."""

    async def commit(self, turn: Turn) -> None:
        """Record the usage, append the exchange (when ``turn.thread`` is set), store the
        response (when ``turn.stored`` is set) and apply the settlement. Raises
        StoreUnavailableError when a required store is down, and then applies nothing:
        the caller follows with :meth:`commit_undelivered`."""

    async def commit_undelivered(self, turn: Turn) -> None:
        """Record ``turn``'s usage and apply its settlement, together and exactly once,
        now or when the store is back; never raises for an outage. (No exchange: the
        caller got no answer.)"""


class SeparateWrites:
    """The default: the conversation store (or the response store), then the ledger,
    then the settlement."""

    __slots__ = ("_conversations", "_responses", "_usage")

    def __init__(
        self, conversations: UserConversations, usage: UserUsage, responses: UserResponses
    ) -> None:
        self._conversations = conversations
        self._usage = usage
        self._responses = responses

    async def commit(self, turn: Turn) -> None:
        # The exchange first: if it cannot be written, nothing has been billed yet.
        if turn.thread is not None:
            await self._conversations.append(*turn.thread, turn.messages)
        if turn.stored is not None:
            await self._responses.put(turn.stored)
        if turn.usage:
            await self._usage.record(turn.usage)
        if turn.settlement is not None:
            await turn.settlement.apply()

    async def commit_undelivered(self, turn: Turn) -> None:
        settlement = turn.settlement
        try:
            if turn.usage:
                await self._usage.record(turn.usage)
        except StoreUnavailableError:
            # The bill cannot be written (a required shared ledger is down): the window
            # must not count the spend either, so the reservation only ends.
            log.error("spend of an undelivered answer not recorded: its ledger is down")
            settlement = settlement.released() if settlement is not None else None
        if settlement is not None:
            await settlement.apply()

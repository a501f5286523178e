"""Where a user's conversations and usage live: one interface, chosen at start-up.

A :class:`StateStore` hands out a :class:`UserState` per user: the user's
conversation view, usage ledger and the writer that records each answer's
turn. Every view is scoped to that one user and takes no user id, so code
holding one user's state has no way to name another user's data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from llm_sidecar.core.state.conversation import (
    HistoryBounds,
    MemoryUserConversations,
    UserConversations,
)
from llm_sidecar.core.state.quota_store import MemoryQuotaLedger, UserQuotas
from llm_sidecar.core.state.responses import (
    DEFAULT_RESPONSE_BOUNDS,
    MemoryUserResponses,
    ResponseBounds,
    UserResponses,
)
from llm_sidecar.core.state.turns import SeparateWrites, TurnWriter
from llm_sidecar.core.state.usage import MemoryUsageLedger, UserUsage


@dataclass(frozen=True, slots=True)
class UserState:
    """One user's stores."""

    conversations: UserConversations
    usage: UserUsage
    turns: TurnWriter
    quotas: UserQuotas
    responses: UserResponses


class StateStore(Protocol):
    """Source of per-user state."""

    def for_user(self, user_id: str) -> UserState:
        """The state of ``user_id``."""
        ...

    @property
    def memory(self) -> MemoryStateStore:
        """The in-process part: all of it without a shared store; with one, what the
        shared store does not hold and the fail-open quota ledger."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class MemoryStateStore:
    """The default: history and stored responses live in each user's manager and die
    with it; usage outlives managers (it is billing data) in a ledger bounded by user
    count."""

    def __init__(
        self,
        bounds: HistoryBounds,
        usage: MemoryUsageLedger | None = None,
        quotas: MemoryQuotaLedger | None = None,
        responses: ResponseBounds = DEFAULT_RESPONSE_BOUNDS,
    ) -> None:
        self.bounds = bounds
        self.response_bounds = responses
        self.usage = usage if usage is not None else MemoryUsageLedger()
        self.quotas = quotas if quotas is not None else MemoryQuotaLedger(keep_seconds=3600.0)

    def for_user(self, user_id: str) -> UserState:
        # A fresh history object per manager: nothing is shared between users.
        conversations = MemoryUserConversations(self.bounds)
        usage = self.usage.for_user(user_id)
        responses = MemoryUserResponses(self.response_bounds)
        writes = SeparateWrites(conversations, usage, responses)
        windows = self.quotas.for_user(user_id)
        return UserState(conversations, usage, writes, UserQuotas(windows, windows), responses)

    @property
    def memory(self) -> MemoryStateStore:
        return self

    async def aclose(self) -> None:
        return None

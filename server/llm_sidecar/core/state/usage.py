"""Usage ledgers (tokens and money): interfaces plus the in-process implementation.

Rows are kept per (session, model, provider) of one user, so any breakdown a
bill needs can be summed from them. Totals are sums of what providers reported;
an estimate is only made when a provider reported nothing, and such requests
are counted apart. Answers a provider billed but the sidecar refused (output
that failed the caller's schema, tool calls with bad arguments) have columns
of their own, so a bill shows them without mixing them into the answers.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from llm_sidecar.core.vocabulary.models import Usage

log = logging.getLogger(__name__)


@dataclass(slots=True)
class UsageRow:
    """Usage of one user in one (session, model, provider) cell."""

    session_id: str = ""
    model: str = ""
    provider: str = ""
    requests: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    estimated_requests: int = 0
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    reasoning_tokens: int = 0
    cost_micro_usd: int = 0
    unpriced_answers: int = 0
    refused_answers: int = 0
    refused_prompt_tokens: int = 0
    refused_completion_tokens: int = 0
    refused_cost_micro_usd: int = 0

    def add(self, other: UsageRow) -> None:
        """Add another row's counters to this one."""
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))


#: Every counter of a row (the labels are not counters).
COUNTERS = (
    "requests",
    "cache_hits",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "estimated_requests",
    "cached_input_tokens",
    "cache_write_input_tokens",
    "reasoning_tokens",
    "cost_micro_usd",
    "unpriced_answers",
    "refused_answers",
    "refused_prompt_tokens",
    "refused_completion_tokens",
    "refused_cost_micro_usd",
)


def total_of(rows: Iterable[UsageRow]) -> UsageRow:
    """Sum of rows (labels left empty)."""
    total = UsageRow()
    for row in rows:
        total.add(row)
    return total


def answer_row(
    session_id: str,
    model: str,
    provider: str,
    usage: Usage,
    *,
    cached: bool,
    cost: int | None,
) -> UsageRow:
    """The counters one answer adds. A cache hit costs no provider tokens."""
    if cached:
        return UsageRow(session_id, model, provider, requests=1, cache_hits=1)
    return UsageRow(
        session_id,
        model,
        provider,
        requests=1,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
        estimated_requests=1 if usage.estimated else 0,
        cached_input_tokens=usage.cached_input_tokens,
        cache_write_input_tokens=usage.cache_write_input_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        cost_micro_usd=cost or 0,
        unpriced_answers=1 if cost is None else 0,
    )


def refused_row(
    session_id: str, model: str, provider: str, usage: Usage, *, cost: int | None
) -> UsageRow:
    """The counters of an answer the provider billed and the sidecar refused."""
    return UsageRow(
        session_id,
        model,
        provider,
        refused_answers=1,
        refused_prompt_tokens=usage.prompt_tokens,
        refused_completion_tokens=usage.completion_tokens,
        refused_cost_micro_usd=cost or 0,
        unpriced_answers=1 if cost is None else 0,
    )


def undelivered(rows: Sequence[UsageRow]) -> tuple[UsageRow, ...]:
    """The rows of a call whose answer never reached the caller (it could not be
    recorded): a provider's answer stays billed, as refused spend; a cache hit, which
    cost nothing, leaves nothing."""
    out = []
    for row in rows:
        if row.cache_hits:
            continue
        if not row.requests:
            out.append(row)  # already refused spend
            continue
        out.append(
            UsageRow(
                row.session_id,
                row.model,
                row.provider,
                refused_answers=row.requests,
                refused_prompt_tokens=row.prompt_tokens,
                refused_completion_tokens=row.completion_tokens,
                refused_cost_micro_usd=row.cost_micro_usd,
                unpriced_answers=row.unpriced_answers,
            )
        )
    return tuple(out)


class UserUsage(Protocol):
    """One user's ledger."""

    async def record(self, rows: Sequence[UsageRow]) -> None:
        """Add counters, each row to the cell its labels name."""

    async def rows(self, session_id: str | None = None) -> list[UsageRow]:
        """Rows of this user, optionally of one session."""


class MemoryUserUsage:
    """In-process ledger of one user."""

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str, str], UsageRow] = {}

    async def record(self, rows: Sequence[UsageRow]) -> None:
        for delta in rows:
            key = (delta.session_id, delta.model, delta.provider)
            row = self._rows.get(key)
            if row is None:
                row = self._rows[key] = UsageRow(*key)
            row.add(delta)

    async def rows(self, session_id: str | None = None) -> list[UsageRow]:
        return [
            UsageRow(**{f: getattr(r, f) for f in UsageRow.__slots__})
            for r in self._rows.values()
            if session_id is None or r.session_id == session_id
        ]


class MemoryUsageLedger:
    """Per-user in-process ledgers. Outlive managers (usage is billing data), bounded by
    user count: the least recently used user's figures go first."""

    def __init__(self, max_users: int = 100_000) -> None:
        self.max_users = max_users
        self._users: OrderedDict[str, MemoryUserUsage] = OrderedDict()
        #: Users whose figures were dropped to keep the bound (a metric and a log line:
        #: a bill that loses figures must say so; keep usage in Redis to lose none).
        self.dropped_users = 0

    def for_user(self, user_id: str) -> MemoryUserUsage:
        ledger = self._users.get(user_id)
        if ledger is None:
            ledger = self._users[user_id] = MemoryUserUsage()
            while len(self._users) > self.max_users:
                self._users.popitem(last=False)
                self.dropped_users += 1
                log.warning(
                    "usage ledger full: the least recently used user's figures were dropped",
                    extra={"dropped_users": self.dropped_users, "max_users": self.max_users},
                )
        else:
            self._users.move_to_end(user_id)
        return ledger

"""What a call costs and whether a user's quotas admit it.

The pipeline asks :class:`Billing` twice per call that reaches a provider:
before it (``admit``: reserve the worst case) and after it (``charges``: the
ledger rows and the exact spend, priced per token class). A cache hit reaches
no provider and is neither admitted nor charged. A call's output cap, which
makes its worst case a real bound, is set while the call is prepared
(``output_cap``), so what is sent is decided in one place.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llm_sidecar.core.admission.pricing import PriceBook
from llm_sidecar.core.admission.quotas import (
    DEFAULT_QUOTA_LIMITS,
    QuotaGate,
    QuotaView,
    Reservation,
    Spend,
    input_token_bound,
)
from llm_sidecar.core.observability import NOOP, Observability
from llm_sidecar.core.state.quota_store import UserQuotas
from llm_sidecar.core.state.usage import UsageRow, answer_row, refused_row
from llm_sidecar.core.vocabulary.models import ChatRequest, Usage


@dataclass(frozen=True, slots=True)
class Charges:
    """One call's ledger rows and what it spent against the quotas."""

    rows: tuple[UsageRow, ...]
    spend: Spend
    #: The accepted answer's cost (None: unknown, no price; 0 for a cache hit).
    cost: int | None


@dataclass(frozen=True, slots=True)
class Worst:
    """The most one call may use: of ``route``, at most ``input_tokens`` in and
    ``output_tokens`` out (0 for a call that produces no tokens, such as embeddings)."""

    route: str
    input_tokens: int
    output_tokens: int


class Billing:
    """Prices and quotas for every user; one per process, holds no user's data."""

    def __init__(
        self,
        prices: PriceBook | None = None,
        gate: QuotaGate | None = None,
        *,
        observability: Observability = NOOP,
    ) -> None:
        self.prices = prices or PriceBook()
        self.gate = gate or QuotaGate(DEFAULT_QUOTA_LIMITS)
        self._obs = observability

    @property
    def default_output_cap(self) -> int:
        """The output cap of a call that sets none, when a quota needs one."""
        return self.gate.limits.default_max_tokens

    def output_cap(self) -> int | None:
        """The output cap a call without one must be sent with, or None when no quota
        counts tokens or money (then its output needs no bound)."""
        limits = self.gate.limits
        return limits.default_max_tokens if self.gate.active and limits.caps_output else None

    def input_bound(self, request: ChatRequest) -> int:
        """At least as many input tokens as ``request`` can be billed for."""
        return input_token_bound(request, self.gate.limits.tokens_per_image)

    async def admit(
        self, quotas: UserQuotas, worst_case: Callable[[], Worst], deadline: float | None
    ) -> Reservation | None:
        """Reserve the call's worst case (worked out only when a quota is on) in the
        user's ``quotas``; None when no quota is on."""
        gate = self.gate
        if not gate.active:
            return None
        worst = worst_case()
        usd = 0
        if gate.limits.needs_prices:
            usd = self.prices.worst_case(worst.route, worst.input_tokens, worst.output_tokens) or 0
        spend = Spend(requests=1, tokens=worst.input_tokens + worst.output_tokens, micro_usd=usd)
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        return await gate.admit(quotas, spend, left)

    async def quota_status(self, quotas: UserQuotas) -> list[QuotaView]:
        """The user's active quotas in their current windows."""
        return await self.gate.status(quotas)

    def charges(
        self,
        session_id: str,
        route: str,
        refused: Sequence[tuple[str, Usage]],
        answer: tuple[str, Usage, bool] | None = None,
    ) -> Charges:
        """Rows and spend of a call: its refused-but-billed answers and, when it was
        answered, the answer (provider, usage, cached)."""
        rows: list[UsageRow] = []
        tokens = micro_usd = requests = 0
        for provider, usage in refused:
            refused_cost = self.prices.cost(route, provider, usage)
            rows.append(refused_row(session_id, route, provider, usage, cost=refused_cost))
            tokens += usage.prompt_tokens + usage.completion_tokens
            micro_usd += self._spent(route, provider, refused_cost)
        cost: int | None = None
        if answer is not None:
            provider, usage, cached = answer
            requests = 1
            cost = 0 if cached else self.prices.cost(route, provider, usage)
            rows.append(answer_row(session_id, route, provider, usage, cached=cached, cost=cost))
            if not cached:
                tokens += usage.total_tokens
                micro_usd += self._spent(route, provider, cost)
        return Charges(tuple(rows), Spend(requests, tokens, micro_usd), cost)

    def _spent(self, route: str, provider: str, cost: int | None) -> int:
        if cost is None:
            return 0
        if cost:
            self._obs.cost.add(cost, {"llm_sidecar.route": route, "llm_sidecar.provider": provider})
        return cost

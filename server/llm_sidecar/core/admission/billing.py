"""What a call costs and whether a user's quotas admit it.

The manager asks :class:`Billing` twice per call that reaches a provider:
before it (``admit``: reserve the worst case, cap the output so the worst
case is a real bound) and after it (``charges``: the ledger rows and the
exact spend, priced per token class). A cache hit reaches no provider and is
neither admitted nor charged.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass

from llm_sidecar.core.admission.pricing import PriceBook
from llm_sidecar.core.admission.quotas import (
    DEFAULT_QUOTA_LIMITS,
    QuotaGate,
    Reservation,
    Spend,
    input_token_bound,
)
from llm_sidecar.core.observability import NOOP, Observability
from llm_sidecar.core.state.quota_store import UserQuota
from llm_sidecar.core.state.usage import UsageRow, answer_row, refused_row
from llm_sidecar.core.vocabulary.models import ChatRequest, Usage


@dataclass(frozen=True, slots=True)
class Charges:
    """One call's ledger rows and what it spent against the quotas."""

    rows: tuple[UsageRow, ...]
    spend: Spend
    #: The accepted answer's cost (None: unknown, no price; 0 for a cache hit).
    cost: int | None


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

    async def admit(
        self,
        user_id: str,
        quota: UserQuota,
        route: str,
        providers: Sequence[str],
        request: ChatRequest,
        deadline: float | None,
    ) -> tuple[ChatRequest, Reservation | None]:
        """Reserve the call's worst case; the request to send (its output capped when a
        quota needs a bound) and the reservation (None when no quota is on)."""
        gate = self.gate
        if not gate.active:
            return request, None
        limits = gate.limits
        if limits.caps_output and request.params.max_tokens is None:
            params = dataclasses.replace(request.params, max_tokens=limits.default_max_tokens)
            request = dataclasses.replace(request, params=params)
        output = request.params.max_tokens or limits.default_max_tokens
        inputs = input_token_bound(request, limits.tokens_per_image)
        usd = 0
        if limits.needs_prices:
            usd = self.prices.worst_case(route, providers, inputs, output) or 0
        worst = Spend(requests=1, tokens=inputs + output, micro_usd=usd)
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        return request, await gate.admit(user_id, quota, worst, left)

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

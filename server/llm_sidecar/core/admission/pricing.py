"""Prices and costs. Money is counted in integer millionths of a US dollar (micro-USD).

A price is USD per million tokens of each class, so the cost of ``n`` tokens
in micro-USD is exactly ``n * price``; the classes' costs are summed exactly
(as decimals) and the sum is rounded half up to a whole micro-USD once per
answer. A provider with no price has an unknown cost (None), never 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

from llm_sidecar.core.vocabulary.models import Usage


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens, per token class.

    ``input`` prices uncached input tokens and ``output`` non-reasoning output
    tokens; each other class is priced apart (set it to the input or output
    price when the provider does not distinguish it).
    """

    input: Decimal
    output: Decimal
    cached_input: Decimal
    cache_write_input: Decimal
    reasoning: Decimal

    def exact_cost(self, usage: Usage) -> Decimal:
        """The cost of ``usage`` in micro-USD, unrounded."""
        # Cached reads and cache writes are parts of prompt_tokens, reasoning a part
        # of completion_tokens: each token is priced once, in its own class.
        plain_input = usage.prompt_tokens - usage.cached_input_tokens
        plain_input -= usage.cache_write_input_tokens
        plain_output = usage.completion_tokens - usage.reasoning_tokens
        return (
            max(plain_input, 0) * self.input
            + usage.cached_input_tokens * self.cached_input
            + usage.cache_write_input_tokens * self.cache_write_input
            + max(plain_output, 0) * self.output
            + usage.reasoning_tokens * self.reasoning
        )

    def cost_micro_usd(self, usage: Usage) -> int:
        """The cost of ``usage`` in whole micro-USD (rounded half up)."""
        return int(self.exact_cost(usage).to_integral_value(ROUND_HALF_UP))

    def worst_micro_usd(self, input_tokens: int, output_tokens: int) -> int:
        """The most ``input_tokens`` in and ``output_tokens`` out can cost, whatever
        their classes turn out to be (rounded up)."""
        most_in = max(self.input, self.cached_input, self.cache_write_input)
        most_out = max(self.output, self.reasoning)
        exact = input_tokens * most_in + output_tokens * most_out
        return int(exact.to_integral_value(ROUND_CEILING))


class PriceBook:
    """Prices per (route, provider); a pair without one costs None (unknown). It knows
    each route's providers, so the worst case of a route covers its whole chain."""

    def __init__(
        self,
        prices: dict[tuple[str, str], Price] | None = None,
        chains: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        self._prices = dict(prices or {})
        self._chains = dict(chains or {})

    def price(self, route: str, provider: str) -> Price | None:
        """The price of ``provider`` when answering ``route``."""
        return self._prices.get((route, provider))

    def cost(self, route: str, provider: str, usage: Usage) -> int | None:
        """Micro-USD of one answer, or None when that provider has no price."""
        price = self._prices.get((route, provider))
        return None if price is None else price.cost_micro_usd(usage)

    def worst_case(self, route: str, input_tokens: int, output_tokens: int) -> int | None:
        """The most one answer of ``route`` can cost from any provider of its chain (None
        when one of them has no price)."""
        worst = 0
        for name in self._chains.get(route, ()):
            price = self._prices.get((route, name))
            if price is None:
                return None
            worst = max(worst, price.worst_micro_usd(input_tokens, output_tokens))
        return worst


Number = float | str | Decimal


def price_of(
    input: Number,
    output: Number,
    *,
    cached_input: Number | None = None,
    cache_write_input: Number | None = None,
    reasoning: Number | None = None,
) -> Price:
    """A price from configuration numbers (read through their text, so 0.1 stays 0.1).
    Unset classes take the input price (cached, cache-write) or the output price
    (reasoning)."""
    inp = Decimal(str(input))
    out = Decimal(str(output))
    return Price(
        input=inp,
        output=out,
        cached_input=inp if cached_input is None else Decimal(str(cached_input)),
        cache_write_input=inp if cache_write_input is None else Decimal(str(cache_write_input)),
        reasoning=out if reasoning is None else Decimal(str(reasoning)),
    )

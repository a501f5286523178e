"""Prices, worst cases and quota windows: pure functions, checked exhaustively or by
Hypothesis."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from llm_sidecar.core.admission.pricing import PriceBook, price_of
from llm_sidecar.core.admission.quotas import QuotaLimits
from llm_sidecar.core.vocabulary.models import Usage

PRICES = st.decimals(min_value=0, max_value=1000, places=4, allow_nan=False)
COUNTS = st.integers(min_value=0, max_value=2_000_000)


@given(PRICES, PRICES, PRICES, PRICES, PRICES, COUNTS, COUNTS, COUNTS, COUNTS, COUNTS)
def test_the_worst_case_bounds_every_split_of_the_same_tokens(
    p_in: Decimal,
    p_out: Decimal,
    p_cached: Decimal,
    p_write: Decimal,
    p_reason: Decimal,
    plain_in: int,
    cached: int,
    written: int,
    plain_out: int,
    reasoning: int,
) -> None:
    price = price_of(
        p_in, p_out, cached_input=p_cached, cache_write_input=p_write, reasoning=p_reason
    )
    prompt = plain_in + cached + written
    completion = plain_out + reasoning
    usage = Usage(prompt, completion, prompt + completion, False, cached, written, reasoning)
    exact = (
        plain_in * p_in
        + cached * p_cached
        + written * p_write
        + plain_out * p_out
        + reasoning * p_reason
    )
    cost = price.cost_micro_usd(usage)
    assert abs(cost - exact) <= Decimal("0.5")
    assert price.worst_micro_usd(prompt, completion) >= exact


def test_unset_classes_take_the_input_or_output_price() -> None:
    price = price_of("0.1", 0.3)
    assert price.cached_input == price.cache_write_input == Decimal("0.1")
    assert price.reasoning == Decimal("0.3")
    # 3 tokens at 0.1 and 1 at 0.3: exactly 0.6 micro-USD, rounded half up to 1.
    assert price.cost_micro_usd(Usage(3, 1, 4)) == 1
    assert price.cost_micro_usd(Usage(2, 0, 2)) == 0


def test_a_route_with_an_unpriced_provider_has_no_worst_case() -> None:
    prices = {("m", "a"): price_of(1, 2), ("m", "b"): price_of(3, 1), ("n", "a"): price_of(1, 2)}
    book = PriceBook(prices, {"m": ("a", "b"), "n": ("a", "c")})
    assert book.worst_case("m", 10, 10) == 40
    assert book.worst_case("n", 10, 10) is None
    assert book.cost("m", "c", Usage(1, 1, 2)) is None


def test_calendar_windows_are_utc_days_and_months() -> None:
    limits = QuotaLimits()
    for year, month in [(2026, 1), (2026, 2), (2028, 2), (2026, 12)]:
        start = calendar.timegm((year, month, 1, 0, 0, 0))
        last_day = calendar.monthrange(year, month)[1]
        end = calendar.timegm((year + month // 12, month % 12 + 1, 1, 0, 0, 0))
        assert end - start == last_day * 86400
        for moment in (start, start + 3600, end - 0.001):
            assert limits.window("month", moment) == (f"{year:04d}{month:02d}", float(end))
        assert limits.window("month", end)[0] != f"{year:04d}{month:02d}"
    moment = datetime(2026, 11, 25, 23, 59, 59, tzinfo=UTC).timestamp()
    day, ends = limits.window("day", moment)
    assert datetime.fromtimestamp(ends, UTC) == datetime(2026, 11, 26, tzinfo=UTC)
    assert limits.window("day", ends) != (day, ends)
    minute, ends = limits.window("minute", 120.5)
    assert (minute, ends) == ("2", 180.0)


def test_short_windows_for_tests_are_fixed_periods() -> None:
    limits = QuotaLimits(minute_seconds=2, day_seconds=10, month_seconds=30)
    assert limits.window("minute", 5.0) == ("2", 6.0)
    assert limits.window("day", 5.0) == ("0", 10.0)
    assert limits.window("month", 31.0) == ("1", 60.0)

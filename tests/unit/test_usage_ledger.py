"""The in-memory usage ledger's bound: dropping a user's figures is counted."""

from __future__ import annotations

from llm_sidecar.core.state.usage import MemoryUsageLedger, answer_row, refused_row, total_of
from llm_sidecar.core.vocabulary.models import Usage


async def test_dropping_a_users_figures_is_counted() -> None:
    ledger = MemoryUsageLedger(max_users=2)
    for user in ("a", "b", "c"):
        await ledger.for_user(user).record(
            [answer_row("s", "m", "p", Usage(1, 1, 2), cached=False, cost=3)]
        )
    assert ledger.dropped_users == 1
    assert await ledger.for_user("a").rows() == []  # the least recently used went first
    (row,) = await ledger.for_user("c").rows()
    assert (row.requests, row.cost_micro_usd) == (1, 3)


async def test_refused_and_unpriced_answers_sum_apart() -> None:
    ledger = MemoryUsageLedger()
    user = ledger.for_user("a")
    await user.record(
        [
            refused_row("s", "m", "p", Usage(5, 7, 12), cost=None),
            answer_row("s", "m", "q", Usage(2, 3, 5), cached=False, cost=4),
        ]
    )
    total = total_of(await user.rows())
    assert (total.requests, total.refused_answers, total.unpriced_answers) == (1, 1, 1)
    assert (total.refused_prompt_tokens, total.refused_completion_tokens) == (5, 7)
    assert (total.prompt_tokens, total.cost_micro_usd, total.refused_cost_micro_usd) == (2, 4, 0)

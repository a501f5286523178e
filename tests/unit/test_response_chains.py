"""Stored response chains in memory: least-recently-used bounds, TTLs, gaps and cuts."""

from __future__ import annotations

from llm_sidecar.core.state.responses import (
    MemoryUserResponses,
    ResponseBounds,
    StoredResponse,
    chain_items,
    new_response_id,
)
from llm_sidecar.core.vocabulary.models import ChatMessage
from llm_sidecar.core.vocabulary.tools import ToolCall


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def response(rid: str, ancestors: tuple[str, ...], *messages: ChatMessage) -> StoredResponse:
    *given, answer = messages
    return StoredResponse(rid, "", 0.0, ancestors, tuple(given), (answer,), b"{}")


async def test_the_least_recently_used_go_first_and_ttls_hold() -> None:
    clock = Clock()
    store = MemoryUserResponses(ResponseBounds(ttl_seconds=10, max_per_user=2), clock)
    a, b, c = (response(f"r{i}", (), ChatMessage("user", "q"), ChatMessage("assistant", "a"))
               for i in range(3))  # fmt: skip
    await store.put(a)
    await store.put(b)
    assert await store.get("r0") is a  # read: now the most recent
    await store.put(c)
    assert await store.get("r1") is None and await store.get("r0") is a
    clock.now = 11
    assert await store.get("r0") is None and len(store) == 1


async def test_a_chain_starts_again_after_a_gap_and_a_cut_starts_at_a_user_turn() -> None:
    store = MemoryUserResponses(ResponseBounds())
    call = ToolCall("c1", "tool", "{}")
    await store.put(response("r0", (), ChatMessage("user", "root"), ChatMessage("assistant", "A")))
    await store.put(
        response(
            "r1",
            ("r0",),
            ChatMessage("user", "use the tool"),
            ChatMessage("assistant", "", tool_calls=(call,)),
        )
    )
    await store.put(
        response(
            "r2",
            ("r0", "r1"),
            ChatMessage("tool", "result", tool_call_id="c1"),
            ChatMessage("assistant", "done"),
        )
    )
    whole = await store.chain("r2")
    assert whole is not None and [r.id for r in whole] == ["r0", "r1", "r2"]
    texts = [i.message.content for i in chain_items(whole, 1 << 20)]
    assert texts == ["root", "A", "use the tool", "", "result", "done"]
    # Deleting the middle one: the chain starts after it, at its first user turn (none
    # here: the tool result without its call goes too).
    await store.delete("r1")
    after_gap = await store.chain("r2")
    assert after_gap is not None and [r.id for r in after_gap] == ["r2"]
    assert chain_items(after_gap, 1 << 20) == []
    # A byte bound that keeps only the newest messages: the cut starts at a user turn.
    assert await store.delete("r0")
    await store.put(
        response("r1", (), ChatMessage("user", "x" * 100), ChatMessage("assistant", "y" * 100))
    )
    await store.put(
        response("r3", ("r1",), ChatMessage("user", "short"), ChatMessage("assistant", "ok"))
    )
    cut = chain_items(await store.chain("r3") or [], 150)
    assert [i.message.content for i in cut] == ["short", "ok"]
    assert new_response_id() != new_response_id()

"""Every token class a provider bills (cached and cache-write input, reasoning output)
reaches the caller per answer and sums exactly into GetUsage, in memory and in Redis."""

from __future__ import annotations

from typing import Any

import pytest

from llm_manager_client import AsyncLLMManagerClient, Usage, UserContext
from tests.support.sidecar import make_settings, provider


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
@pytest.mark.parametrize("kind", ["openai", "anthropic"])
async def test_token_classes_are_reported_and_summed_exactly(
    kind: str, stream: bool, store_settings: dict[str, Any], upstream_factory, sidecar_factory
) -> None:
    up = await upstream_factory("up")
    up.cached_tokens = 7
    up.cache_write_tokens = 3 if kind == "anthropic" else 0  # OpenAI reports no cache writes
    up.reasoning_tokens = 5 if kind == "openai" else 0  # Anthropic reports no reasoning split
    url = up.url if kind == "openai" else up.anthropic_url
    settings = make_settings([provider("up", url, kind=kind)], **store_settings)
    sidecar = await sidecar_factory(settings)
    answers: list[Usage] = []
    async with AsyncLLMManagerClient(
        f"127.0.0.1:{sidecar.port}", UserContext("alice", session_id="s1"), timeout=10
    ) as client:
        for i in range(3):
            if stream:
                chunks = [c async for c in client.ask_stream(f"question {i}")]
                metadata = chunks[-1].metadata
            else:
                metadata = (await client.ask_full(f"question {i}")).metadata
            assert metadata is not None
            sent = up.chat_requests[-1].body
            billed = up.usage(sent, up.answer_text(sent))  # every input and output token
            assert metadata.usage == Usage(
                prompt_tokens=billed["prompt_tokens"],
                completion_tokens=billed["completion_tokens"],
                total_tokens=billed["total_tokens"],
                estimated=False,
                cached_input_tokens=7,
                cache_write_input_tokens=up.cache_write_tokens,
                reasoning_tokens=up.reasoning_tokens,
            )
            answers.append(metadata.usage)
        # A cache hit bills nothing, in any class.
        again = await client.ask_full("a fresh question", skip_history=True)
        repeat = await client.ask_full("a fresh question", skip_history=True)
        assert repeat.metadata.cached and repeat.metadata.usage.cached_input_tokens == 0
        answers.append(again.metadata.usage)
        report = await client.get_usage()
    (row,) = report.rows
    for total in (report.total, row):
        for field in (
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "cached_input_tokens",
            "cache_write_input_tokens",
            "reasoning_tokens",
        ):
            assert getattr(total, field) == sum(getattr(u, field) for u in answers), field
    assert report.total.cached_input_tokens == 28 and report.total.requests == 5
    assert report.total.cache_hits == 1

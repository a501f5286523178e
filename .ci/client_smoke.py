"""Calls a running sidecar with nothing but the lean client installed (see client-only.sh)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys

from llm_manager_client import AsyncLLMManagerClient, UnauthenticatedError, UserContext

# What a backend that only calls the sidecar must not have to install.
for heavy in ("aiohttp", "redis", "opentelemetry.sdk", "pydantic_settings", "pydantic", "llm_sidecar"):
    assert importlib.util.find_spec(heavy) is None, f"{heavy} is installed with the client"


async def main(target: str) -> None:
    async with AsyncLLMManagerClient(target, UserContext("ci-client", session_id="s1")) as client:
        text = await client.ask("hello from the lean client")
        assert text.startswith("[simulated] answer"), text
        full = await client.ask_full("and again")
        assert full.metadata.provider == "simulated"
        chunks = [c async for c in client.ask_stream("stream it")]
        assert chunks[-1].metadata is not None and "".join(c.delta for c in chunks)
        usage = await client.get_usage()
        assert usage.total.requests == 3, usage
        try:
            await client.with_context(UserContext("")).ask("no user")
        except UnauthenticatedError as error:
            assert error.field == "x-user-id"
        else:
            raise AssertionError("a call without x-user-id was accepted")
    print(f"client-only: ask, ask_full, ask_stream, get_usage and a refused call against {target}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))

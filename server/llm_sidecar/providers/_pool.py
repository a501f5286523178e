"""One provider's HTTP connections: a sized pool, and a visible, bounded queue for it.

aiohttp queues a request silently when its connector is full. Here every call
first takes a slot from the provider's own gate, sized by
``max_connections``: calls beyond it wait in a queue that is counted (a metric
and an admin figure), and a call that cannot get a slot within
``max_connection_wait_seconds`` fails at once with ``pool_exhausted``, which
fails over without counting against the provider's health. Nor does a call wait
past its own deadline: it gives up in time for the refusal to reach the caller
first, so the caller learns the pool was full instead of just running out of time.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from llm_sidecar.core.vocabulary.errors import ErrorKind, ProviderError

# Connections beyond the gate's slots, for health probes (they do not queue behind calls).
_PROBE_HEADROOM = 4
#: How long before its deadline a queued call gives up: time for the refusal to travel
#: back and arrive before the caller's own deadline does.
DEADLINE_MARGIN_SECONDS = 0.05


class HttpPool:
    """An aiohttp session for one provider, and the gate in front of it."""

    def __init__(self, *, max_connections: int, max_wait_seconds: float) -> None:
        limit = max_connections + _PROBE_HEADROOM
        connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, ttl_dns_cache=300)
        #: Keep-alive, no per-request timeout: the router bounds every attempt. No cookie
        #: jar: the session serves every user, so a cookie an upstream set on one user's
        #: answer would go out with the next user's call.
        self.session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),
            json_serialize=json.dumps,
            raise_for_status=False,
            auto_decompress=True,
        )
        self.max_connections = max_connections
        self.max_wait_seconds = max_wait_seconds
        #: Calls holding a connection now, and calls queued for one.
        self.in_use = 0
        self.waiting = 0
        self._free = asyncio.Semaphore(max_connections)

    @asynccontextmanager
    async def connection(self, deadline: float | None = None) -> AsyncIterator[None]:
        """Hold one of the provider's connection slots for a call that must be answered
        by ``deadline`` (``time.monotonic()``; None: no deadline)."""
        if self._free.locked():
            wait = self.max_wait_seconds
            within = f"within {wait:g}s"
            if deadline is not None:
                left = deadline - time.monotonic() - DEADLINE_MARGIN_SECONDS
                if left < wait:
                    wait, within = max(left, 0.0), "before the call's deadline"
            self.waiting += 1
            try:
                async with asyncio.timeout(wait):
                    await self._free.acquire()
            except TimeoutError:
                raise ProviderError(
                    ErrorKind.POOL_EXHAUSTED,
                    f"no free connection {within} (all {self.max_connections} in use)",
                ) from None
            finally:
                self.waiting -= 1
        else:
            await self._free.acquire()
        self.in_use += 1
        try:
            yield
        finally:
            self.in_use -= 1
            self._free.release()

    @property
    def closed(self) -> bool:
        return self.session.closed

    async def aclose(self) -> None:
        await self.session.close()


class HttpPools:
    """Every provider's pool, closed together at shutdown."""

    def __init__(self) -> None:
        self.pools: list[HttpPool] = []

    def new(self, *, max_connections: int, max_wait_seconds: float) -> HttpPool:
        pool = HttpPool(max_connections=max_connections, max_wait_seconds=max_wait_seconds)
        self.pools.append(pool)
        return pool

    @property
    def closed(self) -> bool:
        return all(pool.closed for pool in self.pools)

    async def aclose(self) -> None:
        await asyncio.gather(*(pool.aclose() for pool in self.pools))

"""One provider's HTTP connections: a sized pool, and a visible, bounded queue for it.

aiohttp queues a request silently when its connector is full. Here every call
first takes a slot from the provider's own gate, sized by
``max_connections``: calls beyond it wait in a queue that is counted (a metric
and an admin figure), and a call that cannot get a slot within
``max_connection_wait_seconds`` fails at once with ``pool_exhausted``, which
fails over without counting against the provider's health.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from llm_sidecar.core.errors import ErrorKind, ProviderError

# Connections beyond the gate's slots, for health probes (they do not queue behind calls).
_PROBE_HEADROOM = 4


class HttpPool:
    """An aiohttp session for one provider, and the gate in front of it."""

    def __init__(self, *, max_connections: int, max_wait_seconds: float) -> None:
        limit = max_connections + _PROBE_HEADROOM
        connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, ttl_dns_cache=300)
        #: Keep-alive, no per-request timeout: the router bounds every attempt.
        self.session = aiohttp.ClientSession(
            connector=connector,
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
    async def connection(self) -> AsyncIterator[None]:
        """Hold one of the provider's connection slots for a call."""
        if self._free.locked():
            self.waiting += 1
            try:
                async with asyncio.timeout(self.max_wait_seconds):
                    await self._free.acquire()
            except TimeoutError:
                raise ProviderError(
                    ErrorKind.POOL_EXHAUSTED,
                    f"no free connection within {self.max_wait_seconds:g}s "
                    f"(all {self.max_connections} in use)",
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

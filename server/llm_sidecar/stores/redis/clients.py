"""The redis-py clients, one server or a cluster, each with a bounded wait for a connection.

On one server a :class:`BlockingConnectionPool` makes a command wait for a free
connection, up to the socket timeout. redis-py's cluster client has no such
pool: past ``max_connections`` busy connections to a node it raises
``MaxConnectionsError`` at once, so a burst of calls (600 arriving together at
three replicas) failed with UNAVAILABLE on a cluster while the same burst on
one server just waited its turn. :class:`_WaitingCluster` puts the same
bounded wait in front of every command.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from llm_sidecar.config import RedisSettings


def fresh_connection_retry() -> Retry:
    """One more try, at once, on a new connection, after a connection error.

    A connection pooled before Redis restarted is dead: its first command fails with a
    connection error (the socket was reset). redis-py's connections make no retry unless
    given one, so each dead connection failed one call, and under concurrency the
    pool handed out dead ones for minutes. Retrying is safe for every command the
    sidecar sends: writes carry a write id that a script applies once, reservations
    are keyed by their id, and the rest read. A timeout is not retried: Redis that is
    slow counts as down (``socket_timeout_seconds``).
    """
    return Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))


def _connections(settings: RedisSettings) -> dict[str, Any]:
    """What every connection of either client is made with."""
    return {
        "max_connections": settings.max_connections,
        "socket_timeout": settings.socket_timeout_seconds,
        "socket_connect_timeout": settings.connect_timeout_seconds,
        "health_check_interval": settings.health_check_interval_seconds,
        "client_name": settings.client_name,
    }


def client(settings: RedisSettings) -> aioredis.Redis:
    """One server: a blocking pool (callers wait for a free connection, bounded)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.url,
        timeout=settings.socket_timeout_seconds,
        retry=fresh_connection_retry(),
        **_connections(settings),
    )
    return aioredis.Redis(connection_pool=pool)


class _WaitingCluster(RedisCluster):
    """A cluster client whose commands wait, bounded, for one of ``max_connections``.

    The bound is over every node together, so no node can be asked for more
    connections than it allows: the same concurrency as one server's pool.
    """

    def __init__(self, *args: Any, wait_seconds: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._room = asyncio.Semaphore(kwargs["max_connections"])
        self._wait_seconds = wait_seconds

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if self._room.locked():
            try:
                async with asyncio.timeout(self._wait_seconds):
                    await self._room.acquire()
            except TimeoutError:
                # What the one-server pool raises when it times out: a store fault.
                raise RedisConnectionError("No connection available.") from None
        else:
            await self._room.acquire()
        try:
            return await super().execute_command(*args, **kwargs)
        finally:
            self._room.release()


def cluster_client(settings: RedisSettings) -> RedisCluster:
    """A Redis Cluster, discovered from the node in the URL. Every script touches one
    user's keys, which share a hash slot, so each runs on the node owning that slot."""
    return _WaitingCluster.from_url(
        settings.url, wait_seconds=settings.socket_timeout_seconds, **_connections(settings)
    )

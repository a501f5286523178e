"""One user's quota windows in Redis: one script to reserve, one to settle, both on
the user's hash slot, so every replica admits against the same figures."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ClusterDownError, ClusterError, TryAgainError

from llm_sidecar.core.state.quota_store import Claim, Refusal
from llm_sidecar.stores.redis.backend import FAULTS, RedisBackend
from llm_sidecar.stores.redis.keys import MARKER_TTL_MS, UserKeys

# While a slot migrates, a script whose keys are split between the two nodes is
# refused with TRYAGAIN and runs nothing (redis-py retries a few times, then gives
# up with ClusterError "TTL exhausted"): it is safe to run again, shortly.
_TRY_AGAIN_DELAY = 0.02
_TRY_AGAIN_SECONDS = 5.0


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


class RedisUserQuota:
    """Reserves and settles one user's quota windows in Redis.

    While Redis is unreachable, reserving and reading raise StoreUnavailableError
    (the quota gate then fails closed or open); a settle is queued and replayed,
    which the settled marker makes safe to run twice.
    """

    __slots__ = ("_backend", "_keep_ms", "_keys")

    def __init__(self, backend: RedisBackend, keys: UserKeys, keep_seconds: float) -> None:
        self._backend = backend
        self._keys = keys
        self._keep_ms = _ms(keep_seconds)

    async def reserve(
        self, reservation_id: str, claims: Sequence[Claim], expires_at: float, now: float
    ) -> Refusal | None:
        backend = self._backend
        if not backend.up:
            raise backend.unavailable()
        keys = self.bookkeeping() + [self._keys.quota_window(c.key) for c in claims]
        args: list[str | int] = [reservation_id, _ms(now), _ms(expires_at)]
        for claim in claims:
            args += [claim.amount, claim.limit, _ms(claim.ends_at) + self._keep_ms]
        reply = await self._run(backend.quota_reserve_script, keys, args)
        index = int(reply[0])
        if index == 0:
            return None
        return Refusal(claims[index - 1], int(reply[1]), int(reply[2]))

    def window_parts(
        self, claims: Sequence[Claim], actual: Sequence[int]
    ) -> tuple[list[str], list[str | int]]:
        """The window keys of ``claims`` and their amount / forget-at arguments, as the
        settle step of a script reads them."""
        keys = [self._keys.quota_window(c.key) for c in claims]
        args: list[str | int] = []
        for claim, amount in zip(claims, actual, strict=True):
            args += [amount, _ms(claim.ends_at) + self._keep_ms]
        return keys, args

    def bookkeeping(self) -> list[str]:
        """The held-reservations hash and the expiry set."""
        return [self._keys.quota_held, self._keys.quota_expiry]

    async def settle(
        self, reservation_id: str, claims: Sequence[Claim], actual: Sequence[int]
    ) -> None:
        windows, window_args = self.window_parts(claims, actual)
        keys = [*self.bookkeeping(), self._keys.record("q" + reservation_id), *windows]
        args: list[str | int] = [reservation_id, MARKER_TTL_MS, *window_args]
        script = self._backend.quota_settle_script

        async def op() -> None:
            await script(keys=keys, args=args)

        await self._backend.write(op, replay=True)

    async def figures(self, claims: Sequence[Claim], now: float) -> list[tuple[int, int]]:
        backend = self._backend
        if not backend.up:
            raise backend.unavailable()
        keys = self.bookkeeping() + [self._keys.quota_window(c.key) for c in claims]
        flat = await self._run(backend.quota_figures_script, keys, ["", _ms(now)])
        return [(int(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]

    async def _run(self, script: Any, keys: list[str], args: list[str | int]) -> Any:
        """Run a read or reserve script; StoreUnavailableError when Redis fails."""
        backend = self._backend
        waited = 0.0
        while True:
            try:
                return await script(keys=keys, args=args)
            except (TryAgainError, ClusterError) as exc:
                # CLUSTERDOWN is an outage, not a migration: no waiting on it.
                if isinstance(exc, ClusterDownError) or waited >= _TRY_AGAIN_SECONDS:
                    backend.mark_down(exc)
                    raise backend.unavailable() from None
                await asyncio.sleep(_TRY_AGAIN_DELAY)
                waited += _TRY_AGAIN_DELAY
            except FAULTS as exc:
                backend.mark_down(exc)
                raise backend.unavailable() from None

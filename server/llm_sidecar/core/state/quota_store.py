"""Where quota windows live: the interface, and the in-process implementation.

A window holds two figures per user and quota: ``used`` (exact usage of
finished calls) and ``reserved`` (the worst case of calls still running).
Reserving checks every claimed window and takes all of them or none, in one
step; settling drops the reservation and commits the exact usage, once.
Reservations carry an expiry, so a call that never settles (its process
died) stops holding room when it passes.

The Redis adapter does the same with one script each on the user's hash slot,
so every replica sees one set of figures.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Claim:
    """One quota's part of a reservation: ``amount`` in the window ``window``."""

    #: The quota's name ("usd_per_day", ...).
    quota: str
    #: The window's id, unique per quota ("20417" for a day, ...).
    window: str
    amount: int
    limit: int
    #: When the window ends (seconds since the epoch).
    ends_at: float

    @property
    def key(self) -> str:
        """The window's name in a store."""
        return f"{self.quota}:{self.window}"


@dataclass(frozen=True, slots=True)
class Refusal:
    """The first claim that did not fit, with its window's figures then."""

    claim: Claim
    used: int
    reserved: int


@dataclass(frozen=True, slots=True)
class Settlement:
    """The end of a reservation: the exact amounts to commit, one per claim.

    It travels with the call's turn, so a store that writes the turn and holds the
    reservation may settle it in the same write; any other writer calls ``apply``.
    """

    reservation_id: str
    claims: tuple[Claim, ...]
    amounts: tuple[int, ...]
    #: Where the reservation is held (a writer may fold the settle in only there).
    store: UserQuota
    #: For a call admitted by this process alone while the shared store was down
    #: (fail_open): the shared store, which is settled too, so its figures catch up.
    shared: UserQuota | None = None

    @property
    def foldable(self) -> bool:
        """Whether ``store`` alone holds it, so a writer may settle it in its own write."""
        return self.shared is None

    async def apply(self) -> None:
        """Settle it on its own, wherever it is held."""
        await self.store.settle(self.reservation_id, self.claims, self.amounts)
        if self.shared is not None:
            await self.shared.settle(self.reservation_id, self.claims, self.amounts)

    def released(self) -> Settlement:
        """This settlement committing nothing: the reservation only ends."""
        return dataclasses.replace(self, amounts=(0,) * len(self.amounts))


class UserQuota(Protocol):
    """One user's quota windows. Raises StoreUnavailableError when its store is down."""

    async def reserve(
        self, reservation_id: str, claims: Sequence[Claim], expires_at: float, now: float
    ) -> Refusal | None:
        """Hold every claim, or none: the first that does not fit is returned."""
        ...

    async def settle(
        self, reservation_id: str, claims: Sequence[Claim], actual: Sequence[int]
    ) -> None:
        """Drop the reservation (if still held) and commit ``actual``, one amount per claim.
        Settling the same reservation again changes nothing."""
        ...

    async def figures(self, claims: Sequence[Claim], now: float) -> list[tuple[int, int]]:
        """(used, reserved) of each claim's window."""
        ...


@dataclass(slots=True)
class _Window:
    used: int = 0
    reserved: int = 0
    #: When the window's figures may be forgotten.
    forget_at: float = 0.0


@dataclass(slots=True)
class _Held:
    expires_at: float
    amounts: list[tuple[str, int]]


class MemoryUserQuota:
    """One user's windows in this process. Every method runs without awaiting, so
    each is one atomic step on the event loop."""

    __slots__ = ("_held", "_keep_seconds", "_settled", "_windows")

    def __init__(self, keep_seconds: float) -> None:
        self._keep_seconds = keep_seconds
        self._windows: dict[str, _Window] = {}
        self._held: dict[str, _Held] = {}
        #: Settled reservation ids, so settling twice commits once.
        self._settled: OrderedDict[str, None] = OrderedDict()

    def _expire(self, now: float) -> None:
        for rid in [rid for rid, held in self._held.items() if held.expires_at <= now]:
            self._release(rid)
        for key in [k for k, w in self._windows.items() if w.forget_at <= now and not w.reserved]:
            del self._windows[key]

    def _window(self, key: str) -> _Window:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window()
        return window

    def _release(self, rid: str) -> None:
        held = self._held.pop(rid, None)
        if held is None:
            return
        for key, amount in held.amounts:
            window = self._windows.get(key)
            if window is not None:
                window.reserved -= amount

    async def reserve(
        self, reservation_id: str, claims: Sequence[Claim], expires_at: float, now: float
    ) -> Refusal | None:
        self._expire(now)
        for claim in claims:
            window = self._windows.get(claim.key)
            used, reserved = (window.used, window.reserved) if window else (0, 0)
            if used + reserved + claim.amount > claim.limit:
                return Refusal(claim, used, reserved)
        for claim in claims:
            window = self._window(claim.key)
            window.reserved += claim.amount
            window.forget_at = claim.ends_at + self._keep_seconds
        self._held[reservation_id] = _Held(expires_at, [(c.key, c.amount) for c in claims])
        return None

    async def settle(
        self, reservation_id: str, claims: Sequence[Claim], actual: Sequence[int]
    ) -> None:
        if reservation_id in self._settled:
            return
        self._settled[reservation_id] = None
        while len(self._settled) > 1024:
            self._settled.popitem(last=False)
        self._release(reservation_id)
        for claim, amount in zip(claims, actual, strict=True):
            window = self._window(claim.key)
            window.used += amount
            window.forget_at = max(window.forget_at, claim.ends_at + self._keep_seconds)

    async def figures(self, claims: Sequence[Claim], now: float) -> list[tuple[int, int]]:
        self._expire(now)
        out = []
        for claim in claims:
            window = self._windows.get(claim.key)
            out.append((window.used, window.reserved) if window else (0, 0))
        return out

    @property
    def busy(self) -> bool:
        """Whether a call of this user holds a reservation here."""
        return bool(self._held)


class MemoryQuotaLedger:
    """Every user's windows in this process, bounded by user count (the least recently
    used user with nothing in flight goes first)."""

    def __init__(self, keep_seconds: float, max_users: int = 100_000) -> None:
        self.keep_seconds = keep_seconds
        self.max_users = max_users
        self._users: OrderedDict[str, MemoryUserQuota] = OrderedDict()

    def for_user(self, user_id: str) -> MemoryUserQuota:
        """The windows of ``user_id``."""
        quota = self._users.get(user_id)
        if quota is None:
            quota = self._users[user_id] = MemoryUserQuota(self.keep_seconds)
            if len(self._users) > self.max_users:
                self._shed()
        else:
            self._users.move_to_end(user_id)
        return quota

    def _shed(self) -> None:
        for user_id, quota in list(self._users.items())[: len(self._users) - self.max_users]:
            if not quota.busy:  # a user with calls in flight keeps its figures
                del self._users[user_id]


@dataclass(frozen=True, slots=True)
class UserQuotas:
    """One user's quota windows: where they are kept (``store``: Redis, shared by every
    replica, or this process), and this process's own copy (``local``), which
    ``fail_open`` admits against while the shared store is down."""

    store: UserQuota
    local: UserQuota

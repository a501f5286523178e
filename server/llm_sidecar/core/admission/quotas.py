"""Per-user budgets and rate quotas: admission by worst case, then exact settlement.

Each call that will reach a provider first reserves its worst case in every
active quota's current window: one request, the bound of its input tokens
plus its output cap, and what those tokens could cost at the dearest price
of the route's providers. It is refused when any window lacks room for that
reservation, and only then: room is the limit minus the exact usage of
finished calls minus the reservations of calls still running. When the call
ends, the reservation is dropped and the exact usage committed (a failed or
cancelled call commits only what a provider billed for answers it refused).

Windows are UTC calendar days and months and fixed minutes; the tests shorten
them through ``QuotaLimits``.
"""

from __future__ import annotations

import calendar
import json
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from llm_sidecar.core.observability import NOOP, Observability
from llm_sidecar.core.state.quota_store import (
    Claim,
    Refusal,
    Settlement,
    UserQuota,
    UserQuotas,
)
from llm_sidecar.core.vocabulary.errors import QuotaExceededError, StoreUnavailableError
from llm_sidecar.core.vocabulary.models import ChatRequest

log = logging.getLogger(__name__)

OnStoreDown = Literal["fail_closed", "fail_open"]


@dataclass(frozen=True, slots=True)
class QuotaKind:
    """What one quota counts, over which window, and which limit of
    :class:`QuotaLimits` holds its size."""

    unit: str
    window: str
    limit_field: str


#: Every quota the sidecar knows, by name.
QUOTAS: dict[str, QuotaKind] = {
    "usd_per_day": QuotaKind("micro_usd", "day", "usd_per_day_micro"),
    "usd_per_month": QuotaKind("micro_usd", "month", "usd_per_month_micro"),
    "tokens_per_minute": QuotaKind("tokens", "minute", "tokens_per_minute"),
    "requests_per_minute": QuotaKind("requests", "minute", "requests_per_minute"),
    "tool_calls_per_minute": QuotaKind("tool_calls", "minute", "tool_calls_per_minute"),
}
#: The quotas a model call claims (the tool gateway has a gate of its own).
MODEL_QUOTAS = ("usd_per_day", "usd_per_month", "tokens_per_minute", "requests_per_minute")


@dataclass(frozen=True, slots=True)
class QuotaLimits:
    """Per-user limits (0: off) and how admission bounds a call."""

    usd_per_day_micro: int = 0
    usd_per_month_micro: int = 0
    tokens_per_minute: int = 0
    requests_per_minute: int = 0
    #: MCP tool calls (the gateway's gate counts them; a model call claims none).
    tool_calls_per_minute: int = 0
    #: The output cap of a call that sets no max_tokens (it is sent to the provider,
    #: so the reservation is a real bound).
    default_max_tokens: int = 4096
    #: Input tokens reserved per image.
    tokens_per_image: int = 2000
    #: How long a reservation of a call without a deadline may live.
    reservation_ttl_seconds: float = 600.0
    on_store_down: OnStoreDown = "fail_closed"
    #: Window lengths: 86400 and 0 (calendar month) are the real ones.
    minute_seconds: float = 60.0
    day_seconds: float = 86400.0
    month_seconds: float = 0.0

    def limit(self, quota: str) -> int:
        """The limit of ``quota`` in its unit (0: off)."""
        limit: int = getattr(self, QUOTAS[quota].limit_field)
        return limit

    @property
    def active(self) -> tuple[str, ...]:
        """The quotas that are on."""
        return tuple(name for name in QUOTAS if self.limit(name) > 0)

    @property
    def caps_output(self) -> bool:
        """Whether a call's output must be capped for its reservation to be a bound
        (a quota counts tokens or money)."""
        return any(QUOTAS[q].unit != "requests" for q in self.active)

    @property
    def needs_prices(self) -> bool:
        """Whether a quota counts money."""
        return any(QUOTAS[q].unit == "micro_usd" for q in self.active)

    def window(self, kind: str, now: float) -> tuple[str, float]:
        """(id, end) of the window of ``kind`` holding ``now``."""
        if kind == "month" and self.month_seconds == 0:
            moment = datetime.fromtimestamp(now, UTC)
            year, month = moment.year, moment.month
            nxt = (year + month // 12, month % 12 + 1)
            end = calendar.timegm((nxt[0], nxt[1], 1, 0, 0, 0))
            return f"{year:04d}{month:02d}", float(end)
        length = {"minute": self.minute_seconds, "day": self.day_seconds}.get(
            kind, self.month_seconds
        )
        # Unix time has no leap seconds, so with 86400 these are exactly UTC days.
        index = math.floor(now / length)
        return str(index), (index + 1) * length


DEFAULT_QUOTA_LIMITS = QuotaLimits()

#: Tokens a chat format may add around each message (role markers and the like).
_PER_MESSAGE_TOKENS = 8


def input_token_bound(request: ChatRequest, tokens_per_image: int) -> int:
    """At least as many tokens as ``request`` can be billed for as input.

    Byte-level tokenizers never make more tokens than the text has UTF-8 bytes,
    so bytes are a bound where a characters-per-token estimate is only a guess.
    """
    total = 0
    for message in request.messages:
        total += len(message.content.encode("utf-8")) + _PER_MESSAGE_TOKENS
        total += tokens_per_image * len(message.images)
        for call in message.tool_calls:
            total += len(call.name.encode("utf-8")) + len(call.arguments.encode("utf-8"))
        total += len(message.tool_call_id)
    for tool in request.tools:
        described = tool.name + tool.description + json.dumps(tool.parameters)
        total += len(described.encode("utf-8")) + _PER_MESSAGE_TOKENS
    if request.json_schema is not None:
        total += len(json.dumps(request.json_schema).encode("utf-8"))
    return total


@dataclass(frozen=True, slots=True)
class Spend:
    """What a call uses of each quota's unit."""

    requests: int = 0
    tokens: int = 0
    micro_usd: int = 0
    tool_calls: int = 0

    def of(self, quota: str) -> int:
        unit = QUOTAS[quota].unit
        if unit == "requests":
            return self.requests
        if unit == "tool_calls":
            return self.tool_calls
        return self.tokens if unit == "tokens" else self.micro_usd


@dataclass(frozen=True, slots=True)
class QuotaView:
    """One quota of one user in its current window."""

    name: str
    unit: str
    limit: int
    used: int
    reserved: int
    remaining: int
    resets_in_seconds: float


@dataclass(slots=True)
class QuotaTotals:
    """One quota's figures in this process (no user in them)."""

    name: str
    limit: int
    admitted: int = 0
    refused: int = 0
    admitted_locally: int = 0
    in_flight: int = 0


@dataclass(slots=True)
class Reservation:
    """A call's held worst case, until :meth:`end`."""

    gate: QuotaGate
    store: UserQuota
    reservation_id: str
    claims: tuple[Claim, ...]
    #: Admitted by this process alone (fail_open): the shared store, to which the
    #: usage is also committed, so the shared figures catch up when it is back.
    shared: UserQuota | None = None
    settled: bool = field(default=False)

    def figures(self) -> dict[str, int]:
        """What it holds, by quota ("usd_per_day": micro-USD, ...), for a debug line."""
        return {claim.quota: claim.amount for claim in self.claims}

    def end(self, actual: Spend) -> Settlement | None:
        """End this reservation: the settlement committing ``actual`` (None when it has
        already ended: a reservation ends once)."""
        if self.settled:
            return None
        self.settled = True
        self.gate.ended(self)
        amounts = tuple(actual.of(c.quota) for c in self.claims)
        return Settlement(self.reservation_id, self.claims, amounts, self.store, self.shared)


class QuotaGate:
    """Admits calls against every user's quotas; one per process.

    While the shared store is down, ``fail_open`` admits against each user's local
    windows (:class:`UserQuotas` ``.local``): each replica then enforces the limits alone.
    """

    def __init__(
        self,
        limits: QuotaLimits = DEFAULT_QUOTA_LIMITS,
        *,
        observability: Observability = NOOP,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limits = limits
        self.active = limits.active
        self._obs = observability
        self._clock = clock
        self.totals = {name: QuotaTotals(name, limits.limit(name)) for name in self.active}
        self._failing_open = False
        #: (quota, window kind, limit) of each active quota.
        self._active = [(n, QUOTAS[n].window, limits.limit(n)) for n in self.active]
        #: The current window of each kind: (start, end, id); a window changes rarely.
        self._windows: dict[str, tuple[float, float, str]] = {}

    @staticmethod
    def keep_seconds(limits: QuotaLimits) -> float:
        """How long a window's figures are kept after it ends: a call admitted in it
        may still settle into it."""
        return limits.reservation_ttl_seconds + 60.0

    def claims(self, worst: Spend, now: float) -> tuple[Claim, ...]:
        """Each active quota's claim on its current window."""
        out = []
        for name, kind, limit in self._active:
            window, ends_at = self._window(kind, now)
            out.append(Claim(name, window, worst.of(name), limit, ends_at))
        return tuple(out)

    def _window(self, kind: str, now: float) -> tuple[str, float]:
        known = self._windows.get(kind)
        if known is not None and known[0] <= now < known[1]:
            return known[2], known[1]
        window, ends_at = self.limits.window(kind, now)
        # The window holds [now, end); its real start is at or before now.
        self._windows[kind] = (now, ends_at, window)
        return window, ends_at

    async def admit(
        self, quotas: UserQuotas, worst: Spend, seconds_left: float | None
    ) -> Reservation | None:
        """Reserve ``worst`` in one user's ``quotas``; None when no quota is on.

        Raises QuotaExceededError when a window has no room, and
        StoreUnavailableError when the shared store is down and quotas fail closed.
        """
        if not self.active:
            return None
        now = self._clock()
        claims = self.claims(worst, now)
        ttl = self.limits.reservation_ttl_seconds if seconds_left is None else seconds_left
        expires_at = now + min(ttl, self.limits.reservation_ttl_seconds) + 5.0
        rid = uuid.uuid4().hex
        store: UserQuota = quotas.store
        shared: UserQuota | None = None
        try:
            refusal = await store.reserve(rid, claims, expires_at, now)
            self._recovered()
        except StoreUnavailableError:
            if self.limits.on_store_down == "fail_closed":
                raise StoreUnavailableError(
                    "the quota store (Redis) is unreachable and quotas.on_store_down is fail_closed"
                ) from None
            self._failed_open()
            shared, store = store, quotas.local
            refusal = await store.reserve(rid, claims, expires_at, now)
        if refusal is not None:
            self.totals[refusal.claim.quota].refused += 1
            self._obs.quota_refusals.add(1, {"llm_sidecar.quota": refusal.claim.quota})
            raise _refused(refusal, now)
        for claim in claims:
            totals = self.totals[claim.quota]
            totals.admitted += 1
            totals.admitted_locally += shared is not None
            totals.in_flight += 1
        return Reservation(self, store, rid, claims, shared)

    def ended(self, reservation: Reservation) -> None:
        for claim in reservation.claims:
            self.totals[claim.quota].in_flight -= 1

    async def status(self, quotas: UserQuotas) -> list[QuotaView]:
        """Each active quota of one user in its current window."""
        if not self.active:
            return []
        now = self._clock()
        claims = self.claims(Spend(), now)
        try:
            figures = await quotas.store.figures(claims, now)
        except StoreUnavailableError:
            if self.limits.on_store_down == "fail_closed":
                raise
            figures = await quotas.local.figures(claims, now)
        return [
            QuotaView(
                c.quota,
                QUOTAS[c.quota].unit,
                c.limit,
                used,
                held,
                max(c.limit - used - held, 0),
                max(c.ends_at - now, 0.0),
            )
            for c, (used, held) in zip(claims, figures, strict=True)
        ]

    def _failed_open(self) -> None:
        if not self._failing_open:
            self._failing_open = True
            log.error(
                "quota store unreachable: quotas now enforced by this sidecar alone (fail_open)"
            )
        self._obs.quota_fail_open.add(1)

    def _recovered(self) -> None:
        if self._failing_open:
            self._failing_open = False
            log.warning("quota store reachable again: quotas shared across replicas")


def _refused(refusal: Refusal, now: float) -> QuotaExceededError:
    claim = refusal.claim
    unit = QUOTAS[claim.quota].unit
    if claim.amount > claim.limit:
        # No window will ever have room: waiting does not help, a smaller call does.
        return QuotaExceededError(
            f"quota {claim.quota}: this call's worst case ({claim.amount} {unit}) is over "
            f"the limit ({claim.limit} {unit}); lower params.max_tokens or the prompt",
            quota=claim.quota,
            limit_value=claim.limit,
            retry_after=None,
        )
    return QuotaExceededError(
        f"quota {claim.quota} has no room for this call: limit {claim.limit} {unit}, "
        f"used {refusal.used}, held by calls in flight {refusal.reserved}, this call needs "
        f"up to {claim.amount}",
        quota=claim.quota,
        limit_value=claim.limit,
        retry_after=max(claim.ends_at - now, 0.0),
    )

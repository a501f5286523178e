"""Settings -> core objects. The one place that reads configuration into the core's types.

Every default lives once, in the core's own value types; ``config.py`` reads
its defaults from them, and this module copies settings into them.
"""

from __future__ import annotations

from decimal import Decimal

from llm_sidecar.config import Settings
from llm_sidecar.core.admission.billing import Billing
from llm_sidecar.core.admission.limits import UserLimits
from llm_sidecar.core.admission.pricing import Price, PriceBook, price_of
from llm_sidecar.core.admission.quotas import QuotaGate, QuotaLimits
from llm_sidecar.core.observability import Observability
from llm_sidecar.core.routing.breaker import BreakerPolicy, CircuitBreaker
from llm_sidecar.core.routing.chain import ProviderSlot, RetryPolicy
from llm_sidecar.core.routing.router import Router
from llm_sidecar.core.state.cache import CacheLimits
from llm_sidecar.core.state.conversation import HistoryBounds
from llm_sidecar.core.state.quota_store import MemoryQuotaLedger
from llm_sidecar.core.state.store import MemoryStateStore, StateStore
from llm_sidecar.core.turn.supervisor import Thresholds
from llm_sidecar.providers import HttpPools, build_provider
from llm_sidecar.stores.redis import RedisBackend, RedisStateStore


def router(settings: Settings, pools: HttpPools, obs: Observability) -> Router:
    """Every model's provider chain, each provider with its own breaker."""
    f = settings.failover
    breaker = BreakerPolicy(
        failure_threshold=f.failure_threshold,
        window_seconds=f.failure_window_seconds,
        cooldown_seconds=f.cooldown_seconds,
        half_open_max_calls=f.half_open_max_calls,
    )
    routes: dict[str, list[ProviderSlot]] = {}
    for route_name, route in settings.models.items():
        slots = [
            ProviderSlot(
                provider=build_provider(p, pools),
                route=route_name,
                timeout_seconds=p.timeout_seconds,
                weight=p.weight,
                priority=index if p.priority is None else p.priority,
                breaker=CircuitBreaker(breaker),
            )
            for index, p in enumerate(route.providers)
        ]
        routes[route_name] = sorted(slots, key=lambda slot: slot.priority)
    policy = RetryPolicy(
        retry_rounds=f.retry_rounds,
        backoff_base_seconds=f.backoff_base_seconds,
        backoff_max_seconds=f.backoff_max_seconds,
        max_hold_seconds=f.max_hold_seconds,
    )
    return Router(routes, default_model=settings.default_model, policy=policy, observability=obs)


def history_bounds(settings: Settings) -> HistoryBounds:
    h = settings.history
    return HistoryBounds(h.max_turns, h.max_bytes, h.ttl_seconds)


def state_store(settings: Settings) -> tuple[StateStore, RedisBackend | None]:
    """The per-user state store, and the Redis backend behind it when there is one."""
    bounds = history_bounds(settings)
    limits = quota_limits(settings)
    memory = MemoryStateStore(bounds, quotas=MemoryQuotaLedger(QuotaGate.keep_seconds(limits)))
    r = settings.redis
    quotas = r.quotas and bool(limits.active)
    if not r.url or not (r.conversations or r.usage or quotas):
        return memory, None
    backend = RedisBackend(r)
    store = RedisStateStore(
        backend,
        bounds,
        memory,
        conversations=r.conversations,
        usage=r.usage,
        quotas=r.quotas,
    )
    return store, backend


def prices(settings: Settings) -> PriceBook:
    """Every priced (route, provider) pair."""
    book: dict[tuple[str, str], Price] = {}
    for route_name, route in settings.models.items():
        for p in route.providers:
            if p.price is not None:
                book[(route_name, p.name)] = price_of(
                    p.price.input,
                    p.price.output,
                    cached_input=p.price.cached_input,
                    cache_write_input=p.price.cache_write_input,
                    reasoning=p.price.reasoning,
                )
    return PriceBook(book)


def _micro_usd(usd: Decimal) -> int:
    return int(usd * 1_000_000)


def quota_limits(settings: Settings) -> QuotaLimits:
    q = settings.quotas
    return QuotaLimits(
        usd_per_day_micro=_micro_usd(q.usd_per_day),
        usd_per_month_micro=_micro_usd(q.usd_per_month),
        tokens_per_minute=q.tokens_per_minute,
        requests_per_minute=q.requests_per_minute,
        default_max_tokens=q.default_max_tokens,
        tokens_per_image=q.tokens_per_image,
        reservation_ttl_seconds=q.reservation_ttl_seconds,
        on_store_down=q.on_store_down,
        minute_seconds=q.minute_seconds,
        day_seconds=q.day_seconds,
        month_seconds=q.month_seconds,
    )


def billing(settings: Settings, state: StateStore, obs: Observability) -> Billing:
    """Prices and the quota gate; fail-open admits against the in-process ledger."""
    gate = QuotaGate(quota_limits(settings), fallback=state.memory.quotas, observability=obs)
    return Billing(prices(settings), gate, observability=obs)


def cache_limits(settings: Settings) -> CacheLimits:
    c = settings.cache
    return CacheLimits(
        enabled=c.enabled,
        max_entries=c.max_entries_per_user,
        max_bytes=c.max_bytes_per_user,
        ttl_seconds=c.ttl_seconds,
    )


def user_limits(settings: Settings) -> UserLimits:
    limits = settings.limits
    return UserLimits(
        max_concurrent=limits.max_concurrent_per_user,
        tokens_per_minute=limits.tokens_per_minute_per_user,
    )


def thresholds(settings: Settings) -> Thresholds:
    """Resource thresholds in absolute figures (the settings give ratios of the budgets)."""
    r = settings.resources
    cache_max = settings.cache.global_max_bytes
    managers_max = settings.managers.max_managers
    return Thresholds(
        rss_warning=r.rss_warning_bytes,
        rss_critical=r.rss_critical_bytes,
        cache_warning=int(cache_max * r.cache_warning_ratio),
        cache_critical=int(cache_max * r.cache_critical_ratio),
        managers_warning=int(managers_max * r.managers_warning_ratio),
        managers_critical=int(managers_max * r.managers_critical_ratio),
        keep_fraction=r.degraded_keep_fraction,
        keep_turns=r.degraded_keep_turns,
    )

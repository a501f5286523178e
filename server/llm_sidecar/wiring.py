"""Settings -> core objects. The one place that reads configuration into the core's types.

Every default lives once, in the core's own value types; ``config.py`` reads
its defaults from them, and this module copies settings into them.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from llm_sidecar.config import Settings
from llm_sidecar.config.guardrails import load_check
from llm_sidecar.core.admission.billing import Billing
from llm_sidecar.core.admission.limits import UserLimits
from llm_sidecar.core.admission.pricing import Price, PriceBook, price_of
from llm_sidecar.core.admission.quotas import QuotaGate, QuotaLimits
from llm_sidecar.core.guard import build as guard_build
from llm_sidecar.core.guard.policy import Guard
from llm_sidecar.core.observability import Observability
from llm_sidecar.core.routing.breaker import BreakerPolicy, CircuitBreaker
from llm_sidecar.core.routing.chain import ProviderSlot, RetryPolicy
from llm_sidecar.core.routing.router import Router
from llm_sidecar.core.state.cache import CacheLimits
from llm_sidecar.core.state.conversation import HistoryBounds
from llm_sidecar.core.state.quota_store import MemoryQuotaLedger, UserQuotas
from llm_sidecar.core.state.responses import ResponseBounds
from llm_sidecar.core.state.store import MemoryStateStore, StateStore
from llm_sidecar.core.tools.policy import ToolLimits, ToolPolicy, ToolRule
from llm_sidecar.core.turn.supervisor import Thresholds
from llm_sidecar.mcp_gateway import ToolGateway, ToolServer
from llm_sidecar.providers import HttpPools, build_provider
from llm_sidecar.stores.redis import RedisBackend, RedisStateStore


def breaker_policy(settings: Settings) -> BreakerPolicy:
    """When a provider's or an MCP server's circuit opens, and for how long."""
    failover = settings.failover
    return BreakerPolicy(
        failure_threshold=failover.failure_threshold,
        window_seconds=failover.failure_window_seconds,
        cooldown_seconds=failover.cooldown_seconds,
        half_open_max_calls=failover.half_open_max_calls,
    )


def router(settings: Settings, pools: HttpPools, obs: Observability) -> Router:
    """Every model's provider chain, each provider with its own breaker."""
    failover = settings.failover
    breaker = breaker_policy(settings)
    routes: dict[str, list[ProviderSlot]] = {}
    for route_name, route in settings.models.items():
        slots = [
            ProviderSlot(
                provider=build_provider(entry, pools),
                route=route_name,
                timeout_seconds=entry.timeout_seconds,
                weight=entry.weight,
                priority=index if entry.priority is None else entry.priority,
                breaker=CircuitBreaker(breaker),
            )
            for index, entry in enumerate(route.providers)
        ]
        routes[route_name] = sorted(slots, key=lambda slot: slot.priority)
    policy = RetryPolicy(
        retry_rounds=failover.retry_rounds,
        backoff_base_seconds=failover.backoff_base_seconds,
        backoff_max_seconds=failover.backoff_max_seconds,
        max_hold_seconds=failover.max_hold_seconds,
    )
    embedding = frozenset(
        name for name, route in settings.models.items() if route.kind == "embedding"
    )
    return Router(
        routes,
        default_model=settings.default_model,
        policy=policy,
        observability=obs,
        embedding_routes=embedding,
        default_embedding_model=settings.default_embedding_model,
    )


def history_bounds(settings: Settings) -> HistoryBounds:
    history = settings.history
    return HistoryBounds(history.max_turns, history.max_bytes, history.ttl_seconds)


def state_store(settings: Settings) -> tuple[StateStore, RedisBackend | None]:
    """The per-user state store, and the Redis backend behind it when there is one."""
    bounds = history_bounds(settings)
    limits = quota_limits(settings)
    r = settings.responses
    memory = MemoryStateStore(
        bounds,
        quotas=MemoryQuotaLedger(QuotaGate.keep_seconds(limits)),
        responses=ResponseBounds(r.ttl_seconds, r.max_chain, r.max_chain_bytes, r.max_per_user),
    )
    redis = settings.redis
    quotas = redis.quotas and bool(limits.active or settings.quotas.tool_calls_per_minute)
    if not redis.url or not (redis.conversations or redis.usage or quotas):
        return memory, None
    backend = RedisBackend(redis)
    store = RedisStateStore(
        backend,
        bounds,
        memory,
        conversations=redis.conversations,
        usage=redis.usage,
        quotas=redis.quotas,
    )
    return store, backend


def prices(settings: Settings) -> PriceBook:
    """Every priced (route, provider) pair."""
    book: dict[tuple[str, str], Price] = {}
    for route_name, route in settings.models.items():
        for entry in route.providers:
            price = entry.price
            if price is not None:
                book[(route_name, entry.name)] = price_of(
                    price.input,
                    price.output,
                    cached_input=price.cached_input,
                    cache_write_input=price.cache_write_input,
                    reasoning=price.reasoning,
                )
    chains = {
        name: tuple(entry.name for entry in route.providers)
        for name, route in settings.models.items()
    }
    return PriceBook(book, chains)


def _micro_usd(usd: Decimal) -> int:
    return int(usd * 1_000_000)


def quota_limits(settings: Settings) -> QuotaLimits:
    """The limits a model call is admitted against (every quota but tool calls)."""
    quotas = settings.quotas
    return QuotaLimits(
        usd_per_day_micro=_micro_usd(quotas.usd_per_day),
        usd_per_month_micro=_micro_usd(quotas.usd_per_month),
        tokens_per_minute=quotas.tokens_per_minute,
        requests_per_minute=quotas.requests_per_minute,
        default_max_tokens=quotas.default_max_tokens,
        tokens_per_image=quotas.tokens_per_image,
        reservation_ttl_seconds=quotas.reservation_ttl_seconds,
        on_store_down=quotas.on_store_down,
        minute_seconds=quotas.minute_seconds,
        day_seconds=quotas.day_seconds,
        month_seconds=quotas.month_seconds,
    )


def billing(settings: Settings, obs: Observability) -> Billing:
    """Prices and the quota gate."""
    gate = QuotaGate(quota_limits(settings), observability=obs)
    return Billing(prices(settings), gate, observability=obs)


def cache_limits(settings: Settings) -> CacheLimits:
    cache = settings.cache
    return CacheLimits(
        enabled=cache.enabled,
        max_entries=cache.max_entries_per_user,
        max_bytes=cache.max_bytes_per_user,
        ttl_seconds=cache.ttl_seconds,
    )


def user_limits(settings: Settings) -> UserLimits:
    limits = settings.limits
    return UserLimits(
        max_concurrent=limits.max_concurrent_per_user,
        tokens_per_minute=limits.tokens_per_minute_per_user,
    )


def thresholds(settings: Settings) -> Thresholds:
    """Resource thresholds in absolute figures (the settings give ratios of the budgets)."""
    resources = settings.resources
    cache_max = settings.cache.global_max_bytes
    managers_max = settings.managers.max_managers
    return Thresholds(
        rss_warning=resources.rss_warning_bytes,
        rss_critical=resources.rss_critical_bytes,
        cache_warning=int(cache_max * resources.cache_warning_ratio),
        cache_critical=int(cache_max * resources.cache_critical_ratio),
        managers_warning=int(managers_max * resources.managers_warning_ratio),
        managers_critical=int(managers_max * resources.managers_critical_ratio),
        keep_fraction=resources.degraded_keep_fraction,
        keep_turns=resources.degraded_keep_turns,
    )


def tool_quota_limits(settings: Settings) -> QuotaLimits:
    """The limits a tool call is admitted against: tool calls per minute alone."""
    return QuotaLimits(
        tool_calls_per_minute=settings.quotas.tool_calls_per_minute,
        reservation_ttl_seconds=settings.quotas.reservation_ttl_seconds,
        on_store_down=settings.quotas.on_store_down,
        minute_seconds=settings.quotas.minute_seconds,
    )


def tool_rules(settings: Settings) -> list[ToolRule]:
    """The MCP gateway's access rules."""
    return [
        ToolRule(tuple(rule.groups), tuple(rule.servers), tuple(rule.tools))
        for rule in settings.mcp.rules
    ]


def tool_gateway(
    settings: Settings,
    quotas: Callable[[str], UserQuotas],
    obs: Observability,
    guard: Guard | None = None,
) -> ToolGateway:
    """The MCP gateway over the configured servers, each with its own breaker."""
    mcp = settings.mcp
    breaker = breaker_policy(settings)
    servers = [
        ToolServer(
            name=entry.name,
            url=entry.url,
            headers=entry.env_headers(),
            timeout_seconds=entry.timeout_seconds,
            breaker=CircuitBreaker(breaker),
            kind=entry.kind,
            forward_identity=entry.forward_identity,
            identity_header=entry.identity_header,
        )
        for entry in mcp.servers
    ]
    limits = ToolLimits(
        max_sessions=mcp.max_sessions,
        session_idle_seconds=mcp.session_idle_seconds,
        max_result_bytes=mcp.max_result_bytes,
        list_retries=mcp.list_retries,
    )
    gate = QuotaGate(tool_quota_limits(settings), observability=obs)
    return ToolGateway(
        servers,
        ToolPolicy(tool_rules(settings)),
        limits,
        gate=gate,
        quotas=quotas,
        observability=obs,
        guard=guard,
    )


def guard(settings: Settings) -> Guard | None:
    """The guardrails every call passes through; None without a [guardrails] section."""
    section = settings.guardrails
    if section is None:
        return None
    patterns: dict[str, guard_build.Pattern] = {
        name: (entry.pattern, load_check(entry.check) if entry.check else None)
        for name, entry in section.patterns.items()
    }
    found = guard_build.detectors(
        phone_regions=section.phone_regions,
        national_ids=section.national_ids,
        patterns=patterns,
    )
    routes = {route: section.actions(route) for route in section.routes}
    return guard_build.guard(
        section.actions(), routes, found, fail_open=section.on_error == "fail_open"
    )

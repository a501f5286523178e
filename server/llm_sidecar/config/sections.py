"""The other sections: managers, cache, history, responses, failover, limits, quotas,
resources, telemetry and Redis."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field, field_validator

from llm_sidecar.config.base import (
    LOG_LEVELS,
    Section,
)
from llm_sidecar.core.admission.limits import DEFAULT_USER_LIMITS
from llm_sidecar.core.admission.quotas import DEFAULT_QUOTA_LIMITS
from llm_sidecar.core.routing.breaker import DEFAULT_BREAKER_POLICY
from llm_sidecar.core.routing.chain import DEFAULT_RETRY_POLICY
from llm_sidecar.core.state.cache import DEFAULT_CACHE_LIMITS
from llm_sidecar.core.state.conversation import DEFAULT_HISTORY_BOUNDS
from llm_sidecar.core.state.responses import DEFAULT_RESPONSE_BOUNDS
from llm_sidecar.core.turn.registry import DEFAULT_IDLE_TTL_SECONDS, DEFAULT_MAX_MANAGERS
from llm_sidecar.core.turn.supervisor import (
    DEFAULT_SAMPLE_INTERVAL_SECONDS,
    DEFAULT_THRESHOLDS,
)


class ManagerSettings(Section):
    """The per-user manager registry."""

    max_managers: int = Field(default=DEFAULT_MAX_MANAGERS, ge=1)
    idle_ttl_seconds: float = Field(default=DEFAULT_IDLE_TTL_SECONDS, gt=0)
    sweep_interval_seconds: float = Field(default=30.0, gt=0)


class CacheSettings(Section):
    """Per-user response caches and their global budget."""

    enabled: bool = DEFAULT_CACHE_LIMITS.enabled
    max_entries_per_user: int = Field(default=DEFAULT_CACHE_LIMITS.max_entries, ge=0)
    max_bytes_per_user: int = Field(default=DEFAULT_CACHE_LIMITS.max_bytes, ge=0)
    ttl_seconds: float = Field(default=DEFAULT_CACHE_LIMITS.ttl_seconds, gt=0)
    global_max_bytes: int = Field(default=256 * 1024 * 1024, ge=0)


class HistorySettings(Section):
    """Conversation history bounds per thread."""

    max_turns: int = Field(default=DEFAULT_HISTORY_BOUNDS.max_turns, ge=1)
    max_bytes: int = Field(default=DEFAULT_HISTORY_BOUNDS.max_bytes, ge=64)
    ttl_seconds: float = Field(default=DEFAULT_HISTORY_BOUNDS.ttl_seconds, gt=0)


class ResponsesSettings(Section):
    """Stored responses (OpenAI's Responses API): lifetime, and how much of a chain a
    continuation reads (older responses and messages are dropped first)."""

    ttl_seconds: float = Field(default=DEFAULT_RESPONSE_BOUNDS.ttl_seconds, gt=0)
    max_chain: int = Field(default=DEFAULT_RESPONSE_BOUNDS.max_chain, ge=1, le=10000)
    max_chain_bytes: int = Field(default=DEFAULT_RESPONSE_BOUNDS.max_chain_bytes, ge=1024)
    #: Without Redis: responses kept per user in its manager (least recently used go first).
    max_per_user: int = Field(default=DEFAULT_RESPONSE_BOUNDS.max_per_user, ge=1)
    #: Model calls one response with hosted MCP tools may make (its tool loop's rounds;
    #: the last is asked to answer in text).
    max_mcp_rounds: int = Field(default=8, ge=1, le=64)


class FailoverSettings(Section):
    """Retries, breakers and health probes."""

    retry_rounds: int = Field(default=DEFAULT_RETRY_POLICY.retry_rounds, ge=0)
    backoff_base_seconds: float = Field(default=DEFAULT_RETRY_POLICY.backoff_base_seconds, ge=0)
    backoff_max_seconds: float = Field(default=DEFAULT_RETRY_POLICY.backoff_max_seconds, ge=0)
    #: Longest a provider is left alone after answering with Retry-After.
    max_hold_seconds: float = Field(default=DEFAULT_RETRY_POLICY.max_hold_seconds, ge=0)
    failure_threshold: int = Field(default=DEFAULT_BREAKER_POLICY.failure_threshold, ge=1)
    failure_window_seconds: float = Field(default=DEFAULT_BREAKER_POLICY.window_seconds, gt=0)
    cooldown_seconds: float = Field(default=DEFAULT_BREAKER_POLICY.cooldown_seconds, ge=0)
    half_open_max_calls: int = Field(default=DEFAULT_BREAKER_POLICY.half_open_max_calls, ge=1)
    #: 0 disables background probing.
    health_interval_seconds: float = Field(default=10.0, ge=0)
    probe_timeout_seconds: float = Field(default=2.0, gt=0)


class LimitSettings(Section):
    """Per-user admission limits; 0 disables a limit."""

    max_concurrent_per_user: int = Field(default=DEFAULT_USER_LIMITS.max_concurrent, ge=0)
    tokens_per_minute_per_user: int = Field(default=DEFAULT_USER_LIMITS.tokens_per_minute, ge=0)


_QUOTA_DEFAULTS = DEFAULT_QUOTA_LIMITS


class QuotaSettings(Section):
    """Per-user budgets and rate quotas, shared by every replica through Redis when
    it is configured; each is off at 0."""

    #: USD per UTC calendar day and month (decimals allowed: 0.25 is 250000 micro-USD).
    usd_per_day: Decimal = Field(default=Decimal(0), ge=0)
    usd_per_month: Decimal = Field(default=Decimal(0), ge=0)
    tokens_per_minute: int = Field(default=0, ge=0)
    requests_per_minute: int = Field(default=0, ge=0)
    #: MCP tool calls through the gateway (/mcp), per user.
    tool_calls_per_minute: int = Field(default=0, ge=0)
    #: Output cap sent with a call that sets no max_tokens while a USD or token quota
    #: is on (so its reservation is a real bound).
    default_max_tokens: int = Field(default=_QUOTA_DEFAULTS.default_max_tokens, ge=1)
    #: Input tokens reserved for each image.
    tokens_per_image: int = Field(default=_QUOTA_DEFAULTS.tokens_per_image, ge=0)
    #: Longest a reservation lives when its call never ends (a crashed replica).
    reservation_ttl_seconds: float = Field(default=_QUOTA_DEFAULTS.reservation_ttl_seconds, gt=0)
    #: Redis unreachable: "fail_closed" refuses calls (UNAVAILABLE); "fail_open"
    #: enforces the limits in this sidecar alone, logged, counted, SharedState NOT_SERVING.
    on_store_down: Literal["fail_closed", "fail_open"] = _QUOTA_DEFAULTS.on_store_down
    #: Window lengths, for tests and drills: 60, 86400 (UTC days) and 0 (UTC calendar
    #: months) are the real ones.
    minute_seconds: float = Field(default=_QUOTA_DEFAULTS.minute_seconds, ge=1)
    day_seconds: float = Field(default=_QUOTA_DEFAULTS.day_seconds, ge=1)
    month_seconds: float = Field(default=_QUOTA_DEFAULTS.month_seconds, ge=0)


class ResourceSettings(Section):
    """Resource monitoring thresholds."""

    sample_interval_seconds: float = Field(default=DEFAULT_SAMPLE_INTERVAL_SECONDS, ge=0)
    rss_warning_bytes: int = Field(default=1536 * 1024 * 1024, ge=0)
    rss_critical_bytes: int = Field(default=2048 * 1024 * 1024, ge=0)
    #: Warning/critical at these shares of cache.global_max_bytes.
    cache_warning_ratio: float = Field(default=0.85, gt=0)
    cache_critical_ratio: float = Field(default=0.98, gt=0)
    managers_warning_ratio: float = Field(default=0.85, gt=0)
    managers_critical_ratio: float = Field(default=0.98, gt=0)
    #: Share of each cache kept when degraded mode trims.
    degraded_keep_fraction: float = Field(default=DEFAULT_THRESHOLDS.keep_fraction, ge=0, le=1)
    degraded_keep_turns: int = Field(default=DEFAULT_THRESHOLDS.keep_turns, ge=1)


class TelemetrySettings(Section):
    """Tracing, metrics and logs. Exporters follow the standard OTEL_* variables."""

    service_name: str = "llm-manager-sidecar"
    tracing: bool = True
    #: Put prompt and completion text on spans. Off: text never leaves the process.
    capture_content: bool = False
    user_id_mode: Literal["pseudonym", "raw", "none"] = "pseudonym"
    #: Environment variable holding the key of the user-id pseudonyms.
    pseudonym_key_env: str = "LLM_SIDECAR_PSEUDONYM_KEY"
    #: Prometheus /metrics port; -1 disables it.
    metrics_port: int = Field(default=-1, ge=-1, le=65535)
    metrics_host: str = "127.0.0.1"
    #: The sidecar's own records: DEBUG, INFO, WARNING or ERROR.
    log_level: str = "INFO"
    #: Every library's records (grpc, aiohttp, OpenTelemetry, redis): quiet unless asked.
    library_log_level: str = "WARNING"
    log_format: Literal["json", "text"] = "json"
    #: One line per call (logger ``llm_sidecar.access``): method, status, duration,
    #: route, provider, attempts, tokens, cost, request id, pseudonymous user. Never content.
    access_log: bool = True
    #: Share of successful calls logged (failed ones always are): 1 logs every call.
    access_log_sample_rate: float = Field(default=1.0, ge=0, le=1)

    @field_validator("log_level", "library_log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
        return level


class RedisSettings(Section):
    """Shared state in Redis. Off unless ``url`` is set."""

    url: str = ""
    #: "standalone" (one server, or a primary behind a proxy) or "cluster" (Redis
    #: Cluster, discovered from the node in ``url``).
    mode: Literal["standalone", "cluster"] = "standalone"
    key_prefix: str = "llmsc"
    conversations: bool = True
    usage: bool = True
    #: Quota windows in Redis (shared by every replica); off: each sidecar alone.
    quotas: bool = True
    #: "best_effort": serve from memory when Redis is down and replay writes later;
    #: "required": fail calls with UNAVAILABLE when Redis is down.
    durability: Literal["best_effort", "required"] = "best_effort"
    socket_timeout_seconds: float = Field(default=0.5, gt=0)
    connect_timeout_seconds: float = Field(default=0.5, gt=0)
    max_connections: int = Field(default=64, ge=1)
    health_check_interval_seconds: float = Field(default=5.0, ge=0)
    #: Writes kept for replay while Redis is down (best_effort).
    pending_writes_max: int = Field(default=100_000, ge=0)
    #: Name of the sidecar's connections in Redis ``CLIENT LIST``.
    client_name: str = Field(default="llm-sidecar", pattern=r"^[!-~]{1,64}$")
    #: How often the sidecar pings Redis to report health and start replays.
    watch_interval_seconds: float = Field(default=1.0, gt=0)

"""All configuration in one typed place.

Sources, highest priority first: environment variables (prefix
``LLM_SIDECAR_``, ``__`` between nested names, JSON for lists and maps), then a
TOML or JSON file (``--config PATH`` or ``LLM_SIDECAR_CONFIG``), then the
defaults below, which run with no file, no key and nothing installed. Where a
setting has a counterpart in the core, its default is the core's own.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from llm_sidecar.core.admission.limits import DEFAULT_USER_LIMITS
from llm_sidecar.core.admission.quotas import DEFAULT_QUOTA_LIMITS
from llm_sidecar.core.routing.breaker import DEFAULT_BREAKER_POLICY
from llm_sidecar.core.routing.chain import DEFAULT_RETRY_POLICY, DEFAULT_TIMEOUT_SECONDS
from llm_sidecar.core.state.cache import DEFAULT_CACHE_LIMITS
from llm_sidecar.core.state.conversation import DEFAULT_HISTORY_BOUNDS
from llm_sidecar.core.state.responses import DEFAULT_RESPONSE_BOUNDS
from llm_sidecar.core.turn.registry import DEFAULT_IDLE_TTL_SECONDS, DEFAULT_MAX_MANAGERS
from llm_sidecar.core.turn.supervisor import (
    DEFAULT_SAMPLE_INTERVAL_SECONDS,
    DEFAULT_THRESHOLDS,
)

ENV_PREFIX = "LLM_SIDECAR_"
CONFIG_ENV = "LLM_SIDECAR_CONFIG"

# RFC 9110 token characters; an environment variable name as POSIX shells accept it.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    """Where and how the gRPC server listens."""

    host: str = "127.0.0.1"
    #: TCP port; 0 picks a free one, -1 disables TCP.
    port: int = Field(default=50051, ge=-1, le=65535)
    #: Unix socket path; empty disables it.
    unix_socket: str = ""
    grace_period_seconds: float = Field(default=10.0, ge=0)
    #: After SIGTERM, how long health reports NOT_SERVING while calls are still taken,
    #: before the listeners close (so readiness drops first). 0: close at once.
    drain_delay_seconds: float = Field(default=0.0, ge=0, le=300)
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_prompt_chars: int = Field(default=256 * 1024, ge=1)
    max_concurrent_rpcs: int = Field(default=0, ge=0)
    #: Calls of each LLMManagerService method that gRPC core may hand over at once
    #: (see transport/accept.py); 0 leaves it to grpc.aio's own loop (one at a time).
    accept_slots: int = Field(default=128, ge=0, le=4096)
    reflection: bool = True
    #: TLS for TCP listeners (PEM files). With ``tls_client_ca_file`` clients must
    #: present a certificate signed by that CA (mutual TLS).
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    #: Name of an environment variable holding a shared bearer token. When set,
    #: every call over TCP must send ``authorization: Bearer <token>``.
    auth_token_env: str = ""
    #: Listen on a non-loopback address without TLS or a token (not recommended).
    allow_insecure_remote: bool = False
    #: Use uvloop when it is installed.
    uvloop: bool = True
    #: Where LLMAdminService listens: "" (with the main service, on every listener),
    #: or its own "host:port" or "unix:/path", and then only there.
    admin_address: str = ""

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert_file)

    def auth_token(self) -> str:
        """The bearer token, read from the environment at use ('' when none is set)."""
        return os.environ.get(self.auth_token_env, "") if self.auth_token_env else ""

    @model_validator(mode="after")
    def _secure_by_default(self) -> ServerSettings:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError("server: tls_cert_file and tls_key_file go together")
        if self.tls_client_ca_file and not self.tls:
            raise ValueError("server: tls_client_ca_file needs tls_cert_file and tls_key_file")
        guarded = self.tls or self.auth_token_env or self.allow_insecure_remote
        remote = [
            address
            for address, open_ in (
                (self.host, self.port >= 0),
                (self.admin_address.rpartition(":")[0], is_tcp(self.admin_address)),
            )
            if open_ and not is_loopback(address)
        ]
        if remote and not guarded:
            raise ValueError(
                f"server: {remote[0]!r} is not a loopback address, and nothing guards it. "
                "Set tls_cert_file and tls_key_file, or auth_token_env, or "
                "allow_insecure_remote = true to accept calls from the network unauthenticated"
            )
        return self


def is_tcp(address: str) -> bool:
    """Whether an ``admin_address``-style address is a TCP one."""
    return bool(address) and not address.startswith("unix:")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an IP literal, maybe in brackets) is this machine only."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HttpSettings(_Section):
    """Where the OpenAI- and Anthropic-compatible HTTP APIs listen. The server's TLS
    and bearer token apply to them too; a non-loopback address needs one of them (or
    ``server.allow_insecure_remote``), as for gRPC."""

    host: str = "127.0.0.1"
    #: TCP port; 0 picks a free one, -1 disables TCP. Away from 8080, which the
    #: backend in the same pod likely uses.
    port: int = Field(default=50080, ge=-1, le=65535)
    #: Unix socket path; empty disables it.
    unix_socket: str = ""


class PriceSettings(_Section):
    """What a provider charges, in USD per million tokens of each class. An unset
    cached_input or cache_write_input takes the input price, an unset reasoning the
    output price. Take the figures from the provider's own price list."""

    input: Decimal = Field(ge=0)
    #: Embedding providers have only an input price.
    output: Decimal = Field(default=Decimal(0), ge=0)
    cached_input: Decimal | None = Field(default=None, ge=0)
    cache_write_input: Decimal | None = Field(default=None, ge=0)
    reasoning: Decimal | None = Field(default=None, ge=0)


class ProviderSettings(_Section):
    """One upstream in a model's chain."""

    name: str
    kind: Literal["openai", "anthropic", "simulated"] = "openai"
    base_url: str = ""
    #: Name of the environment variable holding the API key (never the key itself),
    #: sent the kind's way (``Authorization: Bearer`` for openai, ``x-api-key`` for
    #: anthropic). The variable must be set and non-empty when the sidecar starts.
    api_key_env: str = ""
    #: This provider takes no key (vLLM, Ollama, a gateway that authenticates by
    #: network): said explicitly, so a forgotten ``api_key_env`` is never silent.
    no_api_key: bool = False
    #: Header values read from environment variables at start: header name ->
    #: variable name (``{"api-key" = "AZURE_OPENAI_API_KEY"}``). Keys belong here,
    #: never in ``headers``, which the file holds in clear.
    header_env: dict[str, str] = Field(default_factory=dict)
    #: Upstream model id.
    model: str = ""
    timeout_seconds: float = Field(default=DEFAULT_TIMEOUT_SECONDS, gt=0)
    weight: float = Field(default=1.0, gt=0)
    #: Lower goes first; unset means the position in the list. Providers given
    #: the same priority share load in proportion to their weights.
    priority: int | None = None
    #: Literal headers sent with every request (no secrets: see ``header_env``).
    headers: dict[str, str] = Field(default_factory=dict)
    #: Query parameters added to every request's URL (``{"api-version" = "2024-10-21"}``).
    query: dict[str, str] = Field(default_factory=dict)
    #: Connections to this provider at once; calls beyond wait in a counted queue.
    #: The default fits a pod with a thousand concurrent calls.
    max_connections: int = Field(default=1024, ge=1)
    #: Longest a call waits for a free connection before failing over (pool_exhausted).
    max_connection_wait_seconds: float = Field(default=1.0, gt=0)
    #: Provider prompt caching: "auto" marks a conversation's stable prefix (Anthropic
    #: cache_control) or sends a keyed per-thread prompt_cache_key (OpenAI); "off".
    prompt_caching: Literal["auto", "off"] = "auto"
    #: Health probe: "models" (GET /models), "chat" (a 1-token completion) or "none".
    probe: Literal["models", "chat", "none"] = "models"
    #: Simulated provider only: artificial latency.
    simulated_latency_ms: float = 0.0
    #: Simulated provider only: the dimension of its embeddings when a call sets none.
    simulated_dimensions: int = Field(default=256, ge=1, le=65536)
    #: Its price when answering this model; none: cost unknown (never 0).
    price: PriceSettings | None = None

    def api_key(self) -> str:
        """The key, read from the environment at use."""
        return os.environ.get(self.api_key_env, "") if self.api_key_env else ""

    def env_headers(self) -> dict[str, str]:
        """The ``header_env`` headers with their values read from the environment."""
        return {name: os.environ.get(var, "") for name, var in self.header_env.items()}

    def secret_variables(self) -> list[str]:
        """Every environment variable this provider reads its credentials from."""
        names = [self.api_key_env] if self.api_key_env else []
        return names + list(self.header_env.values())

    @model_validator(mode="after")
    def _credentials_said(self) -> ProviderSettings:
        for header in (*self.headers, *self.header_env):
            if _HEADER_NAME.fullmatch(header) is None:
                raise ValueError(f"provider {self.name!r}: {header!r} is not a header name")
        for variable in self.header_env.values():
            if _ENV_NAME.fullmatch(variable) is None:
                raise ValueError(
                    f"provider {self.name!r}: header_env names {variable!r}, "
                    "which is not an environment variable name"
                )
        if self.kind == "simulated":
            return self
        if self.no_api_key and self.secret_variables():
            raise ValueError(
                f"provider {self.name!r}: no_api_key = true, yet a key is configured "
                "(api_key_env or header_env)"
            )
        if not self.no_api_key and not self.secret_variables():
            raise ValueError(
                f"provider {self.name!r}: no credentials configured. Set api_key_env to the "
                "variable holding its key (or header_env for a key in another header), or "
                "no_api_key = true for a provider that takes none (vLLM, Ollama)"
            )
        return self


class ModelRoute(_Section):
    """The ordered providers that can answer one model name."""

    providers: list[ProviderSettings] = Field(min_length=1)
    #: What the route does: "chat" (Ask and the chat APIs) or "embedding" (Embed and
    #: /v1/embeddings). A call of the other kind on it is refused, naming the model.
    kind: Literal["chat", "embedding"] = "chat"
    #: The deadline of an HTTP call on this route (gRPC callers set their own); a
    #: request's ``x-request-timeout`` header may shorten it.
    timeout_seconds: float = Field(default=120.0, gt=0, le=3600)


def _default_models() -> dict[str, ModelRoute]:
    # Simulated answers and vectors cost nothing: a known 0, not an unknown cost.
    free = PriceSettings(input=Decimal(0), output=Decimal(0))
    return {
        "simulated": ModelRoute(
            providers=[
                ProviderSettings(
                    name="simulated", kind="simulated", model="simulated-echo-1", price=free
                )
            ]
        ),
        "simulated-embedding": ModelRoute(
            kind="embedding",
            providers=[
                ProviderSettings(
                    name="simulated-embedding",
                    kind="simulated",
                    model="simulated-embedding-1",
                    price=free,
                )
            ],
        ),
    }


class EmbeddingSettings(_Section):
    """Bounds of one Embed call (gRPC and HTTP alike)."""

    #: Texts in one call.
    max_inputs: int = Field(default=2048, ge=1)
    #: Characters of all the texts of one call together.
    max_total_chars: int = Field(default=512 * 1024, ge=1)


class ManagerSettings(_Section):
    """The per-user manager registry."""

    max_managers: int = Field(default=DEFAULT_MAX_MANAGERS, ge=1)
    idle_ttl_seconds: float = Field(default=DEFAULT_IDLE_TTL_SECONDS, gt=0)
    sweep_interval_seconds: float = Field(default=30.0, gt=0)


class CacheSettings(_Section):
    """Per-user response caches and their global budget."""

    enabled: bool = DEFAULT_CACHE_LIMITS.enabled
    max_entries_per_user: int = Field(default=DEFAULT_CACHE_LIMITS.max_entries, ge=0)
    max_bytes_per_user: int = Field(default=DEFAULT_CACHE_LIMITS.max_bytes, ge=0)
    ttl_seconds: float = Field(default=DEFAULT_CACHE_LIMITS.ttl_seconds, gt=0)
    global_max_bytes: int = Field(default=256 * 1024 * 1024, ge=0)


class HistorySettings(_Section):
    """Conversation history bounds per thread."""

    max_turns: int = Field(default=DEFAULT_HISTORY_BOUNDS.max_turns, ge=1)
    max_bytes: int = Field(default=DEFAULT_HISTORY_BOUNDS.max_bytes, ge=64)
    ttl_seconds: float = Field(default=DEFAULT_HISTORY_BOUNDS.ttl_seconds, gt=0)


class ResponsesSettings(_Section):
    """Stored responses (OpenAI's Responses API): lifetime, and how much of a chain a
    continuation reads (older responses and messages are dropped first)."""

    ttl_seconds: float = Field(default=DEFAULT_RESPONSE_BOUNDS.ttl_seconds, gt=0)
    max_chain: int = Field(default=DEFAULT_RESPONSE_BOUNDS.max_chain, ge=1, le=10000)
    max_chain_bytes: int = Field(default=DEFAULT_RESPONSE_BOUNDS.max_chain_bytes, ge=1024)
    #: Without Redis: responses kept per user in its manager (least recently used go first).
    max_per_user: int = Field(default=DEFAULT_RESPONSE_BOUNDS.max_per_user, ge=1)


class FailoverSettings(_Section):
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


class LimitSettings(_Section):
    """Per-user admission limits; 0 disables a limit."""

    max_concurrent_per_user: int = Field(default=DEFAULT_USER_LIMITS.max_concurrent, ge=0)
    tokens_per_minute_per_user: int = Field(default=DEFAULT_USER_LIMITS.tokens_per_minute, ge=0)


_QUOTA_DEFAULTS = DEFAULT_QUOTA_LIMITS


class QuotaSettings(_Section):
    """Per-user budgets and rate quotas, shared by every replica through Redis when
    it is configured; each is off at 0."""

    #: USD per UTC calendar day and month (decimals allowed: 0.25 is 250000 micro-USD).
    usd_per_day: Decimal = Field(default=Decimal(0), ge=0)
    usd_per_month: Decimal = Field(default=Decimal(0), ge=0)
    tokens_per_minute: int = Field(default=0, ge=0)
    requests_per_minute: int = Field(default=0, ge=0)
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


class ResourceSettings(_Section):
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


class TelemetrySettings(_Section):
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
        if level not in _LOG_LEVELS:
            raise ValueError(f"{value!r} is not one of {', '.join(_LOG_LEVELS)}")
        return level


class RedisSettings(_Section):
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


class Settings(BaseSettings):
    """The sidecar's whole configuration."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    server: ServerSettings = ServerSettings()
    http: HttpSettings = HttpSettings()
    default_model: str = "simulated"
    #: The embedding route of an Embed call that names none ("" when there is none).
    default_embedding_model: str = "simulated-embedding"
    models: dict[str, ModelRoute] = Field(default_factory=_default_models)
    embeddings: EmbeddingSettings = EmbeddingSettings()
    managers: ManagerSettings = ManagerSettings()
    cache: CacheSettings = CacheSettings()
    history: HistorySettings = HistorySettings()
    responses: ResponsesSettings = ResponsesSettings()
    failover: FailoverSettings = FailoverSettings()
    limits: LimitSettings = LimitSettings()
    quotas: QuotaSettings = QuotaSettings()
    resources: ResourceSettings = ResourceSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    redis: RedisSettings = RedisSettings()

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.default_model not in self.models:
            raise ValueError(f"default_model {self.default_model!r} is not in models")
        if self.models[self.default_model].kind != "chat":
            raise ValueError(f"default_model {self.default_model!r} is an embedding route")
        self._check_embedding_routes()
        for route_name, route in self.models.items():
            for provider in route.providers:
                if provider.kind != "simulated" and not provider.base_url:
                    raise ValueError(
                        f"models.{route_name}: provider {provider.name!r} needs base_url"
                    )
            local = [p.name for p in route.providers]
            if len(set(local)) != len(local):
                raise ValueError(f"models.{route_name}: provider names repeat")
            if self.quotas.usd_per_day or self.quotas.usd_per_month:
                for provider in route.providers:
                    if provider.price is None:
                        raise ValueError(
                            f"models.{route_name}: provider {provider.name!r} has no price, "
                            "and a USD quota is set (quotas.usd_per_day / usd_per_month): "
                            "its calls could not be bounded"
                        )
        if self.server.port == -1 and not self.server.unix_socket:
            raise ValueError("server: enable TCP (port >= 0) or a unix_socket")
        server, http = self.server, self.http
        guarded = server.tls or server.auth_token_env or server.allow_insecure_remote
        if http.port >= 0 and not is_loopback(http.host) and not guarded:
            raise ValueError(
                f"http: {http.host!r} is not a loopback address, and nothing guards it. "
                "Set server.tls_cert_file and tls_key_file, or server.auth_token_env, or "
                "server.allow_insecure_remote = true"
            )
        return self

    def _check_embedding_routes(self) -> None:
        """Embedding routes hold providers that embed; the default one is one of them.
        The built-in default names a route that a configuration of its own may not have:
        then there is no default embedding route, unless it was set explicitly."""
        for name, route in self.models.items():
            for entry in route.providers if route.kind == "embedding" else ():
                if entry.kind == "anthropic":
                    raise ValueError(
                        f"models.{name}: provider {entry.name!r} is of kind anthropic, "
                        "which does not embed (use kind openai or simulated)"
                    )
                if entry.probe == "chat":
                    raise ValueError(
                        f"models.{name}: provider {entry.name!r} would be probed with a chat "
                        "call, which an embedding model cannot answer (use probe models or none)"
                    )
        default = self.default_embedding_model
        found = self.models.get(default)
        if default and (found is None or found.kind != "embedding"):
            if "default_embedding_model" in self.model_fields_set:
                raise ValueError(f"default_embedding_model {default!r} is not an embedding route")
            object.__setattr__(self, "default_embedding_model", "")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment over file: the file's values arrive as init arguments.
        return env_settings, init_settings


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a TOML or JSON configuration file."""
    data = Path(path).read_bytes()
    if str(path).endswith(".json"):
        loaded = json.loads(data)
    else:
        loaded = tomllib.loads(data.decode("utf-8"))
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: the top level must be a table")
    return loaded


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from the file (argument or LLM_SIDECAR_CONFIG), the environment and defaults."""
    path = path or os.environ.get(CONFIG_ENV) or None
    values: dict[str, Any] = read_config_file(path) if path else {}
    values.update(overrides)
    return Settings(**values)


class ConfigurationError(ValueError):
    """The configuration cannot run; the message says what to change."""


def _known_path(model: type[BaseModel], parts: list[str]) -> bool:
    """Whether ``parts`` (lowercase, from a variable name split on ``__``) names a setting."""
    if not parts:
        return True
    field = model.model_fields.get(parts[0])
    if field is None:
        return False
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _known_path(annotation, parts[1:])
    # A map (models, headers) takes any key below it; a scalar takes nothing more.
    return len(parts) == 1 or str(annotation).startswith("dict")


def referenced_variables(settings: Settings) -> set[str]:
    """Environment variables the configuration names (keys, tokens, pseudonym key)."""
    names = {CONFIG_ENV, settings.telemetry.pseudonym_key_env}
    if settings.server.auth_token_env:
        names.add(settings.server.auth_token_env)
    for route in settings.models.values():
        for provider in route.providers:
            names.update(provider.secret_variables())
    return names


def unknown_variables(
    environ: dict[str, str], referenced: frozenset[str] | set[str] = frozenset()
) -> list[str]:
    """``LLM_SIDECAR_*`` variables that name no setting (a typo would otherwise be
    ignored), apart from ``referenced`` ones (variables the configuration reads keys from)."""
    unknown = []
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX) or name in referenced:
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if not _known_path(Settings, parts):
            unknown.append(name)
    return unknown


def unknown_setting(name: str) -> str:
    """The complaint about a variable that names no setting."""
    return (
        f"{name} is not a setting (settings are LLM_SIDECAR_<SECTION>__<KEY>, "
        "e.g. LLM_SIDECAR_SERVER__PORT)"
    )


def check_nested_variables(environ: dict[str, str]) -> None:
    """Refuse ``LLM_SIDECAR_<SECTION>__<KEY>`` variables naming no setting, before the
    settings are read (which would refuse them too, without naming the variable)."""
    nested = [name for name in unknown_variables(environ) if "__" in name]
    if nested:
        raise ConfigurationError("; ".join(unknown_setting(name) for name in nested))


def environment_problems(settings: Settings, environ: dict[str, str]) -> list[str]:
    """What in the environment keeps ``settings`` from running, one sentence each."""
    problems = [
        unknown_setting(name) for name in unknown_variables(environ, referenced_variables(settings))
    ]
    for route_name, route in settings.models.items():
        for provider in route.providers:
            for variable in provider.secret_variables():
                if not environ.get(variable, "").strip():
                    problems.append(
                        f"models.{route_name}: provider {provider.name!r} reads its key from "
                        f"${variable}, which is unset or empty"
                    )
    token = settings.server.auth_token_env
    if token and not environ.get(token, "").strip():
        problems.append(f"server.auth_token_env names ${token}, which is unset or empty")
    return problems


def check_environment(settings: Settings, environ: dict[str, str] | None = None) -> None:
    """Raise :class:`ConfigurationError` listing every problem :func:`environment_problems`
    finds."""
    problems = environment_problems(settings, dict(os.environ if environ is None else environ))
    if problems:
        raise ConfigurationError("; ".join(problems))


_SECRET_NAME = re.compile(r"key|token|secret|password|sig|auth|credential", re.IGNORECASE)
REDACTED = "<redacted>"


def _redact_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at:
        return url
    user, colon, _ = userinfo.partition(":")
    hidden = f"{user}:{REDACTED}" if colon else REDACTED  # "user:pass" or a bare password
    return f"{scheme}://{hidden}@{host}"


def redacted(settings: Settings) -> dict[str, Any]:
    """The effective configuration with every secret replaced: header values, query
    values with secret-like names, and a password in the Redis URL. Variable names stay
    (they are not secrets)."""
    data = settings.model_dump(mode="json")
    data["redis"]["url"] = _redact_url(data["redis"]["url"])
    for route in data["models"].values():
        for provider in route["providers"]:
            provider["headers"] = {name: REDACTED for name in provider["headers"]}
            provider["query"] = {
                name: REDACTED if _SECRET_NAME.search(name) else value
                for name, value in provider["query"].items()
            }
    return data

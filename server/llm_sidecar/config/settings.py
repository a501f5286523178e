"""The whole configuration, checked as one, and where it is read from."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from llm_sidecar.config.base import (
    CONFIG_ENV,
    ENV_PREFIX,
)
from llm_sidecar.config.guardrails import GuardrailSettings
from llm_sidecar.config.listeners import HttpSettings, ServerSettings, is_loopback
from llm_sidecar.config.mcp import McpSettings
from llm_sidecar.config.routes import (
    EmbeddingSettings,
    ModelRoute,
    default_models,
)
from llm_sidecar.config.sections import (
    CacheSettings,
    FailoverSettings,
    HistorySettings,
    LimitSettings,
    ManagerSettings,
    QuotaSettings,
    RedisSettings,
    ResourceSettings,
    ResponsesSettings,
    TelemetrySettings,
)


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
    models: dict[str, ModelRoute] = Field(default_factory=default_models)
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
    mcp: McpSettings = McpSettings()
    #: None (no section): nothing is looked for, and requests go upstream as sent.
    guardrails: GuardrailSettings | None = None

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
        for route_name in self.guardrails.routes if self.guardrails is not None else ():
            if route_name not in self.models:
                raise ValueError(f"guardrails.routes.{route_name}: no such model route")
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

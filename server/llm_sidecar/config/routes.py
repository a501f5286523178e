"""Model routes: each one's ordered providers, their endpoints, keys and prices."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Literal

from pydantic import Field, model_validator

from llm_sidecar.config.base import (
    ENV_NAME,
    HEADER_NAME,
    Section,
)
from llm_sidecar.core.routing.chain import DEFAULT_TIMEOUT_SECONDS


class PriceSettings(Section):
    """What a provider charges, in USD per million tokens of each class. An unset
    cached_input or cache_write_input takes the input price, an unset reasoning the
    output price. Take the figures from the provider's own price list."""

    input: Decimal = Field(ge=0)
    #: Embedding providers have only an input price.
    output: Decimal = Field(default=Decimal(0), ge=0)
    cached_input: Decimal | None = Field(default=None, ge=0)
    cache_write_input: Decimal | None = Field(default=None, ge=0)
    reasoning: Decimal | None = Field(default=None, ge=0)


class ProviderSettings(Section):
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
            if HEADER_NAME.fullmatch(header) is None:
                raise ValueError(f"provider {self.name!r}: {header!r} is not a header name")
        for variable in self.header_env.values():
            if ENV_NAME.fullmatch(variable) is None:
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


class ModelRoute(Section):
    """The ordered providers that can answer one model name."""

    providers: list[ProviderSettings] = Field(min_length=1)
    #: What the route does: "chat" (Ask and the chat APIs) or "embedding" (Embed and
    #: /v1/embeddings). A call of the other kind on it is refused, naming the model.
    kind: Literal["chat", "embedding"] = "chat"
    #: The deadline of an HTTP call on this route (gRPC callers set their own); a
    #: request's ``x-request-timeout`` header may shorten it.
    timeout_seconds: float = Field(default=120.0, gt=0, le=3600)


def default_models() -> dict[str, ModelRoute]:
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


class EmbeddingSettings(Section):
    """Bounds of one Embed call (gRPC and HTTP alike)."""

    #: Texts in one call.
    max_inputs: int = Field(default=2048, ge=1)
    #: Characters of all the texts of one call together.
    max_total_chars: int = Field(default=512 * 1024, ge=1)

"""Provider adapters and the function that builds one from configuration."""

from __future__ import annotations

from llm_sidecar.config import ProviderSettings
from llm_sidecar.core.vocabulary.providers import Provider
from llm_sidecar.providers._endpoint import Endpoint
from llm_sidecar.providers._pool import HttpPools
from llm_sidecar.providers.anthropic import AnthropicProvider
from llm_sidecar.providers.openai import OpenAIProvider
from llm_sidecar.providers.simulated import SimulatedProvider

__all__ = [
    "AnthropicProvider",
    "HttpPools",
    "OpenAIProvider",
    "SimulatedProvider",
    "build_provider",
]


def build_provider(settings: ProviderSettings, pools: HttpPools) -> Provider:
    """The adapter a provider entry asks for, with its own connection pool from ``pools``."""
    if settings.kind == "simulated":
        return SimulatedProvider(
            name=settings.name,
            model=settings.model or "simulated-echo-1",
            latency_ms=settings.simulated_latency_ms,
            dimensions=settings.simulated_dimensions,
        )
    cls: type[OpenAIProvider] | type[AnthropicProvider] = (
        OpenAIProvider if settings.kind == "openai" else AnthropicProvider
    )
    headers = {
        **cls.credentials(settings.api_key()),
        **settings.headers,
        **settings.env_headers(),
    }
    endpoint = Endpoint(
        base_url=settings.base_url,
        headers=headers,
        query=settings.query,
        pool=pools.new(
            max_connections=settings.max_connections,
            max_wait_seconds=settings.max_connection_wait_seconds,
        ),
    )
    return cls(
        name=settings.name,
        model=settings.model,
        endpoint=endpoint,
        probe=settings.probe,
        prompt_caching=settings.prompt_caching == "auto",
    )

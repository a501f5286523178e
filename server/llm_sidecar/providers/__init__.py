"""Provider adapters and the function that builds one from configuration."""

from __future__ import annotations

import aiohttp

from llm_sidecar.config import ProviderSettings
from llm_sidecar.core.providers import Provider
from llm_sidecar.providers.anthropic import AnthropicProvider
from llm_sidecar.providers.openai import OpenAIProvider
from llm_sidecar.providers.simulated import SimulatedProvider

__all__ = ["AnthropicProvider", "OpenAIProvider", "SimulatedProvider", "build_provider"]


def build_provider(settings: ProviderSettings, session: aiohttp.ClientSession) -> Provider:
    """The adapter a provider entry asks for, sharing the process's HTTP session."""
    if settings.kind == "simulated":
        return SimulatedProvider(
            name=settings.name,
            model=settings.model or "simulated-echo-1",
            latency_ms=settings.simulated_latency_ms,
        )
    cls: type[OpenAIProvider] | type[AnthropicProvider] = (
        OpenAIProvider if settings.kind == "openai" else AnthropicProvider
    )
    return cls(
        name=settings.name,
        base_url=settings.base_url,
        model=settings.model,
        api_key=settings.api_key(),
        session=session,
        headers=dict(settings.headers),
        probe=settings.probe,
    )

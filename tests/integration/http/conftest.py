"""Fixtures of the HTTP API tests."""

from __future__ import annotations

import pytest

from llm_sidecar import Sidecar
from tests.support.sidecar import make_settings, provider
from tests.support.upstream import FakeUpstream


@pytest.fixture
async def both(upstream_factory, sidecar_factory) -> tuple[Sidecar, FakeUpstream, FakeUpstream]:
    """A sidecar with an OpenAI-kind route "gpt" and an Anthropic-kind route "claude"."""
    gpt = await upstream_factory("gpt")
    claude = await upstream_factory("claude")
    models = {
        "gpt": {"providers": [provider("gpt", gpt.url)]},
        "claude": {"providers": [provider("claude", claude.anthropic_url, kind="anthropic")]},
    }
    return await sidecar_factory(make_settings(models=models)), gpt, claude

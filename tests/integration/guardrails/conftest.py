"""Fixtures of the guardrail tests: a sidecar whose routes "gpt" (OpenAI format) and
"claude" (Anthropic format) go to recording upstreams, with the guardrails on."""

from __future__ import annotations

from typing import Any

import pytest

from llm_sidecar import Sidecar
from tests.support.sidecar import make_settings, provider
from tests.support.upstream import FakeUpstream

#: The section as docs/guardrails.md shows it.
GUARDRAILS: dict[str, Any] = {
    "email": "pseudonymize",
    "phone": "pseudonymize",
    "credit_card": "block",
    "iban": "mask",
    "national_id": "mask",
    "ip_address": "mask",
    "secret": "block",
    "on_error": "fail_closed",
}


def guarded_models(gpt: FakeUpstream, claude: FakeUpstream) -> dict[str, Any]:
    return {
        "gpt": {"providers": [provider("gpt", gpt.url)]},
        "claude": {"providers": [provider("claude", claude.anthropic_url, kind="anthropic")]},
        "embed": {"kind": "embedding", "providers": [provider("embed", gpt.url)]},
    }


@pytest.fixture
async def guarded(upstream_factory, sidecar_factory) -> tuple[Sidecar, FakeUpstream, FakeUpstream]:
    gpt = await upstream_factory("gpt")
    claude = await upstream_factory("claude")
    settings = make_settings(models=guarded_models(gpt, claude), guardrails=GUARDRAILS)
    return await sidecar_factory(settings), gpt, claude

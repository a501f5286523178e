"""The official SDKs' clients, pointed at a test sidecar's HTTP listener as a user."""

from __future__ import annotations

import anthropic
import openai

from llm_sidecar import Sidecar

_WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"query": {"type": "string"}},
        "required": ["query"],
    },
}
#: One function tool in each API's shape: Chat Completions nests it, Responses does not.
WEATHER_CHAT_TOOL = {"type": "function", "function": _WEATHER}
WEATHER_RESPONSES_TOOL = {"type": "function", **_WEATHER}


def openai_client(sidecar: Sidecar, user: str = "alice", **headers: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{sidecar.http_url}/v1",
        api_key="unused",
        default_headers={"x-user-id": user, **headers},
        max_retries=0,
    )


def anthropic_client(
    sidecar: Sidecar, user: str = "alice", **headers: str
) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=sidecar.http_url,
        api_key="unused",
        default_headers={"x-user-id": user, **headers},
        max_retries=0,
    )

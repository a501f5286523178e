"""Results returned by the client: plain, typed, independent of protobuf."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_manager_client._agent import Message, ToolCall


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one answer; the last three are parts of prompt and completion tokens."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    estimated: bool
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    reasoning_tokens: int = 0
    #: Millionths of a US dollar; None when the provider has no configured price.
    cost_micro_usd: int | None = None


@dataclass(frozen=True, slots=True)
class Attempt:
    provider: str
    outcome: str
    latency_ms: float
    error_type: str


@dataclass(frozen=True, slots=True)
class ResponseMetadata:
    response_id: str
    provider: str
    model: str
    usage: Usage
    cached: bool
    latency_ms: float
    finish_reason: str
    attempts: tuple[Attempt, ...]
    request_id: str


@dataclass(frozen=True, slots=True)
class AskResult:
    """Text plus metadata (AskFull)."""

    text: str
    metadata: ResponseMetadata
    #: Tools the model called (finish_reason "tool_calls").
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class Embedding:
    """One input's vector (float32 values); ``cached``: served from the caller's cache."""

    vector: tuple[float, ...]
    cached: bool


@dataclass(frozen=True, slots=True)
class EmbedResult:
    """Vectors in the order of the inputs, with usage and routing metadata (Embed)."""

    embeddings: tuple[Embedding, ...]
    usage: Usage
    provider: str
    model: str
    route: str
    attempts: tuple[Attempt, ...]
    request_id: str
    latency_ms: float

    @property
    def vectors(self) -> list[list[float]]:
        """The vectors alone, as lists."""
        return [list(e.vector) for e in self.embeddings]


@dataclass(frozen=True, slots=True)
class StructuredResult:
    """A validated JSON document plus metadata (AskStructured)."""

    data: Any
    json: str
    metadata: ResponseMetadata
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """A streamed piece: text, or one whole tool call; the last one has ``metadata``."""

    delta: str
    index: int
    metadata: ResponseMetadata | None
    tool_call: ToolCall | None = None


@dataclass(frozen=True, slots=True)
class Conversation:
    session_id: str
    thread_id: str
    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class UsageRow:
    session_id: str
    model: str
    provider: str
    requests: int
    cache_hits: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    estimated_requests: int
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    reasoning_tokens: int = 0
    cost_micro_usd: int = 0
    unpriced_answers: int = 0
    #: Answers the provider billed that the sidecar refused (kept apart).
    refused_answers: int = 0
    refused_prompt_tokens: int = 0
    refused_completion_tokens: int = 0
    refused_cost_micro_usd: int = 0


@dataclass(frozen=True, slots=True)
class QuotaStatus:
    """One of the caller's quotas in its current window."""

    name: str
    unit: str
    limit: int
    used: int
    reserved: int
    remaining: int
    resets_in_seconds: float


@dataclass(frozen=True, slots=True)
class UsageReport:
    total: UsageRow
    rows: tuple[UsageRow, ...]
    quotas: tuple[QuotaStatus, ...] = ()


@dataclass(frozen=True, slots=True)
class SessionEnded:
    threads_cleared: int
    cache_entries_cleared: int


@dataclass(frozen=True, slots=True)
class Released:
    released: bool
    cache_entries_freed: int

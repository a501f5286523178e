"""Plain value types passed between the service, the managers and providers."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from llm_sidecar.core.vocabulary.hosted import Approval, HostedServer, McpRecord
from llm_sidecar.core.vocabulary.tools import AUTO, Image, Tool, ToolCall, ToolChoice

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a chat: its text, and what an agent's turn may add."""

    role: Role
    #: The text (a turn given in parts: its text parts, joined by newlines).
    content: str
    #: The images, in order.
    images: tuple[Image, ...] = ()
    #: On assistant turns: the tools the model called.
    tool_calls: tuple[ToolCall, ...] = ()
    #: On tool turns: the call this is the result of.
    tool_call_id: str = ""
    #: Text and images in the order the caller gave them, when an image comes before
    #: some text ("Picture A:" [image] "Picture B:" [image] "Which is brighter?");
    #: empty when the text simply comes first.
    parts: tuple[str | Image, ...] = ()

    @property
    def plain(self) -> bool:
        """Text only: no images, no tool calls, not a tool result."""
        return not (self.images or self.tool_calls or self.tool_call_id)

    def ordered(self) -> tuple[str | Image, ...]:
        """The content in order: the parts as given, or the text, then the images."""
        if self.parts:
            return self.parts
        return ((self.content,) if self.content else ()) + self.images

    @classmethod
    def from_parts(cls, role: Role, parts: Sequence[str | Image]) -> ChatMessage:
        """A turn from text and image parts in order, keeping the order when it matters."""
        texts = [part for part in parts if isinstance(part, str)]
        images = tuple(part for part in parts if isinstance(part, Image))
        first_image = next((i for i, p in enumerate(parts) if isinstance(p, Image)), len(parts))
        interleaved = any(isinstance(p, str) for p in parts[first_image:]) or len(texts) > 1
        kept = tuple(parts) if images and interleaved else ()
        return cls(role, "\n".join(texts), images, parts=kept)


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """Sampling parameters; None means the provider's default."""

    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def canonical(self) -> str:
        """Stable text form, used in cache keys."""
        if self is DEFAULT_PARAMS or self == DEFAULT_PARAMS:
            return _DEFAULT_CANONICAL  # most calls set nothing: no encoding per call
        return json.dumps(
            [self.temperature, self.max_tokens, self.top_p, list(self.stop), self.seed],
            separators=(",", ":"),
        )


DEFAULT_PARAMS = GenerationParams()
_DEFAULT_CANONICAL = json.dumps([None, None, None, [], None], separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What a provider is asked: the full message list and parameters."""

    messages: tuple[ChatMessage, ...]
    params: GenerationParams = DEFAULT_PARAMS
    #: JSON Schema the answer must follow (structured output), or None.
    json_schema: dict[str, Any] | None = None
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = AUTO
    #: None: the provider's default.
    parallel_tool_calls: bool | None = None
    #: A stable, keyed pseudonym of the user and thread, for providers' prompt caches
    #: (never the raw user id); empty outside a session.
    cache_hint: str = ""
    #: How many leading non-system turns are the thread's stored history (a stable
    #: prefix a provider may cache).
    history_turns: int = 0
    #: When the caller stops waiting (``time.monotonic()``), or None; set by the router.
    #: An adapter never waits past it for a connection.
    deadline: float | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one provider answer.

    ``prompt_tokens`` counts every input token (cache reads and writes
    included) and ``completion_tokens`` every output token (reasoning
    included); the other classes are parts of those, as the provider billed them.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    estimated: bool = False
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Completion:
    """One provider's answer."""

    text: str
    response_id: str = ""
    model: str = ""
    finish_reason: str = ""
    usage: Usage | None = None
    #: Tools the model called (finish_reason "tool_calls"), arguments checked as JSON.
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One try of one provider while answering a request."""

    provider: str
    outcome: str
    latency_ms: float
    error_type: str = ""
    #: The provider's HTTP status when it answered with an error (0: none).
    status: int = 0

    def cause(self) -> str:
        """Why this try failed, as the logs and metrics name it (``connection``,
        ``timeout``, ``circuit_open``, ``pool_exhausted``), or the provider's
        ``HTTP 503``. Never a body or an address."""
        return f"HTTP {self.status}" if self.status else self.error_type


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    """What an embedding provider is asked: texts, and the vectors' dimension."""

    texts: tuple[str, ...]
    #: None: the model's own dimension.
    dimensions: int | None = None
    #: When the caller stops waiting (``time.monotonic()``), or None; set by the router.
    deadline: float | None = None


@dataclass(frozen=True, slots=True)
class Embeddings:
    """One provider's answer to an embedding request: a vector per text, in order, each
    as little-endian float32 bytes (what providers compute; compact in a cache)."""

    vectors: tuple[bytes, ...]
    model: str = ""
    usage: Usage | None = None


def pack_vector(values: Sequence[float]) -> bytes:
    """A vector as little-endian float32 bytes."""
    return struct.pack(f"<{len(values)}f", *values)


def unpack_vector(vector: bytes) -> tuple[float, ...]:
    """The float32 values of a packed vector."""
    return struct.unpack(f"<{len(vector) // 4}f", vector)


Answer = TypeVar("Answer", Completion, Embeddings)


@dataclass(frozen=True, slots=True)
class Routed(Generic[Answer]):
    """An answer plus which provider produced it and the attempts made."""

    answer: Answer
    provider: str
    attempts: tuple[AttemptRecord, ...]
    #: What the request's validator returned (the parsed document of a structured call).
    document: Any = None


RoutedCompletion = Routed[Completion]
RoutedEmbeddings = Routed[Embeddings]


@dataclass(frozen=True, slots=True)
class AskInput:
    """A caller's request, free of any wire format."""

    prompt: str
    model: str = ""
    params: GenerationParams = DEFAULT_PARAMS
    system_prompt: str = ""
    skip_history: bool = False
    skip_cache: bool = False
    json_schema: dict[str, Any] | None = None
    #: Caller-supplied turns, after the server-held history and before ``prompt``.
    messages: tuple[ChatMessage, ...] = ()
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = AUTO
    parallel_tool_calls: bool | None = None


@dataclass(frozen=True, slots=True)
class ResponseInput:
    """A response-style call (OpenAI's Responses API): new input that may continue a
    stored response, and whether the answer is stored to be continued in turn."""

    #: The new input as turns (instructions as the system prompt), tools and params.
    inp: AskInput
    #: This response's id, made before the call (a stream announces it first).
    response_id: str
    previous_response_id: str | None = None
    store: bool = True
    #: The surface's rendering of the answered response and the MCP steps that led to
    #: it, stored with it and returned as it is when the response is fetched.
    render: Callable[[AskResult, tuple[McpRecord, ...]], bytes] | None = None
    #: MCP servers the sidecar runs the tool loop with (OpenAI's hosted ``mcp`` tools),
    #: and the user's answers to approval requests of the response continued.
    hosted: tuple[HostedServer, ...] = ()
    approvals: tuple[Approval, ...] = ()
    #: Turns this response made before its last model call (tool calls and their
    #: results), and the MCP steps: read after the input, stored before the answer.
    carried: tuple[ChatMessage, ...] = ()
    records: tuple[McpRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class AskResult:
    """The answer to one Ask, with its metadata."""

    text: str
    provider: str
    model: str
    response_id: str
    usage: Usage
    cached: bool
    latency_ms: float
    finish_reason: str
    attempts: tuple[AttemptRecord, ...] = ()
    request_id: str = ""
    #: The parsed document for structured calls.
    structured: Any = None
    tool_calls: tuple[ToolCall, ...] = ()
    #: What the answer cost in micro-USD (0 for a cache hit); None: no price, unknown.
    cost_micro_usd: int | None = None
    #: The configured model route that answered.
    route: str = ""


@dataclass(frozen=True, slots=True)
class EmbedInput:
    """A caller's embedding request, free of any wire format."""

    texts: tuple[str, ...]
    model: str = ""
    dimensions: int | None = None
    skip_cache: bool = False


@dataclass(frozen=True, slots=True)
class EmbedResult:
    """The vectors of one Embed call, in the order of its texts, with its metadata."""

    vectors: tuple[bytes, ...]
    #: Per text: whether it was served from the caller's cache.
    cached: tuple[bool, ...]
    #: The provider that computed the fresh vectors (every text cached: the first's).
    provider: str
    model: str
    route: str
    usage: Usage
    #: What the fresh vectors cost in micro-USD (None: no price, unknown).
    cost_micro_usd: int | None
    attempts: tuple[AttemptRecord, ...] = ()
    request_id: str = ""
    latency_ms: float = 0.0


@dataclass(slots=True)
class CachedVector:
    """What the response cache holds for one embedded text."""

    vector: bytes
    provider: str
    session_id: str


@dataclass(slots=True)
class CachedAnswer:
    """What the response cache holds for one key."""

    completion: Completion
    provider: str
    session_id: str
    structured_json: str | None = None
    size: int = field(default=0)

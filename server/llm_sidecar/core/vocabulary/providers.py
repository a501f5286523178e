"""The provider interface that adapters (OpenAI-compatible, Anthropic, simulated) implement."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from llm_sidecar.core.vocabulary.models import (
    ChatRequest,
    Completion,
    EmbeddingRequest,
    Embeddings,
)
from llm_sidecar.core.vocabulary.tools import ToolCall


@dataclass(frozen=True, slots=True)
class Connections:
    """A provider's connection pool: calls holding a connection, calls queued for one,
    and the pool's size (0: no pool, as for the simulated provider)."""

    in_use: int = 0
    waiting: int = 0
    limit: int = 0


NO_POOL = Connections()


class Provider(Protocol):
    """One configured upstream: a base URL, credentials and a model id.

    Implementations raise :class:`~llm_sidecar.core.vocabulary.errors.ProviderError` with
    the right :class:`~llm_sidecar.core.vocabulary.errors.ErrorKind` for every failure,
    and never put credentials or URLs in error text. Timeouts are enforced by
    the caller (the router), so adapters need not set their own.
    """

    #: Configured name, unique in the process ("openai-primary").
    name: str
    #: GenAI semantic-convention provider name ("openai", "anthropic", ...).
    system: str
    #: Upstream model id.
    model: str

    async def complete(self, request: ChatRequest) -> Completion:
        """One non-streaming chat completion."""

    def stream(self, request: ChatRequest) -> AsyncIterator[str | ToolCall | Completion]:
        """Text deltas as they arrive, each tool call whole once its arguments are
        complete, then one :class:`Completion` with the whole answer."""

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        """A vector per text, in order (providers of embedding routes only)."""

    async def probe(self) -> None:
        """Cheap liveness check; raises ProviderError when the provider cannot serve."""

    def connections(self) -> Connections:
        """The provider's connection pool figures, read without I/O."""

"""The embedding kind of call (Embed; ``/v1/embeddings``): what the pipeline's steps
mean for a batch of texts.

Each text is cached on its own, per user, by model, dimensions and text. A batch is
answered from the cache for the texts it holds, and only the rest goes upstream, in
one call, in order, each distinct text once (a text repeated in a batch is embedded
and billed once); the vectors come back in the caller's order. Embedding inputs
are never part of any history, and never on a span or in a log.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from llm_sidecar.core.admission.billing import Worst
from llm_sidecar.core.guard.shield import Shield
from llm_sidecar.core.observability import Observability
from llm_sidecar.core.routing.router import EMBEDDING, Refused, Router
from llm_sidecar.core.state.cache import UserCache
from llm_sidecar.core.state.cache_keys import embedding_key
from llm_sidecar.core.turn.pipeline import Answer, Billed, Delta, record_lookup
from llm_sidecar.core.vocabulary.context import UserExecutionContext
from llm_sidecar.core.vocabulary.errors import ErrorKind, ProviderError
from llm_sidecar.core.vocabulary.models import (
    AttemptRecord,
    CachedVector,
    EmbeddingRequest,
    Embeddings,
    EmbedInput,
    EmbedResult,
    RoutedEmbeddings,
    Usage,
)

#: Tokens a provider may add around each input (a bound, as for chat turns).
_PER_INPUT_TOKENS = 8


class EmbedCall:
    """One batch of texts of one user, embedded through an embedding route."""

    #: A batch's vectors come whole.
    stream = False

    __slots__ = (
        "_keys",
        "_missing",
        "_obs",
        "_router",
        "_sent",
        "_slots",
        "_upstream",
        "_vectors",
        "cache_enabled",
        "ctx",
        "inp",
        "route",
        "session_id",
    )

    def __init__(
        self,
        ctx: UserExecutionContext,
        inp: EmbedInput,
        *,
        route: str = "",
        router: Router,
        observability: Observability,
        cache_enabled: bool,
    ) -> None:
        self.ctx = ctx
        self.inp = inp
        self.cache_enabled = cache_enabled
        self._router = router
        self._obs = observability
        #: The embedding route: resolved by the caller already, or at :meth:`prepare`.
        self.route = route
        #: Usage rows carry the session the call was made in; a vector has no history.
        self.session_id = ctx.session_id or ""
        self._keys: list[str] = []
        self._vectors: list[bytes | None] = []
        self._missing: list[int] = []
        #: The distinct texts sent upstream, and for each missing input its text's place.
        self._sent: tuple[str, ...] = ()
        self._slots: list[int] = []
        #: Each text as the guard lets it go upstream (empty: no guard, as they are).
        self._upstream: dict[str, str] = {}

    def thread(self) -> tuple[str, str] | None:
        return None  # never read or extend a conversation

    async def prepare(self) -> None:
        inp = self.inp
        if not self.route:
            self.route = self._router.resolve(inp.model, embedding=True)
        self._vectors = [None] * len(inp.texts)
        self._set_missing(list(range(len(inp.texts))))
        if self.cache_enabled and not inp.skip_cache:
            self._keys = [
                embedding_key(
                    user_id=self.ctx.user_id, model=self.route, dimensions=inp.dimensions, text=t
                )
                for t in inp.texts
            ]

    def guard(self, shield: Shield) -> None:
        """Every text, guarded (the cache keys keep the caller's own text)."""
        texts = self.inp.texts
        guarded = shield.texts([(text, f"input[{i}]") for i, text in enumerate(texts)])
        self._upstream = dict(zip(texts, guarded, strict=True))

    def restored(self, routed: RoutedEmbeddings, shield: Shield) -> RoutedEmbeddings:
        return routed  # vectors hold no placeholders to restore

    def cached(self, cache: UserCache, started: float) -> tuple[str, Answer[EmbedResult]] | None:
        """Take what the cache holds; the whole answer when it holds every text."""
        provider = ""
        for index, key in enumerate(self._keys):
            hit = cache.get(key)
            found = isinstance(hit, CachedVector)
            record_lookup(self._obs, found)
            if isinstance(hit, CachedVector):
                self._vectors[index] = hit.vector
                provider = provider or hit.provider
        self._set_missing([i for i, vector in enumerate(self._vectors) if vector is None])
        if self._missing:
            return None
        result = self._result(provider, "", Usage(), 0, (), started)
        return provider, Answer(result)

    def _set_missing(self, missing: list[int]) -> None:
        """The inputs still without a vector, and the distinct texts that will get them."""
        places: dict[str, int] = {}
        self._missing = missing
        self._slots = [places.setdefault(self.inp.texts[i], len(places)) for i in missing]
        self._sent = tuple(places)

    def worst_case(self) -> Worst:
        inputs = sum(len(t.encode("utf-8")) + _PER_INPUT_TOKENS for t in self._sent)
        return Worst(self.route, inputs, 0)

    def attempts(
        self, deadline: float | None, refused: Refused
    ) -> AsyncIterator[Delta | RoutedEmbeddings]:
        sent = self._sent
        if self._upstream:
            sent = tuple(self._upstream[text] for text in sent)
        request = EmbeddingRequest(sent, self.inp.dimensions)
        return self._router.route(
            self.route, request, deadline, self._check, refused, opener=EMBEDDING
        )

    def _check(self, answer: Embeddings) -> None:
        """A vector per text asked, each of the dimension asked: anything else is a bad
        answer, which fails over (and is billed as refused spend when the provider said
        what it charged)."""
        sizes = {len(vector) for vector in answer.vectors}
        wanted = self._wanted_size()
        if len(answer.vectors) != len(self._sent):
            problem = f"{len(answer.vectors)} vectors for {len(self._sent)} inputs"
        elif len(sizes) != 1 or 0 in sizes or (wanted is not None and sizes != {wanted}):
            problem = "vectors of another or of mixed dimensions"
        else:
            return
        raise ProviderError(ErrorKind.BAD_RESPONSE, problem).billing(answer.usage)

    def _wanted_size(self) -> int | None:
        """The byte size every fresh vector must have: the dimension asked, else that of
        a vector the cache gave for this batch (a batch never mixes dimensions)."""
        if self.inp.dimensions is not None:
            return 4 * self.inp.dimensions
        return next((len(v) for v in self._vectors if v is not None), None)

    def billed(self, routed: RoutedEmbeddings) -> Billed:
        usage = routed.answer.usage
        if usage is None:  # estimated, and said to be
            tokens = max(1, sum(len(t) for t in self._sent) // 4)
            usage = Usage(tokens, 0, tokens, estimated=True)
        return Billed(routed.provider, usage)

    def answered(
        self,
        routed: RoutedEmbeddings,
        billed: Billed,
        cost: int | None,
        started: float,
        cache: UserCache,
    ) -> Answer[EmbedResult]:
        """The vectors in the caller's order; the fresh ones cached, each on its own."""
        for index, slot in zip(self._missing, self._slots, strict=True):
            vector = routed.answer.vectors[slot]
            self._vectors[index] = vector
            if self._keys:
                cache.put(self._keys[index], CachedVector(vector, routed.provider, self.session_id))
        result = self._result(
            routed.provider, routed.answer.model, billed.usage, cost, routed.attempts, started
        )
        return Answer(result)

    def _result(
        self,
        provider: str,
        model: str,
        usage: Usage,
        cost: int | None,
        attempts: tuple[AttemptRecord, ...],
        started: float,
    ) -> EmbedResult:
        fresh = set(self._missing)
        vectors = tuple(v for v in self._vectors if v is not None)
        assert len(vectors) == len(self.inp.texts)
        return EmbedResult(
            vectors=vectors,
            cached=tuple(i not in fresh for i in range(len(vectors))),
            provider=provider,
            model=model,
            route=self.route,
            usage=usage,
            cost_micro_usd=cost,
            attempts=attempts,
            request_id=self.ctx.request_id or "",
            latency_ms=(time.perf_counter() - started) * 1000,
        )

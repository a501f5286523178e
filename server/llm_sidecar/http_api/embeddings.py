"""The embeddings endpoint: OpenAI's ``/v1/embeddings``, through the same service
call as gRPC's Embed (so the same pipeline, per-user cache, quotas and bill)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from llm_sidecar.http_api import openai_embeddings
from llm_sidecar.http_api.edge import HttpCall
from llm_sidecar.service import LLMService


class EmbeddingEndpoints:
    """The handler, over one service; ``route_seconds`` gives a route's default deadline."""

    def __init__(self, service: LLMService, route_seconds: Callable[[str], float]) -> None:
        self._service = service
        self._route_seconds = route_seconds

    async def embeddings(self, call: HttpCall) -> web.StreamResponse:
        assert call.body is not None and call.ctx is not None
        spec = openai_embeddings.parse(call.body)
        call.same_user(call.body.raw("user"), "user")
        self._service.validate_embed(spec.inp, "input")  # a 400 before any deadline is read
        route = self._service.router.resolve(spec.model, embedding=True)
        deadline = call.deadline(self._route_seconds(route))
        result = await self._service.embed(call.ctx, spec.inp, deadline, field="input")
        call.embedded(result)
        return call.json(openai_embeddings.response(result, spec))

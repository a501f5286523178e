"""The embeddings endpoint: OpenAI's ``/v1/embeddings``, through the same service
call as gRPC's Embed (so the same pipeline, per-user cache, quotas and bill)."""

from __future__ import annotations

from aiohttp import web

from llm_sidecar.http_api import openai_embeddings
from llm_sidecar.http_api.edge import HttpCall
from llm_sidecar.http_api.endpoints import Endpoints


class EmbeddingEndpoints(Endpoints):
    """The embeddings handler."""

    async def embeddings(self, call: HttpCall) -> web.StreamResponse:
        assert call.body is not None and call.ctx is not None
        spec = openai_embeddings.parse(call.body)
        call.same_user(call.body.raw("user"), "user")
        self._service.validate_embed(spec.inp, "input")  # a 400 before any deadline is read
        deadline = self._deadline(call, spec.model, embedding=True)
        result = await self._service.embed(call.ctx, spec.inp, deadline, field="input")
        call.embedded(result)
        return call.json(openai_embeddings.response(result, spec))

"""OpenAI's Responses API: the handlers of ``POST /v1/responses``, ``GET`` and ``DELETE
/v1/responses/{id}``, and ``GET /v1/responses/{id}/input_items``; the request is read
in ``response_request.py``, the answers and their items shaped in ``response_items.py``.

Responses go through the same service call as every chat turn (the same pipeline,
isolation, failover, quotas and bill); a stored one is a handle of the caller's
own, so another user's id is answered exactly as one that never existed: 404.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

from aiohttp import web

from llm_sidecar.core.vocabulary.errors import InvalidRequestError
from llm_sidecar.core.vocabulary.models import ResponseInput
from llm_sidecar.http_api.edge import HttpCall
from llm_sidecar.http_api.endpoints import Endpoints
from llm_sidecar.http_api.openai.response_items import (
    ResponseEvents,
    item_list,
    items_of,
    own_calls,
    rendered,
)
from llm_sidecar.http_api.openai.response_request import ResponseSpec, parse
from llm_sidecar.http_api.sse import Stream, relay, replayed


class Responses(Endpoints):
    """``POST /v1/responses`` and the stored responses' own routes."""

    async def create(self, call: HttpCall) -> web.StreamResponse:
        assert call.body is not None and call.ctx is not None
        spec = parse(call.body)
        call.same_user(call.body.raw("user"), "user")
        deadline = self._deadline(call)
        # The stored response is the one the caller gets: rendered once, by this surface.
        response = dataclasses.replace(spec.response, render=functools.partial(rendered, spec))
        call.headers["x-llm-response-id"] = response.response_id
        if response.hosted or response.approvals:
            return await self._hosted(call, spec, response, deadline)
        if not spec.stream:
            result = await self._service.respond(call.ctx, response, deadline)
            call.answered(result)
            return call.json(rendered(spec, result))
        events = ResponseEvents(spec)
        stream: Stream
        if response.inp.json_schema is not None:  # checked whole, then streamed
            stream = replayed(await self._service.respond(call.ctx, response, deadline))
        else:
            stream = self._service.respond_stream(call.ctx, response, deadline)
        return await relay(call, stream, events, events.start(), events.finish)

    async def _hosted(
        self,
        call: HttpCall,
        spec: ResponseSpec,
        response: ResponseInput,
        deadline: Callable[[str], float],
    ) -> web.StreamResponse:
        """A response with hosted MCP tools: the loop runs, then the answer is sent (a
        stream replays its steps' events, then the answer's)."""
        assert call.ctx is not None
        result, records = await self._service.respond_hosted(call.ctx, response, deadline)
        if not spec.stream:
            call.answered(result)
            return call.json(rendered(spec, result, records))
        events = ResponseEvents(spec, records)
        own = dataclasses.replace(result, tool_calls=own_calls(spec, result.tool_calls))
        # The closing event shows the whole answer: its approval requests too.
        return await relay(
            call, replayed(own), events, events.start(), lambda _: events.finish(result)
        )

    async def retrieve(self, call: HttpCall) -> web.StreamResponse:
        assert call.ctx is not None
        stored = await self._service.stored_response(call.ctx, _response_id(call))
        return call.json(stored.view)

    async def delete(self, call: HttpCall) -> web.StreamResponse:
        assert call.ctx is not None
        response_id = _response_id(call)
        await self._service.delete_response(call.ctx, response_id)
        return call.json({"id": response_id, "object": "response", "deleted": True})

    async def input_items(self, call: HttpCall) -> web.StreamResponse:
        """What the response was made from, a page at a time (newest first by default)."""
        assert call.ctx is not None
        query = call.request.query
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise InvalidRequestError("order", "must be asc or desc")
        try:
            limit = int(query.get("limit", "20"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            raise InvalidRequestError("limit", "must be an integer from 1 to 100")
        chain = await self._service.response_input(call.ctx, _response_id(call))
        items = [entry for item in chain for entry in items_of(item)]
        return call.json(item_list(items, limit=limit, order=order, after=query.get("after", "")))


def _response_id(call: HttpCall) -> str:
    return call.request.match_info["response_id"]

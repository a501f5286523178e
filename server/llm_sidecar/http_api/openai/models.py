"""``GET /v1/models``: the configured routes, in the asking SDK's shape (Anthropic's
list when the caller sends ``anthropic-version``, as its SDK does; OpenAI's otherwise)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from llm_sidecar.http_api.edge import HttpCall
from llm_sidecar.http_api.endpoints import Endpoints


class Models(Endpoints):
    """``GET /v1/models``."""

    async def handle(self, call: HttpCall) -> web.StreamResponse:
        routes = sorted(self._service.router.routes)
        if "anthropic-version" in call.request.headers:
            data: list[dict[str, Any]] = [
                {"type": "model", "id": r, "display_name": r, "created_at": "1970-01-01T00:00:00Z"}
                for r in routes
            ]
            first, last = (routes[0], routes[-1]) if routes else (None, None)
            body = {"data": data, "has_more": False, "first_id": first, "last_id": last}
        else:
            data = [
                {"id": r, "object": "model", "created": 0, "owned_by": "llm-sidecar"}
                for r in routes
            ]
            body = {"object": "list", "data": data}
        return call.json(body)

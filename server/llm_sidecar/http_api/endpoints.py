"""What every group of HTTP handlers holds: the service, and each route's deadline."""

from __future__ import annotations

from collections.abc import Callable

from llm_sidecar.http_api.edge import HttpCall
from llm_sidecar.service import LLMService


class Endpoints:
    """Handlers over one service; ``route_seconds`` gives a route's default deadline."""

    def __init__(self, service: LLMService, route_seconds: Callable[[str], float]) -> None:
        self._service = service
        self._route_seconds = route_seconds

    def _deadline(self, call: HttpCall, model: str, *, embedding: bool = False) -> float:
        """When ``call`` must end: its route's default, or the caller's shorter one."""
        route = self._service.router.resolve(model, embedding=embedding)
        return call.deadline(self._route_seconds(route))

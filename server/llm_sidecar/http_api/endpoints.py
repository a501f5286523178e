"""What every HTTP handler holds: the service, and each route's deadline."""

from __future__ import annotations

from collections.abc import Callable

from llm_sidecar.http_api.edge import HttpCall
from llm_sidecar.service import LLMService


class Endpoints:
    """Handlers over one service; ``route_seconds`` gives a route's default deadline."""

    def __init__(self, service: LLMService, route_seconds: Callable[[str], float]) -> None:
        self._service = service
        self._route_seconds = route_seconds

    def _deadline(self, call: HttpCall) -> Callable[[str], float]:
        """When ``call`` must end, once the service has resolved its route: the route's
        default, or the caller's shorter one (the route is resolved once, there)."""
        return lambda route: call.deadline(self._route_seconds(route))

"""More calls accepted at once: extra outstanding accepts for a grpc.aio server's busiest methods.

gRPC core holds an arriving call until the server has asked for one ("request
call"). grpcio 1.85's asyncio server asks for one call per method at a time,
and asks again only after the call it got went through ``asyncio.wait``, a new
task and about five turns of the event loop (grpc/grpc#43461). When the loop
is busy serving open streams each turn is long, and calls queue inside core,
unseen: a burst of 1,000 streams waited up to 1.3 s to reach even a handler that
did nothing (0.3 s with the slots below), and the sidecar's first chunks took
seconds at 500 streams.

:class:`AcceptSlots` keeps ``slots`` more requests outstanding for each given
method, each asked again as soon as its call is handed over, so a burst is
taken ``slots`` calls per turn. It hands every call to the same Cython
entry points grpc's own loop uses (``_handle_rpc`` and ``_schedule_rpc_coro``),
so a call runs exactly as it would otherwise: same handler lookup,
cancellation, deadlines and shutdown. Those entry points are private, so they are
checked by name and parameters before use; when grpcio no longer has them in
that shape, :func:`available` says why and the server runs with grpc's own
loop alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import grpc

from llm_sidecar.telemetry.logs import frames_only

log = logging.getLogger(__name__)

#: The private entry points used, with the parameters each must take, in order.
_ENTRY_POINTS: dict[str, tuple[str, ...]] = {
    "_handle_rpc": (
        "method_name",
        "method_resolver",
        "interceptors",
        "rpc_state",
        "loop",
        "concurrency_exceeded",
    ),
    "_schedule_rpc_coro": ("rpc_coro", "rpc_state", "loop", "method_name"),
    "AioServer._request_registered_call": ("self", "method"),
    "AioServer.is_running": ("self",),
    "_MethodResolver.resolve_handler": ("self", "handler_call_details"),
}


def _cygrpc() -> Any:
    from grpc._cython import cygrpc

    return cygrpc


def _parameters(function: Callable[..., Any]) -> tuple[str, ...]:
    code = getattr(function, "__code__", None)
    if code is None:
        return ()
    return tuple(code.co_varnames[: code.co_argcount])


def available(cygrpc: Any = None, server: Any = None) -> str:
    """Why the slots cannot run with this grpcio's ``cygrpc`` (or the module given) and
    ``server``: an entry point missing or taking other parameters, or a grpc.aio server
    that does not hold its cygrpc server where the slots look (``_server``); "" when
    they can."""
    if cygrpc is None:
        cygrpc = _cygrpc()
    if server is not None and not isinstance(getattr(server, "_server", None), cygrpc.AioServer):
        return f"grpcio {grpc.__version__}: grpc.aio.Server holds no cygrpc.AioServer in _server"
    for path, expected in _ENTRY_POINTS.items():
        target: Any = cygrpc
        for part in path.split("."):
            target = getattr(target, part, None)
        if target is None:
            return f"grpcio {grpc.__version__} has no cygrpc.{path}"
        if _parameters(target) != expected:
            return f"grpcio {grpc.__version__}: cygrpc.{path} takes other parameters"
    return ""


class AcceptSlots:
    """Outstanding accepts for some methods of one started grpc.aio server."""

    def __init__(
        self,
        server: grpc.aio.Server,
        handlers: Mapping[str, grpc.RpcMethodHandler],
        slots: int,
    ) -> None:
        """``handlers``: fully qualified method name ("/pkg.Service/Method") to its
        handler, as registered on ``server`` with ``add_registered_method_handlers``."""
        self._server = server
        self._handlers = dict(handlers)
        self._slots = slots
        self._accepting: set[asyncio.Task[None]] = set()
        #: Calls taken here and still running (held so the loop keeps them alive).
        self._calls: set[asyncio.Task[None]] = set()
        #: Calls taken through these slots since the start.
        self.accepted = 0

    @property
    def running(self) -> int:
        """Accepting tasks alive now."""
        return len(self._accepting)

    def start(self) -> None:
        """Begin accepting (after ``server.start()``)."""
        cygrpc = _cygrpc()
        resolver = cygrpc._MethodResolver([], self._handlers)
        loop = asyncio.get_running_loop()
        for method in self._handlers:
            for _ in range(self._slots):
                task = loop.create_task(self._accept(cygrpc, resolver, method), name="accept")
                self._accepting.add(task)
                task.add_done_callback(self._accepting.discard)

    async def _accept(self, cygrpc: Any, resolver: Any, method: str) -> None:
        core = self._server._server  # the cygrpc.AioServer behind grpc.aio.Server
        name = method.encode()
        loop = asyncio.get_running_loop()
        # Asking core for a call after the server stopped would use a freed server:
        # the check and the ask run in one step of the loop, with nothing between.
        while core.is_running():
            try:
                rpc_state = await core._request_registered_call(name)
            except Exception as exc:
                # Shutdown fails every outstanding request; nothing else should.
                if core.is_running():
                    log.error(
                        "accepting a call failed: one slot fewer",
                        extra={"rpc_method": method, "error": frames_only(exc)},
                    )
                return
            self.accepted += 1
            # No interceptors (the sidecar's servers have none) and no concurrency
            # limit (the slots are off when max_concurrent_rpcs is set).
            handling = cygrpc._handle_rpc(method, resolver, (), rpc_state, loop, False)
            call = loop.create_task(cygrpc._schedule_rpc_coro(handling, rpc_state, loop, method))
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)

    async def wait_stopped(self) -> None:
        """Until every slot has ended, which the server's shutdown brings about: it
        fails every outstanding request. (Cancelling a slot instead would leave its
        request in core, and a call matched to it would never be answered.)"""
        await asyncio.gather(*self._accepting, return_exceptions=True)

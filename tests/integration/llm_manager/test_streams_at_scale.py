"""Many calls at once: accept slots, bounded waits for connections, and shutdown under load.

The speed of all this is measured in ``bench stream``; these tests check what
must hold whatever the speed: every call of a burst is taken and answered, the
slots run on this grpcio and end with the server, the concurrency cap still
caps, and a call that cannot get a connection before its deadline is told why.
"""

from __future__ import annotations

import asyncio
import time
import types

import grpc
import pytest
from llm_manager.v1 import llm_manager_pb2 as pb
from llm_manager.v1 import llm_manager_pb2_grpc as pb_grpc

from llm_sidecar import Sidecar
from llm_sidecar.transport import accept
from tests.support.sidecar import make_settings, provider
from tests.support.upstream import FakeUpstream
from tests.support.waiting import eventually

METHODS = len(pb.DESCRIPTOR.services_by_name["LLMManagerService"].methods)


def test_the_accept_slots_run_on_the_installed_grpcio() -> None:
    """They use grpc's private entry points: a grpcio that changed them must fail here,
    not quietly fall back to one call at a time."""
    assert accept.available() == ""


def test_a_grpcio_without_an_entry_point_is_named() -> None:
    from grpc._cython import cygrpc

    without = types.SimpleNamespace(
        **{name: getattr(cygrpc, name) for name in ("AioServer", "_MethodResolver", "_handle_rpc")}
    )
    assert accept.available(without) == (
        f"grpcio {grpc.__version__} has no cygrpc._schedule_rpc_coro"
    )
    moved = types.SimpleNamespace(
        AioServer=cygrpc.AioServer,
        _MethodResolver=cygrpc._MethodResolver,
        _handle_rpc=cygrpc._schedule_rpc_coro,  # another function under the name
        _schedule_rpc_coro=cygrpc._schedule_rpc_coro,
    )
    assert accept.available(moved) == (
        f"grpcio {grpc.__version__}: cygrpc._handle_rpc takes other parameters"
    )
    # A grpc.aio server that no longer holds its cygrpc server where the slots look.
    assert accept.available(server=types.SimpleNamespace(_server=None)) == (
        f"grpcio {grpc.__version__}: grpc.aio.Server holds no cygrpc.AioServer in _server"
    )


async def _streams(port: int, n: int, channels: int = 4) -> list[tuple[str, int]]:
    """``n`` AskStream calls at once, each as its own user: (text, chunks) per call."""
    chans = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(channels)]
    stubs = [pb_grpc.LLMManagerServiceStub(c) for c in chans]

    async def one(i: int) -> tuple[str, int]:
        text, chunks = "", 0
        call = stubs[i % channels].AskStream(
            pb.AskRequest(prompt=f"burst number {i}"),
            metadata=[("x-user-id", f"burst-{i}")],
            timeout=60,
        )
        async for chunk in call:
            text += chunk.delta
            chunks += 1
        return text, chunks

    try:
        return await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        for c in chans:
            await c.close()


async def test_a_burst_of_streams_is_taken_through_the_slots_and_answered_whole(
    upstream: FakeUpstream, sidecar_factory
) -> None:
    upstream.stream_chunk_delay = 0.01  # streams that last: they overlap the burst
    settings = make_settings(
        [provider("primary", upstream.url)], limits={"max_concurrent_per_user": 0}
    )
    sidecar: Sidecar = await sidecar_factory(settings)
    slots = sidecar.servers.accept
    per_method = settings.server.accept_slots
    assert slots is not None and slots.running == per_method * METHODS
    results = await _streams(sidecar.port, 300)
    for i, (text, chunks) in enumerate(results):
        assert text == f"primary says: burst number {i} (turn 1)"
        assert chunks >= 2  # text, then the metadata
    assert len(upstream.chat_requests) == 300
    # One call at a time is grpc's own loop; the rest came through the slots.
    assert slots.accepted >= 250
    assert slots.running == per_method * METHODS  # every slot asked again


async def test_stopping_under_load_ends_every_slot_and_answers_every_call(
    upstream: FakeUpstream, sidecar_factory, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.stream_chunk_delay = 0.05
    settings = make_settings(
        [provider("primary", upstream.url)], limits={"max_concurrent_per_user": 0}
    )
    sidecar: Sidecar = await sidecar_factory(settings)
    slots = sidecar.servers.accept
    assert slots is not None
    burst = asyncio.ensure_future(_streams(sidecar.port, 100))
    await eventually(lambda: len(upstream.chat_requests) == 100, what="100 streams open")
    start = time.perf_counter()
    await sidecar.stop(grace=5.0)  # the streams end within it: drained, not cut
    assert time.perf_counter() - start < 5.0
    assert slots.running == 0
    results = await burst
    assert [text for text, _ in results] == [
        f"primary says: burst number {i} (turn 1)" for i in range(100)
    ]
    assert not [r for r in caplog.records if r.name == "llm_sidecar.transport.accept"]


async def test_max_concurrent_rpcs_turns_the_slots_off_and_still_caps(
    upstream: FakeUpstream, sidecar_factory
) -> None:
    """gRPC's own limiter counts only the calls its own loop takes, so the cap keeps
    calls on that loop."""
    upstream.latency = 0.5
    settings = make_settings([provider("primary", upstream.url)], server={"max_concurrent_rpcs": 2})
    sidecar: Sidecar = await sidecar_factory(settings)
    assert sidecar.servers.accept is None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.port}") as channel:
        stub = pb_grpc.LLMManagerServiceStub(channel)

        async def ask(i: int) -> grpc.StatusCode:
            try:
                await stub.Ask(
                    pb.AskRequest(prompt=f"q{i}"), metadata=[("x-user-id", f"u{i}")], timeout=10
                )
            except grpc.aio.AioRpcError as error:
                return error.code()
            return grpc.StatusCode.OK

        codes = await asyncio.gather(*(ask(i) for i in range(3)))
    assert sorted(c.name for c in codes) == ["OK", "OK", "RESOURCE_EXHAUSTED"]


async def test_accept_slots_zero_leaves_acceptance_to_grpc(
    upstream: FakeUpstream, sidecar_factory
) -> None:
    settings = make_settings([provider("primary", upstream.url)], server={"accept_slots": 0})
    sidecar: Sidecar = await sidecar_factory(settings)
    assert sidecar.servers.accept is None
    results = await _streams(sidecar.port, 20)
    assert [text for text, _ in results] == [
        f"primary says: burst number {i} (turn 1)" for i in range(20)
    ]


@pytest.mark.parametrize("method", ["Ask", "AskStream"])
async def test_a_call_that_cannot_get_a_connection_before_its_deadline_is_told_why_in_time(
    method: str, upstream: FakeUpstream, sidecar_factory
) -> None:
    """The pool would let it wait 10 s; its deadline is 0.6 s away. It gets
    UNAVAILABLE naming the full pool before its deadline, not DEADLINE_EXCEEDED at it."""
    upstream.latency = 2.0  # the one connection stays busy
    pooled = {"max_connections": 1, "max_connection_wait_seconds": 10}
    settings = make_settings([provider("primary", upstream.url, **pooled)])
    sidecar: Sidecar = await sidecar_factory(settings)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.port}") as channel:
        stub = pb_grpc.LLMManagerServiceStub(channel)
        metadata = [("x-user-id", "alice")]
        held = stub.Ask(pb.AskRequest(prompt="occupy"), metadata=metadata, timeout=10)
        held_task = asyncio.ensure_future(held)
        await eventually(lambda: upstream.chat_requests, what="the held call arrived")
        start = time.perf_counter()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            request = pb.AskRequest(prompt="queued")
            if method == "Ask":
                await stub.Ask(request, metadata=metadata, timeout=0.6)
            else:
                async for _ in stub.AskStream(request, metadata=metadata, timeout=0.6):
                    pass
        elapsed = time.perf_counter() - start
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
        assert "pool_exhausted" in (info.value.details() or "")
        assert elapsed < 0.6
        assert len(upstream.chat_requests) == 1  # the queued call never reached it
        held_task.cancel()

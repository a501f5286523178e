"""The wire edge against hostile input: every rejection has its documented status,
every time, and nothing a caller sent reaches a log line. Also the network guards:
TLS, the bearer token, a separate admin listener, and refusing unguarded listeners.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from llm_manager.v1 import llm_manager_pb2 as pb
from llm_manager.v1 import llm_manager_pb2_grpc as pb_grpc

from llm_sidecar import Sidecar
from llm_sidecar.transport.server import MESSAGE_CEILING_BYTES, METADATA_LIMIT_BYTES
from tests.support import raw_grpc
from tests.support.sidecar import ROOT, SidecarProcess, make_settings, provider
from tests.support.upstream import FakeUpstream

ASK = "/llm_manager.v1.LLMManagerService/Ask"
KiB = 1024
MiB = 1024 * 1024


def _details(error: grpc.aio.AioRpcError) -> tuple[str, dict[str, str]]:
    """(BadRequest field, ErrorInfo metadata) of a rich status."""
    field, info = "", {}
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    field = bad.field_violations[0].field
                elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    error_info = error_details_pb2.ErrorInfo()
                    detail.Unpack(error_info)
                    info = dict(error_info.metadata)
    return field, info


async def _ask(
    channel: grpc.aio.Channel, request: pb.AskRequest, metadata: list[tuple[str, str]]
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await pb_grpc.LLMManagerServiceStub(channel).Ask(request, metadata=metadata, timeout=30)
    return info.value


@pytest.fixture
async def channel(sidecar: Sidecar):
    options = [("grpc.max_send_message_length", 128 * MiB)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.port}", options=options) as ch:
        yield ch


# -- 1. metadata sizes: the sidecar's own validation, every time ------------------------


@pytest.mark.parametrize("key", ["x-user-id", "x-session-id"])
@pytest.mark.parametrize("size", [10 * KiB, 16 * KiB, 64 * KiB])
async def test_large_metadata_values_reach_validation_every_time(
    channel: grpc.aio.Channel, key: str, size: int
) -> None:
    metadata = [("x-user-id", "alice")] if key != "x-user-id" else []
    metadata.append((key, "a" * size))
    for _ in range(20):  # core's default limits rejected part of these at random
        error = await _ask(channel, pb.AskRequest(prompt="hi"), metadata)
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == f"metadata '{key}' is longer than 128 characters"
        assert _details(error)[0] == key


async def test_metadata_past_core_limit_is_resource_exhausted_every_time(
    channel: grpc.aio.Channel,
) -> None:
    metadata = [("x-user-id", "alice"), ("x-pad", "p" * (METADATA_LIMIT_BYTES + KiB))]
    for _ in range(5):
        error = await _ask(channel, pb.AskRequest(prompt="hi"), metadata)
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "metadata size exceeds hard limit" in error.details()
    reply = await pb_grpc.LLMManagerServiceStub(channel).Ask(
        pb.AskRequest(prompt="still up"), metadata=[("x-user-id", "alice")], timeout=5
    )
    assert reply.text == "primary says: still up (turn 1)"


# -- 2. request sizes: INVALID_ARGUMENT naming the limit, up to 64 MiB ------------------


@pytest.mark.parametrize("size", [5_000_000, MESSAGE_CEILING_BYTES - 64])
async def test_oversized_requests_name_max_request_bytes(
    channel: grpc.aio.Channel, upstream: FakeUpstream, size: int
) -> None:
    error = await _ask(channel, pb.AskRequest(prompt="x" * size), [("x-user-id", "alice")])
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "server.max_request_bytes" in error.details()
    field, info = _details(error)
    assert field == "request" and info["limit"] == "server.max_request_bytes"
    assert upstream.chat_requests == []


async def test_request_past_core_ceiling_is_resource_exhausted_every_time(
    channel: grpc.aio.Channel,
) -> None:
    request = pb.AskRequest(prompt="x" * (MESSAGE_CEILING_BYTES + 128 * KiB))
    for _ in range(3):
        error = await _ask(channel, request, [("x-user-id", "alice")])
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


# -- 3. requests that do not decode -------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"\xff\xff\xff\xff", id="not-protobuf"),
        pytest.param(b"\x0a\x02\xc3\x28", id="string-field-invalid-utf8"),
        pytest.param(b"\x0a\x10short", id="length-past-end"),
        pytest.param(b"\x1a\x05\x08\x80\x80\x80\x80", id="truncated-varint-in-submessage"),
    ],
)
async def test_undecodable_requests_are_invalid_argument(sidecar: Sidecar, body: bytes) -> None:
    reply = await asyncio.to_thread(
        raw_grpc.call, ("127.0.0.1", sidecar.port), ASK, body, [(b"x-user-id", b"alice")]
    )
    assert reply.status == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert (
        reply.message == "request: is not a valid llm_manager.v1.AskRequest message (wire format)"
    )
    assert len(sidecar.registry) == 0  # nothing was created for a rejected call


async def test_refused_requests_leave_no_manager_behind(
    channel: grpc.aio.Channel, sidecar: Sidecar
) -> None:
    stub = pb_grpc.LLMManagerServiceStub(channel)
    refused = [
        pb.AskRequest(prompt="hi", model="no-such-model"),
        pb.AskRequest(prompt="   "),
        pb.AskRequest(prompt="hi", params=pb.GenerationParams(temperature=9.0)),
    ]
    for request in refused:
        for call in (stub.Ask, stub.AskFull, stub.IsCached):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(request, metadata=[("x-user-id", "refused-user")], timeout=5)
            assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError):
            async for _ in stub.AskStream(request, metadata=[("x-user-id", "refused-user")]):
                pass
    assert sidecar.registry.get("refused-user") is None and len(sidecar.registry) == 0


# -- 4. nothing a caller sent reaches a log line -------------------------------------------


def _hostile_calls(port: int, marker: str) -> list[raw_grpc.RawReply]:
    """Every malformed path, each carrying the marker somewhere a log could quote it."""
    address = ("127.0.0.1", port)
    mark = marker.encode()
    good = pb.AskRequest(prompt=f"{marker} prompt").SerializeToString()
    cases = [
        (good, [(b"x-user-id", mark + b"\xff\xfe")]),  # non-UTF-8 value
        (good, [(b"x-user-id", b"alice"), (b"x-session-id", mark + b"\xc3\x28")]),
        (good, [(b"x-user-id", b"alice"), (b"x-thread-id", mark + b" with space")]),
        (good, [(b"x-user-id", mark * 2000)]),  # long
        (good, [(b"x-user-id", mark), (b"x-user-id", mark)]),  # duplicate
        (good, [(b"x-user-id", b"alice"), (b"x-permissions", mark + b",\x01")]),
        (good, [(b"x-user-id", b"alice"), (b"authorization", mark)]),
        (b"\xff" + mark, [(b"x-user-id", b"alice")]),  # not protobuf
        (b"\x0a\x04" + b"\xc3\x28" + mark[:2], [(b"x-user-id", b"alice")]),  # bad UTF-8 field
        (good, [(b"x-user-id", b"alice"), (b"traceparent", mark + b"\xff")]),
        (good, [(b"x-user-id", b"alice"), (b"x-unknown-" + mark.lower(), mark + b"\xff")]),
    ]
    return [raw_grpc.call(address, ASK, body, md) for body, md in cases]


async def test_no_log_line_carries_metadata_or_content_in_process(
    sidecar: Sidecar, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    marker = f"Mk{uuid.uuid4().hex[:10]}"
    replies = await asyncio.to_thread(_hostile_calls, sidecar.port, marker)
    assert {r.status for r in replies} <= {0, 3, 16}, [r.status for r in replies]
    logged = "\n".join(
        f"{r.name} {r.getMessage()} {r.args!r} {r.exc_text} {r.__dict__}"
        for r in caplog.records
        if not r.name.startswith(("hpack", "h2"))  # the test's own raw client
    )
    assert marker not in logged and marker.encode().hex() not in logged
    assert "Invalid encoding on <withheld>" in logged  # grpcio did log, without the value


async def test_no_log_line_carries_metadata_or_content_from_the_process(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    config = tmp_path / "sidecar.json"
    config.write_text(
        json.dumps(
            {
                "default_model": "m",
                "http": {"port": 0},
                "models": {"m": {"providers": [provider("primary", upstream.url)]}},
                "telemetry": {"log_level": "DEBUG", "library_log_level": "DEBUG"},
                "failover": {"health_interval_seconds": 0},
            }
        )
    )
    marker = f"Mk{uuid.uuid4().hex[:10]}"
    proc = SidecarProcess(config, env={"GRPC_VERBOSITY": "DEBUG"})
    try:
        await proc.wait_ready()
        replies = await asyncio.to_thread(_hostile_calls, proc.port, marker)
        assert all(r.status is not None for r in replies)
    finally:
        proc.stop()
    output = proc.output()
    assert b"sidecar stopped" in output
    assert marker.encode() not in output and marker.encode().hex().encode() not in output


# -- network guards ---------------------------------------------------------------------------


def test_unguarded_non_loopback_listener_refuses_to_start() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "llm_sidecar", "--host", "0.0.0.0", "--port", "0"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "LLM_SIDECAR_CONFIG": ""},
    )
    assert proc.returncode == 2
    assert "'0.0.0.0' is not a loopback address" in proc.stderr
    assert "allow_insecure_remote" in proc.stderr and "auth_token_env" in proc.stderr


def test_guarded_or_opted_in_non_loopback_settings_are_accepted() -> None:
    for server in (
        {"host": "0.0.0.0", "allow_insecure_remote": True},
        {"host": "0.0.0.0", "auth_token_env": "SOME_TOKEN"},
        {"host": "::", "tls_cert_file": "c.pem", "tls_key_file": "k.pem"},
        {"host": "::1"},
        {"host": "127.0.0.2"},
        {"host": "localhost"},
    ):
        assert make_settings(server=server).server.host == server["host"]
    with pytest.raises(ValueError, match="is not a loopback address"):
        make_settings(server={"host": "127.0.0.1", "admin_address": "10.1.2.3:9000"})


async def test_bearer_token_guards_tcp_calls(
    upstream: FakeUpstream, sidecar_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_SIDECAR_TOKEN", "s3cret-token")
    socket_path = str(tmp_path / "sc.sock")
    settings = make_settings(
        [provider("primary", upstream.url)],
        server={"auth_token_env": "TEST_SIDECAR_TOKEN", "unix_socket": socket_path},
    )
    sidecar = await sidecar_factory(settings)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.port}") as ch:
        stub = pb_grpc.LLMManagerServiceStub(ch)
        request = pb.AskRequest(prompt="hi")
        for auth in ([], [("authorization", "Bearer wrong")], [("authorization", "s3cret-token")]):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Ask(request, metadata=[("x-user-id", "alice"), *auth], timeout=5)
            assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert "s3cret" not in info.value.details()
        # RFC 7235: the scheme is case-insensitive, on gRPC as on HTTP; x-api-key as on HTTP.
        for scheme in ("Bearer", "bearer", "BEARER"):
            good = [("x-user-id", "alice"), ("authorization", f"{scheme} s3cret-token")]
            assert (await stub.Ask(request, metadata=good, timeout=5)).text
        keyed = [("x-user-id", "alice"), ("x-api-key", "s3cret-token")]
        assert (await stub.Ask(request, metadata=keyed, timeout=5)).text
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Ask(request, metadata=[("x-user-id", "a"), ("x-api-key", "no")], timeout=5)
        assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
        admin = pb_grpc.LLMAdminServiceStub(ch)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await admin.ListProviders(pb.ListProvidersRequest(), timeout=5)
        assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
    # The Unix socket is guarded by its file permissions: no token there.
    async with grpc.aio.insecure_channel(f"unix:{socket_path}") as ch:
        reply = await pb_grpc.LLMManagerServiceStub(ch).Ask(
            pb.AskRequest(prompt="hi"), metadata=[("x-user-id", "alice")], timeout=5
        )
        assert reply.text


async def test_token_variable_unset_refuses_to_start(upstream: FakeUpstream) -> None:
    settings = make_settings(
        [provider("primary", upstream.url)], server={"auth_token_env": "TEST_UNSET_TOKEN_VAR"}
    )
    with pytest.raises(ValueError, match="TEST_UNSET_TOKEN_VAR"):
        Sidecar(settings)


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_listener(upstream: FakeUpstream, sidecar_factory, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    settings = make_settings(
        [provider("primary", upstream.url)],
        server={"tls_cert_file": str(cert), "tls_key_file": str(key)},
    )
    sidecar = await sidecar_factory(settings)
    creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    async with grpc.aio.secure_channel(f"localhost:{sidecar.port}", creds) as ch:
        reply = await pb_grpc.LLMManagerServiceStub(ch).Ask(
            pb.AskRequest(prompt="over tls"), metadata=[("x-user-id", "alice")], timeout=5
        )
        assert reply.text == "primary says: over tls (turn 1)"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.port}") as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await pb_grpc.LLMManagerServiceStub(ch).Ask(
                pb.AskRequest(prompt="plain"), metadata=[("x-user-id", "alice")], timeout=5
            )
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_admin_service_on_its_own_socket_only(
    upstream: FakeUpstream, sidecar_factory, tmp_path: Path
) -> None:
    admin_socket = tmp_path / "admin.sock"
    settings = make_settings(
        [provider("primary", upstream.url)], server={"admin_address": f"unix:{admin_socket}"}
    )
    sidecar = await sidecar_factory(settings)
    assert sidecar.addresses[-1] == f"unix:{admin_socket}"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.port}") as ch:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await pb_grpc.LLMAdminServiceStub(ch).ListProviders(
                pb.ListProvidersRequest(), timeout=5
            )
        assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED
    async with grpc.aio.insecure_channel(f"unix:{admin_socket}") as ch:
        reply = await pb_grpc.LLMAdminServiceStub(ch).ListProviders(
            pb.ListProvidersRequest(), timeout=5
        )
        assert [p.name for p in reply.providers] == ["primary"]

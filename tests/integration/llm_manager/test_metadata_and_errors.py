"""Hostile metadata and failure statuses: every bad input gets a clear status, never a crash."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from llm_manager.v1 import llm_manager_pb2 as pb
from llm_manager.v1 import llm_manager_pb2_grpc as pb_grpc

from llm_manager_client import (
    AsyncLLMManagerClient,
    DeadlineExceededError,
    InvalidArgumentError,
    UnauthenticatedError,
    UnavailableError,
    UserContext,
)
from llm_sidecar import Sidecar
from tests.support.sidecar import make_settings, provider
from tests.support.upstream import FakeUpstream
from tests.support.waiting import eventually

ID_KEYS = ["x-session-id", "x-thread-id", "x-execution-id", "x-request-id"]
BAD_VALUES = {
    "placeholder None": "None",
    "placeholder null": "null",
    "placeholder undefined": "undefined",
    "too long": "a" * 129,
    "space inside": "a b",
    "glob": "user*",
    "leading dot": "../etc",
    "semicolon": "a;b",
    "percent": "a%00b",
}


async def _raw_call(
    sidecar: Sidecar, metadata: list[tuple[str, str]], prompt: str = "hi"
) -> grpc.aio.AioRpcError:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.port}") as channel:
        stub = pb_grpc.LLMManagerServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Ask(pb.AskRequest(prompt=prompt), metadata=metadata, timeout=5)
        return info.value


def _bad_request_field(error: grpc.aio.AioRpcError) -> str:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    return bad.field_violations[0].field
    return ""


async def test_missing_user_id_is_unauthenticated(sidecar: Sidecar) -> None:
    error = await _raw_call(sidecar, [])
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "x-user-id" in error.details()
    assert _bad_request_field(error) == "x-user-id"


async def test_empty_user_id_is_unauthenticated(sidecar: Sidecar) -> None:
    error = await _raw_call(sidecar, [("x-user-id", "")])
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "x-user-id" in error.details()


@pytest.mark.parametrize("key", ["x-user-id", *ID_KEYS])
@pytest.mark.parametrize("label", list(BAD_VALUES))
async def test_bad_id_values_are_invalid_argument(sidecar: Sidecar, key: str, label: str) -> None:
    metadata = [("x-user-id", "alice")] if key != "x-user-id" else []
    metadata.append((key, BAD_VALUES[label]))
    error = await _raw_call(sidecar, metadata)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, (key, label)
    assert key in error.details()
    assert _bad_request_field(error) == key


@pytest.mark.parametrize("key", ["x-user-id", *ID_KEYS])
async def test_empty_optional_ids_are_rejected(sidecar: Sidecar, key: str) -> None:
    metadata = [("x-user-id", "alice")] if key != "x-user-id" else []
    metadata.append((key, "   "))
    error = await _raw_call(sidecar, metadata)
    expected = (
        grpc.StatusCode.UNAUTHENTICATED if key == "x-user-id" else grpc.StatusCode.INVALID_ARGUMENT
    )
    assert error.code() is expected
    assert key in error.details()


@pytest.mark.parametrize("key", ["x-user-id", "x-session-id"])
async def test_duplicate_keys_are_rejected(sidecar: Sidecar, key: str) -> None:
    metadata = [("x-user-id", "alice"), (key, "one"), (key, "two")]
    if key == "x-user-id":
        metadata = metadata[1:]
    error = await _raw_call(sidecar, metadata)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert key in error.details() and "more than once" in error.details()


@pytest.mark.parametrize(
    "value", ["Admin", "a b", ",".join(f"p{i}" for i in range(40)), "x" * 65, "ok,,bad"]
)
async def test_bad_permissions_are_rejected(sidecar: Sidecar, value: str) -> None:
    error = await _raw_call(sidecar, [("x-user-id", "alice"), ("x-permissions", value)])
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "x-permissions" in error.details()


async def test_good_context_is_accepted(sidecar: Sidecar) -> None:
    ctx = UserContext(
        "tenant:alice@example.com",
        session_id="0b9f-uuid",
        thread_id="t.1",
        execution_id="e_1",
        request_id="r=1",
        permissions={"chat", "tools.read"},
    )
    async with AsyncLLMManagerClient(f"127.0.0.1:{sidecar.port}", ctx) as client:
        result = await client.ask_full("hi")
    assert result.metadata.request_id == "r=1"


async def test_request_validation_names_field_and_limit(
    sidecar_factory, upstream: FakeUpstream
) -> None:
    sidecar = await sidecar_factory(
        make_settings([provider("primary", upstream.url)], server={"max_prompt_chars": 100})
    )
    async with AsyncLLMManagerClient(f"127.0.0.1:{sidecar.port}", UserContext("alice")) as client:
        with pytest.raises(InvalidArgumentError) as info:
            await client.ask("x" * 101)
        assert info.value.field == "prompt" and "100" in info.value.message
        with pytest.raises(InvalidArgumentError) as info:
            await client.ask("   ")
        assert info.value.field == "prompt"
        with pytest.raises(InvalidArgumentError) as info:
            await client.ask("hi", model="no-such-model")
        assert info.value.field == "model"
        with pytest.raises(InvalidArgumentError) as info:
            await client.ask("hi", temperature=7.0)
        assert info.value.field == "params.temperature"
        with pytest.raises(InvalidArgumentError) as info:
            await client.ask("hi", max_tokens=0)
        assert info.value.field == "params.max_tokens"
    assert upstream.chat_requests == []


async def test_oversized_request_message_is_invalid_argument(
    sidecar_factory, upstream: FakeUpstream
) -> None:
    sidecar = await sidecar_factory(
        make_settings([provider("primary", upstream.url)], server={"max_request_bytes": 2048})
    )
    async with AsyncLLMManagerClient(f"127.0.0.1:{sidecar.port}", UserContext("alice")) as client:
        with pytest.raises(InvalidArgumentError) as info:
            await client.ask("hi", system_prompt="s" * 4000)
    assert info.value.field == "request" and "2048" in info.value.message


async def test_provider_failure_is_a_status_without_internals(
    sidecar_factory, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_SECRET_KEY", "sk-test-SECRET-123")
    settings = make_settings([provider("primary", upstream.url, api_key_env="TEST_SECRET_KEY")])
    sidecar = await sidecar_factory(settings)
    upstream.mode = "error"
    async with AsyncLLMManagerClient(f"127.0.0.1:{sidecar.port}", UserContext("alice")) as client:
        with pytest.raises(UnavailableError) as info:
            await client.ask("hi")
    message = str(info.value)
    assert (
        "SECRET" not in message and str(upstream.port) not in message and "127.0.0.1" not in message
    )
    assert info.value.retry_after is not None
    assert upstream.chat_requests[0].headers["Authorization"] == "Bearer sk-test-SECRET-123"


async def test_upstream_400_is_invalid_argument(client_factory, upstream: FakeUpstream) -> None:
    upstream.mode = "bad_request"
    with pytest.raises(InvalidArgumentError) as info:
        await client_factory("alice").ask("hi")
    assert "HTTP 400" in info.value.message


async def test_client_deadline_is_honoured_and_upstream_call_cancelled(
    client_factory, upstream: FakeUpstream
) -> None:
    import time

    upstream.mode = "hang"
    client = client_factory("alice")
    start = time.perf_counter()
    with pytest.raises(DeadlineExceededError):
        await client.ask("hi", timeout=0.5)
    assert time.perf_counter() - start < 2.0
    # The sidecar hung up on the upstream: the hung request was cancelled there.
    await eventually(lambda: upstream.hangs_abandoned, what="the upstream call cancelled")
    assert upstream.hangs_abandoned == 1 and len(upstream.chat_requests) == 1


async def test_unauthenticated_via_client(sidecar: Sidecar) -> None:
    async with AsyncLLMManagerClient(f"127.0.0.1:{sidecar.port}", UserContext("")) as client:
        with pytest.raises(UnauthenticatedError) as info:
            await client.ask("hi")
    assert info.value.field == "x-user-id"

"""Property-based fuzzing of a running sidecar process through the wire.

Hypothesis generates metadata (context keys and others, any bytes, any size up
to 70 KiB, duplicates) and messages (random bytes, or real messages with
random text, numbers and flags) and sends them with a bare HTTP/2 client to
every method of LLMManagerService. Properties:

* every answer is a documented status;
* the process stays up and answers the next valid call;
* no manager exists for a caller who was refused;
* no marker planted in any input appears in the process's logs.

The short profile runs in CI; ``--fuzz-long`` runs many more cases.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llm_manager.v1 import llm_manager_pb2 as pb

from tests.support import raw_grpc
from tests.support.fuzzing import (
    assert_no_marker_in_output,
    fuzzed_sidecar,
    new_marker,
    valid_request_id,
)
from tests.support.sidecar import SidecarProcess

pytestmark = pytest.mark.fuzz

SERVICE = "/llm_manager.v1.LLMManagerService/"
#: Methods that create the caller's manager when they succeed.
CREATING = {"Ask", "AskFull", "AskStream", "Embed"}
METHODS = [*sorted(CREATING), "IsCached", "GetConversation", "EndSession", "GetUsage"]
CONTEXT_KEYS = [
    "x-user-id",
    "x-session-id",
    "x-thread-id",
    "x-execution-id",
    "x-request-id",
    "x-permissions",
]
OTHER_KEYS = ["authorization", "traceparent", "tracestate", "baggage", "x-other", "user-agent"]

# What a hostile input may get back: the statuses the README's table lists for
# the wire edge (OK when the input happens to be valid).
DOCUMENTED = {
    grpc.StatusCode.OK.value[0],
    grpc.StatusCode.INVALID_ARGUMENT.value[0],
    grpc.StatusCode.UNAUTHENTICATED.value[0],
    grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
}
STATUS_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}
# HTTP/2 forbids these bytes in a field value; gRPC core resets such a stream.
FORBIDDEN_IN_HEADERS = (b"\x00", b"\r", b"\n")


@dataclass
class Run:
    """The process under test and what the cases did to it."""

    port: int
    proc: SidecarProcess
    markers: list[str] = field(default_factory=list)
    served_users: set[bytes] = field(default_factory=set)
    cases: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    proc = fuzzed_sidecar(tmp_path_factory.mktemp("fuzz"), env={"GRPC_VERBOSITY": "DEBUG"})
    try:
        yield Run(proc.port, proc)
    finally:
        proc.stop()


# -- strategies -----------------------------------------------------------------------


def values(marker: str) -> st.SearchStrategy[bytes]:
    """Metadata values: valid ids, text of any script with control characters, raw bytes,
    huge values; most carry the marker so a log that quotes one is caught."""
    plain_id = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._@:+=/\-]{0,40}", fullmatch=True)
    marked = st.one_of(
        st.text(max_size=64).map(lambda t: marker + t),
        st.binary(max_size=64).map(lambda b: marker.encode() + b),
        st.integers(1, 70 * 1024).map(lambda n: (marker * (n // len(marker) + 1))[:n]),
        st.sampled_from(["None", "null", "undefined", "nan", " ", ""]).map(lambda s: s + marker),
    )
    return st.one_of(plain_id.map(str.encode), marked.map(_to_bytes))


def _to_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")


@st.composite
def metadata(draw: st.DrawFn, marker: str) -> list[tuple[bytes, bytes]]:
    keys = draw(
        st.lists(st.sampled_from(CONTEXT_KEYS + OTHER_KEYS), max_size=8)  # duplicates allowed
    )
    if draw(st.booleans()):
        keys.insert(0, "x-user-id")
    return [(key.encode(), draw(values(marker))) for key in keys]


def numbers() -> st.SearchStrategy[float]:
    return st.one_of(
        st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -1.0, 2.0, 1e308])
    )


@st.composite
def bodies(draw: st.DrawFn, marker: str, method: str) -> bytes:
    if draw(st.integers(0, 3)) == 0:
        return draw(st.binary(max_size=512))  # whatever bytes
    text = st.text(max_size=200).map(lambda t: marker + t)
    if method in ("GetConversation",):
        return pb.GetConversationRequest(
            session_id=draw(text), thread_id=draw(text)
        ).SerializeToString()
    if method in ("EndSession", "GetUsage"):
        message = pb.EndSessionRequest if method == "EndSession" else pb.GetUsageRequest
        return message(session_id=draw(st.one_of(st.just(""), text))).SerializeToString()
    if method == "Embed":
        embed = pb.EmbedRequest(
            model=draw(st.one_of(st.just(""), st.just("simulated-embedding"), text)),
            inputs=draw(st.lists(st.one_of(text, st.just("")), max_size=8)),
            skip_cache=draw(st.booleans()),
        )
        if draw(st.booleans()):
            embed.dimensions = draw(st.integers(-(2**31), 2**31 - 1))
        return embed.SerializeToString()
    params = pb.GenerationParams(stop=draw(st.lists(text, max_size=10)))
    if draw(st.booleans()):
        params.temperature = draw(numbers())
    if draw(st.booleans()):
        params.top_p = draw(numbers())
    if draw(st.booleans()):
        params.max_tokens = draw(st.integers(-(2**31), 2**31 - 1))
    if draw(st.booleans()):
        params.seed = draw(st.integers(-(2**63), 2**63 - 1))
    request = pb.AskRequest(
        prompt=draw(text),
        model=draw(st.one_of(st.just(""), st.just("simulated"), text)),
        params=params,
        system_prompt=draw(st.one_of(st.just(""), text)),
        skip_history=draw(st.booleans()),
        skip_cache=draw(st.booleans()),
    )
    raw = request.SerializeToString()
    if draw(st.booleans()):  # unknown fields and enum-like numbers on top
        raw += pb.GetUsageRequest(session_id=marker).SerializeToString().replace(b"\x0a", b"\x7a")
    return raw


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, str, bytes, list[tuple[bytes, bytes]]]:
    marker = new_marker()
    method = draw(st.sampled_from(METHODS))
    return marker, method, draw(bodies(marker, method)), draw(metadata(marker))


# -- the property ----------------------------------------------------------------------


def _examples(config: pytest.Config) -> int:
    return 4000 if config.getoption("--fuzz-long") else 150


@pytest.fixture
def examples(request: pytest.FixtureRequest) -> int:
    return _examples(request.config)


@pytest.mark.timeout(3600)  # the long profile (--fuzz-long) runs thousands of cases
def test_every_hostile_input_gets_a_documented_status(run: Run, examples: int) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        derandomize=False,
    )
    @given(cases())
    def case(drawn: tuple[str, str, bytes, list[tuple[bytes, bytes]]]) -> None:
        marker, method, body, md = drawn
        # A valid x-request-id is the caller's own correlation id: the access log records
        # it by design. A case sending one may show its marker there, and is not checked.
        if not any(key == b"x-request-id" and valid_request_id(value) for key, value in md):
            run.markers.append(marker)
        run.cases += 1
        reply = raw_grpc.call(("127.0.0.1", run.port), SERVICE + method, body, md, timeout=20)
        label = "reset" if reply.status is None else STATUS_NAMES[reply.status]
        run.by_status[label] = run.by_status.get(label, 0) + 1
        forbidden = any(b in value for _, value in md for b in FORBIDDEN_IN_HEADERS)
        if reply.status is None:
            assert forbidden, f"stream reset without a forbidden header byte ({method})"
        else:
            assert reply.status in DOCUMENTED, (method, reply.status, reply.message)
            assert marker not in reply.message
        users = [value for key, value in md if key == b"x-user-id"]
        if reply.status == 0 and method in CREATING:
            run.served_users.add(users[0])
        # Still up, and answering.
        alive = raw_grpc.call(
            ("127.0.0.1", run.port),
            SERVICE + "Ask",
            pb.AskRequest(prompt="alive?", skip_cache=True).SerializeToString(),
            [(b"x-user-id", b"fuzz-liveness")],
        )
        assert alive.status == 0, alive

    case()
    # No manager for anyone refused: exactly the served users, plus the liveness caller.
    status = raw_grpc.call(
        ("127.0.0.1", run.port),
        "/llm_manager.v1.LLMAdminService/GetResourceStatus",
        pb.GetResourceStatusRequest().SerializeToString(),
        [],
    )
    figures = pb.GetResourceStatusResponse.FromString(status.body[5:])
    assert figures.managers == len(run.served_users) + 1
    print(f"\nfuzz: {run.cases} cases, answers by status: {dict(sorted(run.by_status.items()))}")


def test_no_marker_reached_the_logs(run: Run) -> None:
    """Runs after the property: stop the process and read everything it wrote."""
    assert_no_marker_in_output(run.proc, run.markers, run.cases)

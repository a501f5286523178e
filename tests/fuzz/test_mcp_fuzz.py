"""Property-based fuzzing of the MCP gateway (``/mcp``) of a running sidecar.

Hypothesis starts from valid JSON-RPC messages (initialize, tools/list, tools/call of
the built-in demo server), then deletes or replaces their fields with JSON of any type
and size, or sends bytes that are not JSON; strings carry a marker. Properties:

* every answer is one of the documented statuses, and a JSON body is JSON-RPC (an
  ``error`` with a code and a message, or a ``result``);
* no marker reaches the process's output (the SDK's records are withheld);
* the process stays up, and a valid tool call still answers.
"""

from __future__ import annotations

import copy
import http.client
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.test_http_fuzz import json_values
from tests.support.fuzzing import (
    assert_no_marker_in_output,
    fuzzed_sidecar,
    http_port,
    new_marker,
)
from tests.support.mcp_servers import INITIALIZE
from tests.support.sidecar import SidecarProcess

pytestmark = pytest.mark.fuzz

VALID = [
    INITIALIZE,
    {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}},
    {
        "jsonrpc": "2.0",
        "id": 3,
        "method": "tools/call",
        "params": {"name": "demo__echo", "arguments": {"text": "hello"}},
    },
    {"jsonrpc": "2.0", "method": "notifications/initialized"},
]
#: What /mcp answers: OK, accepted (a notification), a malformed message, a session
#: that is not the caller's, a method or media type it does not take, a body too large.
DOCUMENTED = {200, 202, 400, 404, 405, 406, 413, 415}
ACCEPT = ("accept", "application/json, text/event-stream")


@dataclass
class Run:
    http_port: int
    proc: SidecarProcess
    session: str = ""
    markers: list[str] = field(default_factory=list)
    by_status: dict[int, int] = field(default_factory=dict)


def _post(port: int, body: bytes, headers: list[tuple[str, str]]) -> tuple[int, str, bytes, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.putrequest("POST", "/mcp")
        for name, value in [("content-type", "application/json"), ("x-user-id", "fuzz"), *headers]:
            connection.putheader(name, value)
        connection.putheader("content-length", str(len(body)))
        connection.endheaders(body)
        reply = connection.getresponse()
        session = reply.getheader("mcp-session-id") or ""
        return reply.status, reply.getheader("content-type") or "", reply.read(), session
    finally:
        connection.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    proc = fuzzed_sidecar(tmp_path_factory.mktemp("mcp-fuzz"))
    try:
        yield Run(http_port(proc), proc)
    finally:
        proc.stop()


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, bytes, bool]:
    marker = new_marker()
    body: Any = copy.deepcopy(draw(st.sampled_from(VALID)))
    if draw(st.integers(0, 9)) == 0:
        return marker, marker.encode() + draw(st.binary(max_size=256)), draw(st.booleans())
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted(body)))
        target = body
        if isinstance(body.get("params"), dict) and body["params"] and draw(st.booleans()):
            target, key = body["params"], draw(st.sampled_from(sorted(body["params"])))
        if draw(st.integers(0, 3)) == 0:
            del target[key]
        else:
            target[key] = draw(json_values(marker))
        if not body:
            break
    return marker, json.dumps(body).encode(), draw(st.booleans())


def _check(status: int, content_type: str, raw: bytes) -> None:
    assert status in DOCUMENTED, (status, raw[:300])
    if raw and content_type.startswith("application/json"):
        document = json.loads(raw)
        assert document.get("jsonrpc") == "2.0", raw[:300]
        if "error" in document:
            assert isinstance(document["error"]["code"], int)
            assert isinstance(document["error"]["message"], str)
        else:
            assert "result" in document, raw[:300]


def test_every_hostile_message_gets_a_documented_answer(run: Run) -> None:
    status, _, _, run.session = _post(run.http_port, json.dumps(INITIALIZE).encode(), [ACCEPT])
    assert status == 200 and run.session
    session = [ACCEPT, ("mcp-session-id", run.session), ("mcp-protocol-version", "2025-11-25")]

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(cases())
    def case(drawn: tuple[str, bytes, bool]) -> None:
        marker, body, in_session = drawn
        run.markers.append(marker)
        status, content_type, raw, _ = _post(
            run.http_port, body, session if in_session else [ACCEPT]
        )
        run.by_status[status] = run.by_status.get(status, 0) + 1
        _check(status, content_type, raw)

    case()
    call = json.dumps(VALID[2]).encode()
    status, _, raw, _ = _post(run.http_port, call, session)
    assert status == 200 and json.loads(raw)["result"]["content"][0]["text"] == "hello"
    assert run.by_status.get(400, 0) > 0
    print(f"\nmcp fuzz: answers by status: {dict(sorted(run.by_status.items()))}")


def test_no_marker_reached_the_logs(run: Run) -> None:
    """Runs after the property: stop the process and read everything it wrote."""
    assert_no_marker_in_output(run.proc, run.markers, sum(run.by_status.values()))

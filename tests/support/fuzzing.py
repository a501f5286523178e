"""What the wire fuzz suites share: a sidecar process that logs everything, markers
planted in inputs, and the check that none of them reached its output."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

from llm_sidecar.core.vocabulary.context import validate_id
from llm_sidecar.core.vocabulary.errors import InvalidContextError
from tests.support.sidecar import SidecarProcess


def fuzzed_sidecar(
    directory: Path, env: dict[str, str] | None = None, **config: Any
) -> SidecarProcess:
    """A ready sidecar process logging at DEBUG in JSON, with no per-user concurrency
    limit and no background probes; ``config`` sections merged on top."""
    path = directory / "sidecar.json"
    path.write_text(
        json.dumps(
            {
                "telemetry": {"log_level": "DEBUG", "log_format": "json"},
                "resources": {"sample_interval_seconds": 0},
                "failover": {"health_interval_seconds": 0},
                "limits": {"max_concurrent_per_user": 0},
                # A port of its own: 50080 may still be held by another test's sidecar.
                "http": {"port": 0},
                **config,
            }
        )
    )
    proc = SidecarProcess(path, env=env, output=directory / "sidecar.log")
    asyncio.run(proc.wait_ready())
    return proc


def new_marker() -> str:
    """A string no log line holds unless an input was quoted."""
    return f"Fz{uuid.uuid4().hex[:10]}"


def valid_request_id(value: bytes) -> bool:
    """Whether the sidecar takes ``value`` as the caller's own ``x-request-id`` (which
    the access log records by design), read as a server reads a header: without the
    spaces and tabs around it."""
    try:
        text = value.strip(b" \t").decode("utf-8")
        return validate_id("x-request-id", text, required=True) is not None
    except (UnicodeDecodeError, InvalidContextError):
        return False


def assert_no_marker_in_output(proc: SidecarProcess, markers: list[str], cases: int) -> None:
    """Stop the process, then read everything it wrote."""
    assert cases > 0, "the property test did not run first"
    proc.stop()
    output = proc.output()
    assert b"sidecar stopped" in output
    leaked = [m for m in markers if m.encode() in output]
    assert leaked == [], f"{len(leaked)} markers in the logs, e.g. {leaked[:3]}"


def http_port(proc: SidecarProcess) -> int:
    """The port of a ready child sidecar's HTTP listener, from its "listening on" line."""
    return int(proc.http_url.rsplit(":", 1)[1])

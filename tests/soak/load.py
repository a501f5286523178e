"""The soak's users: each calls one at a time, in order, through any live sidecar."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc
from llm_manager.v1 import llm_manager_pb2 as pb
from llm_manager.v1 import llm_manager_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from tests.soak.cluster import Fleet

METHODS = ("Ask", "AskFull", "AskStream")


@dataclass
class Call:
    """One call a user made: its number, where it went, how it ended."""

    number: int
    port: int
    method: str
    status: str = "PENDING"
    details: str = ""


@dataclass
class User:
    name: str
    calls: list[Call] = field(default_factory=list)

    def prompt(self, number: int) -> str:
        return f"[{self.name} call {number}] question {number} of the soak"


def _reason(details: str) -> str:
    for words, reason in (
        ("store", "store down"),
        ("no provider", "providers down"),
        ("deadline", "deadline"),
        ("quota", "quota"),
    ):
        if words in details:
            return reason
    return details[:40] or "no details"


class Load:
    """``users`` users making ``rate`` calls a second between them."""

    def __init__(self, fleet: Fleet, *, users: int, rate: float) -> None:
        self.fleet = fleet
        self.users = [User(f"user-{i}") for i in range(users)]
        self.rate = rate
        self.statuses: Counter[str] = Counter()
        #: Why calls failed, by the kind of message.
        self.reasons: Counter[str] = Counter()
        self._in_flight: dict[int, set[int]] = {}
        self._channels: dict[int, grpc.aio.Channel] = {}
        #: Calls in flight on a sidecar when it got SIGTERM: how each ended.
        self.at_sigterm: Counter[str] = Counter()
        self._watch_stop: set[int] = set()

    def in_flight_on(self, port: int) -> int:
        """Calls in flight on ``port`` now; remembered, so their endings are checked."""
        calls = self._in_flight.get(port, set())
        self._watch_stop |= calls
        return len(calls)

    def _stub(self, port: int) -> pb_grpc.LLMManagerServiceStub:
        channel = self._channels.get(port)
        if channel is None:
            channel = self._channels[port] = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        return pb_grpc.LLMManagerServiceStub(channel)

    async def run(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        period = len(self.users) / self.rate  # each user's mean time between calls
        await asyncio.gather(*(self._user(user, until, period) for user in self.users))
        for channel in self._channels.values():
            await channel.close()

    async def _user(self, user: User, until: float, period: float) -> None:
        await asyncio.sleep(random.uniform(0, period))
        while time.monotonic() < until:
            ports = self.fleet.live_ports()
            if ports:
                await self._call(user, random.choice(ports))
            await asyncio.sleep(random.expovariate(1 / period))

    async def _call(self, user: User, port: int) -> None:
        call = Call(len(user.calls) + 1, port, random.choice(METHODS))
        user.calls.append(call)
        key = id(call)
        self._in_flight.setdefault(port, set()).add(key)
        metadata = (("x-user-id", user.name), ("x-session-id", "s"))
        request = pb.AskRequest(prompt=user.prompt(call.number))
        stub = self._stub(port)
        try:
            if call.method == "AskStream":
                async for _ in stub.AskStream(request, metadata=metadata, timeout=8):
                    pass
            else:
                await getattr(stub, call.method)(request, metadata=metadata, timeout=8)
            call.status = "OK"
        except grpc.aio.AioRpcError as error:
            call.status = error.code().name
            call.details = error.details() or ""
        finally:
            self._in_flight[port].discard(key)
        self.statuses[call.status] += 1
        if call.status != "OK":
            self.reasons[_reason(call.details)] += 1
        if key in self._watch_stop:
            self._watch_stop.discard(key)
            self.at_sigterm[call.status] += 1

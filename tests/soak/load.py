"""The soak's users: each calls one at a time, in order, through any live sidecar."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
import grpc
import orjson
from llm_manager.v1 import llm_manager_pb2 as pb
from llm_manager.v1 import llm_manager_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from tests.soak.cluster import Fleet

#: What a user's call may be: gRPC chat, the same turns over OpenAI's HTTP API (both
#: into the session "s", whose history the books check), embeddings by both, and a
#: Responses chain of the user's own (continued by previous_response_id).
CHAT_METHODS = ("Ask", "AskFull", "AskStream", "HTTP chat", "HTTP chat stream")
METHODS = (*CHAT_METHODS, "Embed", "HTTP embeddings", "Responses")
_TURN = re.compile(r"answers turn (\d+) of")


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
    #: The last response of the user's Responses chain that came back, and its length.
    last_response: str | None = None
    chain: int = 0
    #: Links the upstream did not see whole, or stored responses that went missing.
    chain_wrong: list[str] = field(default_factory=list)

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
        self._http: aiohttp.ClientSession

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
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=8)) as self._http:
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
        try:
            if call.method.startswith("HTTP") or call.method == "Responses":
                await self._http_call(user, call)
            else:
                await self._grpc_call(user, call)
        except grpc.aio.AioRpcError as error:
            call.status = error.code().name
            call.details = error.details() or ""
        except (aiohttp.ClientError, TimeoutError) as error:
            call.status, call.details = "HTTP no answer", type(error).__name__
        finally:
            self._in_flight[port].discard(key)
        self.statuses[call.status] += 1
        if call.status != "OK":
            self.reasons[_reason(call.details)] += 1
        if key in self._watch_stop:
            self._watch_stop.discard(key)
            self.at_sigterm[call.status] += 1

    async def _grpc_call(self, user: User, call: Call) -> None:
        metadata = (("x-user-id", user.name), ("x-session-id", "s"))
        stub = self._stub(call.port)
        if call.method == "Embed":
            texts = [user.prompt(call.number), f"{user.prompt(call.number)} again"]
            await stub.Embed(pb.EmbedRequest(inputs=texts), metadata=metadata, timeout=8)
        elif call.method == "AskStream":
            request = pb.AskRequest(prompt=user.prompt(call.number))
            async for _ in stub.AskStream(request, metadata=metadata, timeout=8):
                pass
        else:
            request = pb.AskRequest(prompt=user.prompt(call.number))
            await getattr(stub, call.method)(request, metadata=metadata, timeout=8)
        call.status = "OK"

    async def _http_call(self, user: User, call: Call) -> None:
        prompt = user.prompt(call.number)
        headers = {"x-user-id": user.name}
        if call.method == "Responses":
            path = "/v1/responses"
            body: dict[str, object] = {"model": "m", "input": prompt}
            if user.last_response is not None:
                body["previous_response_id"] = user.last_response
        elif call.method == "HTTP embeddings":
            path, body = "/v1/embeddings", {"model": "e", "input": [prompt]}
        else:
            path, headers["x-session-id"] = "/v1/chat/completions", "s"
            body = {"model": "m", "messages": [{"role": "user", "content": prompt}]}
            body["stream"] = call.method.endswith("stream")
        url = f"http://127.0.0.1:{self.fleet.http_port(call.port)}{path}"
        async with self._http.post(url, json=body, headers=headers) as reply:
            raw = await reply.read()
        if reply.status != 200:
            call.status = f"HTTP {reply.status}"
            call.details = _message(raw)
            if reply.status == 404 and call.method == "Responses":
                user.chain_wrong.append(f"call {call.number}: the previous response is gone")
                user.last_response, user.chain = None, 0
        elif b'data: {"error"' in raw:
            call.status, call.details = "HTTP stream error", raw.decode()[-200:]
        else:
            call.status = "OK"
            if call.method == "Responses":
                _link(user, call, orjson.loads(raw))


def _message(raw: bytes) -> str:
    """An HTTP error's message (the APIs' JSON shape, or the HTTP layer's plain text)."""
    try:
        return str(orjson.loads(raw)["error"]["message"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return raw.decode(errors="replace")[:200]


def _link(user: User, call: Call, response: dict[str, Any]) -> None:
    """A Responses answer continues the chain: the upstream saw every turn before it
    (its answer says how many), 2 per earlier link and this input."""
    text = response["output"][0]["content"][0]["text"]
    found = _TURN.search(text)
    seen = int(found.group(1)) if found else -1
    if seen != 2 * user.chain + 1:
        user.chain_wrong.append(
            f"call {call.number}: upstream saw {seen} turns, not {2 * user.chain + 1}"
        )
    user.last_response, user.chain = response["id"], user.chain + 1

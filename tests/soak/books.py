"""The soak's books: every user's usage, quota window and history against what happened."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

import grpc
from llm_manager.v1 import llm_manager_pb2 as pb
from llm_manager.v1 import llm_manager_pb2_grpc as pb_grpc

from tests.soak.cluster import PRICES
from tests.soak.load import CHAT_METHODS

if TYPE_CHECKING:
    from tests.soak.cluster import Fleet
    from tests.soak.load import Load, User

_CALL = re.compile(r"\[user-\d+ call (\d+)\]")


def answer_cost(upstream: str, prompt: int, completion: int) -> int:
    """One answer's cost in micro-USD, as the sidecar prices it (rounded half up once)."""
    price = PRICES[upstream]
    exact = prompt * Decimal(price["input"]) + completion * Decimal(price["output"])
    return int(exact.to_integral_value(ROUND_HALF_UP))


@dataclass
class Books:
    users: int = 0
    usage_exact: int = 0
    #: Users whose usage differs from the upstreams' bills only by replies lost with a
    #: failed call (the provider billed an answer the caller never got).
    usage_lost_replies: int = 0
    usage_wrong: list[str] = field(default_factory=list)
    quota_wrong: list[str] = field(default_factory=list)
    history_wrong: list[str] = field(default_factory=list)
    chains_wrong: list[str] = field(default_factory=list)
    billed_answers: int = 0
    billed_micro_usd: int = 0

    @property
    def ok(self) -> bool:
        return not (self.usage_wrong or self.quota_wrong or self.history_wrong or self.chains_wrong)

    def print(self, fleet: Fleet, load: Load, seconds: float) -> None:
        calls = sum(load.statuses.values())
        statuses = ", ".join(f"{k} {v:,}" for k, v in load.statuses.most_common())
        answers, usd = self.billed_answers, self.billed_micro_usd
        history_ok = self.users - len(self.history_wrong)
        rows = [
            ("run", f"{seconds:.0f} s, {len(fleet.ports)} sidecars, {self.users} users"),
            ("calls", f"{calls:,} ({statuses})"),
            ("  failures by cause", str(dict(load.reasons.most_common()))),
            ("redis kill -9 / restart", str(fleet.redis_kills)),
            ("rolling SIGTERMs", str(len(fleet.stops))),
            ("  exit codes", str(sorted({s.code for s in fleet.stops}))),
            ("  longest drain", f"{max((s.seconds for s in fleet.stops), default=0):.2f} s"),
            ("  calls in flight at SIGTERM", str(dict(load.at_sigterm))),
            ("provider faults served", str({u.name: dict(u.faults) for u in fleet.upstreams})),
            ("answers billed upstream", f"{answers:,} ({usd:,} micro-USD)"),
            ("usage = upstream bill, exactly", f"{self.usage_exact} of {self.users} users"),
            ("  off by lost replies only", str(self.usage_lost_replies)),
            ("  wrong", str(self.usage_wrong[:10])),
            ("quota window = bill", f"{self.users - len(self.quota_wrong)} of {self.users}"),
            ("history whole, in order, once", f"{history_ok} of {self.users}"),
            ("calls by kind", str(dict(Counter(c.method for u in load.users for c in u.calls)))),
            ("Responses chains whole", f"{self.users - len(self.chains_wrong)} of {self.users}"),
            ("  longest chain", str(max((u.chain for u in load.users), default=0))),
            ("verdict", "PASS" if self.ok else "FAIL"),
        ]
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            print(f"{name:<{width}}  {value}")
        for wrong in self.quota_wrong[:10] + self.history_wrong[:10] + self.chains_wrong[:10]:
            print(f"  {wrong}")


async def check_books(fleet: Fleet, load: Load) -> Books:
    books = Books(users=len(load.users))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{fleet.ports[0]}") as channel:
        stub = pb_grpc.LLMManagerServiceStub(channel)
        for user in load.users:
            metadata = (("x-user-id", user.name), ("x-session-id", "s"))
            usage = await stub.GetUsage(pb.GetUsageRequest(), metadata=metadata, timeout=10)
            history = await stub.GetConversation(
                pb.GetConversationRequest(), metadata=metadata, timeout=10
            )
            _usage(books, fleet, user, usage)
            _history(books, user, history)
            books.chains_wrong += [f"{user.name}: {wrong}" for wrong in user.chain_wrong]
    return books


def _usage(books: Books, fleet: Fleet, user: User, report: pb.GetUsageResponse) -> None:
    answers = prompt = completion = cost = 0
    for up in fleet.upstreams:
        bill = up.bills.get(user.name)
        if bill is None:
            continue
        answers += bill.answers
        prompt += bill.prompt_tokens
        completion += bill.completion_tokens
        cost += sum(answer_cost(up.name, p, c) for p, c in bill.each)
    books.billed_answers += answers
    books.billed_micro_usd += cost
    total = report.total
    counted = (
        total.requests + total.refused_answers,
        total.prompt_tokens + total.refused_prompt_tokens,
        total.completion_tokens + total.refused_completion_tokens,
        total.cost_micro_usd + total.refused_cost_micro_usd,
    )
    if counted == (answers, prompt, completion, cost):
        books.usage_exact += 1
    else:
        failed = sum(1 for call in user.calls if call.status != "OK")
        if 0 < answers - counted[0] <= failed and counted[3] < cost:
            books.usage_lost_replies += 1
        else:
            books.usage_wrong.append(
                f"{user.name}: counted {counted}, billed {(answers, prompt, completion, cost)}"
            )
    spend = total.cost_micro_usd + total.refused_cost_micro_usd
    usd = [q for q in report.quotas if q.name == "usd_per_day"]
    if not usd or usd[0].used != spend or usd[0].reserved != 0:
        books.quota_wrong.append(
            f"{user.name}: window {[(q.name, q.used, q.reserved) for q in usd]}, bill {spend}"
        )


def _history(books: Books, user: User, history: pb.GetConversationResponse) -> None:
    numbers = [
        int(found.group(1))
        for message in history.messages
        if message.role == "user" and (found := _CALL.search(message.content))
    ]
    answered = [
        call.number for call in user.calls if call.status == "OK" and call.method in CHAT_METHODS
    ]
    in_order = all(a < b for a, b in itertools.pairwise(numbers))
    missing = sorted(set(answered) - set(numbers))
    if not in_order or missing:
        books.history_wrong.append(
            f"{user.name}: in order {in_order}, answered turns missing {missing[:5]}"
        )

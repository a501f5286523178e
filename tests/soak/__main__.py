"""The soak: several sidecars on one Redis (required durability, quotas on) under chaos.

    python -m tests.soak --minutes 3

For the run's length: users call through any live sidecar, by gRPC (Ask, AskFull,
AskStream, Embed) or HTTP (Chat Completions, embeddings, a Responses chain of their own);
Redis is killed with -9 and restarted; both providers fail in every way (500, 503,
429 with Retry-After, hang, reset, slow), at times together; one sidecar at a time
gets SIGTERM and is started again. Then the books are checked, user by user:

* usage (answers, tokens and cost, refused spend included) equals what the
  upstreams billed, except answers whose reply was lost (the call failed client-side);
* every quota window equals the bill, exactly;
* every history holds each answered turn once, in order;
* every Responses chain is whole (no stored response lost, every link seen upstream).

It prints the figures and exits non-zero if any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from tests.soak.books import Books, check_books
from tests.soak.cluster import Fleet
from tests.soak.load import Load


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=3.0, help="length of the chaos")
    parser.add_argument("--sidecars", type=int, default=3)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--rate", type=float, default=100.0, help="calls per second, all users")
    parser.add_argument("--redis-every", type=float, default=40.0, help="seconds between kills")
    parser.add_argument("--sigterm-every", type=float, default=50.0, help="seconds between them")
    parser.add_argument("--faults-every", type=float, default=4.0, help="seconds between faults")
    return parser.parse_args(argv)


async def soak(args: argparse.Namespace) -> int:
    fleet = await Fleet.start(args.sidecars)
    load = Load(fleet, users=args.users, rate=args.rate)
    started = time.monotonic()
    try:
        chaos = [
            asyncio.ensure_future(fleet.kill_redis_every(args.redis_every)),
            asyncio.ensure_future(fleet.sigterm_every(args.sigterm_every, load)),
            asyncio.ensure_future(fleet.faults_every(args.faults_every)),
        ]
        await load.run(args.minutes * 60)
        for task in chaos:
            task.cancel()
        await asyncio.gather(*chaos, return_exceptions=True)
        await fleet.calm()
        books: Books = await check_books(fleet, load)
    finally:
        await fleet.stop()
    books.print(fleet, load, time.monotonic() - started)
    return 0 if books.ok else 1


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(soak(parse(argv)))


if __name__ == "__main__":
    sys.exit(main())

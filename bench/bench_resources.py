"""Issue 5: memory per manager and per cache entry, RSS after 10k users, shutdown time."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import grpc
from llm_manager.v1 import llm_manager_pb2 as pb
from llm_manager.v1 import llm_manager_pb2_grpc as pb_grpc

from bench.harness import ROOT, free_port, sidecar_config, table, upstream, wait_port

USERS = 10_000
MB = 1024 * 1024


async def _drive(port: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.LLMManagerServiceStub(channel)
        admin = pb_grpc.LLMAdminServiceStub(channel)

        async def rss() -> int:
            await asyncio.sleep(0.2)
            return int((await admin.GetResourceStatus(pb.GetResourceStatusRequest())).rss_bytes)

        async def each(count: int, fn) -> None:
            sem = asyncio.Semaphore(64)

            async def one(i: int) -> None:
                async with sem:
                    await fn(i)

            await asyncio.gather(*(one(i) for i in range(count)))

        def md(user: str) -> tuple[tuple[str, str], ...]:
            return (("x-user-id", user),)

        # Warm up the process (pools, code paths) so the first figures are fair.
        await each(500, lambda i: stub.Ask(pb.AskRequest(prompt=f"w{i}"), metadata=md(f"warm-{i}")))
        await each(
            500, lambda i: stub.ReleaseManager(pb.ReleaseManagerRequest(), metadata=md(f"warm-{i}"))
        )
        base = await rss()
        # Idle managers: one uncached request each.
        await each(
            USERS,
            lambda i: stub.Ask(
                pb.AskRequest(prompt="hi", skip_cache=True), metadata=md(f"idle-{i}")
            ),
        )
        figures["per_manager"] = (await rss() - base) / USERS
        await each(
            USERS,
            lambda i: stub.ReleaseManager(pb.ReleaseManagerRequest(), metadata=md(f"idle-{i}")),
        )
        # Cache entries: 100 users x 100 distinct prompts (for the accounted size).
        await each(
            USERS,
            lambda i: stub.Ask(
                pb.AskRequest(prompt=f"p{i % 100}"), metadata=md(f"cache-{i // 100}")
            ),
        )
        status = await admin.GetResourceStatus(pb.GetResourceStatusRequest())
        figures["accounted_per_entry"] = status.cache_bytes / max(status.cache_entries, 1)
        await each(
            100,
            lambda i: stub.ReleaseManager(pb.ReleaseManagerRequest(), metadata=md(f"cache-{i}")),
        )
        # 10k users, one request each, then released.
        pre = await rss()
        await each(
            USERS, lambda i: stub.Ask(pb.AskRequest(prompt=f"q{i}"), metadata=md(f"churn-{i}"))
        )
        loaded = await rss()
        await each(
            USERS,
            lambda i: stub.ReleaseManager(pb.ReleaseManagerRequest(), metadata=md(f"churn-{i}")),
        )
        figures["pre"], figures["loaded"], figures["released"] = pre, loaded, await rss()
        # Leave 10k managers live for the shutdown measurement.
        await each(
            USERS, lambda i: stub.Ask(pb.AskRequest(prompt=f"z{i}"), metadata=md(f"live-{i}"))
        )
        figures["live_managers"] = (
            await admin.GetResourceStatus(pb.GetResourceStatusRequest())
        ).managers
    return figures


def _tracemalloc_figures() -> tuple[float, float]:
    """Exact Python-heap cost of one idle manager and of one cache entry beyond its text."""
    import gc
    import tracemalloc

    from llm_sidecar.core.routing.chain import ProviderSlot
    from llm_sidecar.core.routing.router import Router
    from llm_sidecar.core.state.cache import CacheBudget
    from llm_sidecar.core.state.conversation import HistoryBounds
    from llm_sidecar.core.state.store import MemoryStateStore
    from llm_sidecar.core.turn.registry import LLMManagerFactory, ManagerRegistry
    from llm_sidecar.core.vocabulary.context import UserExecutionContext
    from llm_sidecar.core.vocabulary.models import CachedAnswer, Completion, Usage
    from llm_sidecar.providers.simulated import SimulatedProvider

    router = Router({"m": [ProviderSlot(SimulatedProvider(name="sim"), "m")]}, default_model="m")
    budget = CacheBudget(1 << 40)
    factory = LLMManagerFactory(
        router=router,
        budget=budget,
        state=MemoryStateStore(HistoryBounds()),
    )
    registry = ManagerRegistry(factory.create_llm_manager, max_managers=USERS * 2)
    contexts = [UserExecutionContext(user_id=f"user-{i:05d}") for i in range(USERS)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for ctx in contexts:
        registry.get_or_create(ctx)
    gc.collect()
    per_manager = (
        sum(d.size_diff for d in tracemalloc.take_snapshot().compare_to(before, "filename")) / USERS
    )
    cache = registry.get("user-00000").cache  # type: ignore[union-attr]
    cache.max_entries, cache.max_bytes = USERS * 2, 1 << 40
    texts = [f"answer {i:05d} " + "x" * 88 for i in range(USERS)]  # 100 characters each
    keys = [f"{i:064x}" for i in range(USERS)]
    gc.collect()
    before = tracemalloc.take_snapshot()
    for key, text in zip(keys, texts, strict=True):
        cache.put(key, CachedAnswer(Completion(text, "id", "m", "stop", Usage(1, 2, 3)), "sim", ""))
    gc.collect()
    per_entry = (
        sum(d.size_diff for d in tracemalloc.take_snapshot().compare_to(before, "filename")) / USERS
    )
    tracemalloc.stop()
    return per_manager, per_entry


def run(duration: float = 5.0) -> str:
    del duration
    with upstream() as up_port:
        provider = {
            "name": "up",
            "base_url": f"http://127.0.0.1:{up_port}/v1",
            "no_api_key": True,
            "model": "bench-model",
            "probe": "none",
        }
        config = sidecar_config(
            [provider],
            managers={"max_managers": 20_000},
            resources={"sample_interval_seconds": 0},
            telemetry={"log_level": "INFO"},
        )
        port = free_port()
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(config, f)
        # The log to a file, never a pipe read only at the end: one access-log line
        # per call would fill the pipe and block the sidecar's writes.
        log = tempfile.TemporaryFile()  # noqa: SIM115  # closed below
        proc = subprocess.Popen(
            [sys.executable, "-m", "llm_sidecar", "--config", f.name, "--port", str(port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            wait_port(port)
            figures = asyncio.run(_drive(port))
            start = time.perf_counter()
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            shutdown = time.perf_counter() - start
            log.seek(0)
            logs = log.read().decode()
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
            os.unlink(f.name)
    inner = next(
        (json.loads(line)["seconds"] for line in logs.splitlines() if '"sidecar stopped"' in line),
        None,
    )
    per_manager, per_entry = _tracemalloc_figures()
    rows = [
        [
            "memory per idle user manager (tracemalloc)",
            f"{per_manager / 1024:.2f} KiB",
            f"RSS view via 10k users: {figures['per_manager'] / 1024:.2f} KiB (incl. usage row)",
        ],
        [
            "memory per cached entry, beyond the key and text (tracemalloc)",
            f"{per_entry - 100 - 49 - 113:.0f} B",
            f"whole entry {per_entry:.0f} B; "
            f"the budget accounts {figures['accounted_per_entry']:.0f} B",
        ],
        [f"RSS before {USERS:,} users", f"{figures['pre'] / MB:.1f} MiB", ""],
        [f"RSS with {USERS:,} users live", f"{figures['loaded'] / MB:.1f} MiB", ""],
        [
            "RSS after releasing them",
            f"{figures['released'] / MB:.1f} MiB",
            f"{(figures['released'] - figures['pre']) / MB:+.1f} MiB vs before (target within 20)",
        ],
        [
            f"shutdown, {int(figures['live_managers']):,} managers live (SIGTERM to exit)",
            f"{shutdown:.3f} s",
            f"sidecar.stop(): {inner} s (target < 1 s)",
        ],
    ]
    return table("Resource figures", ["figure", "value", "note"], rows)

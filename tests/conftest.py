"""Shared fixtures: real upstreams on loopback, real sidecars, real clients."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import os
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from llm_manager_client import AsyncLLMManagerClient, UserContext
from llm_sidecar import Sidecar
from llm_sidecar.config import Settings
from tests.support.redis_cluster import RedisCluster
from tests.support.redis_server import shared_redis_url
from tests.support.sidecar import make_settings, provider, start_sidecar
from tests.support.upstream import FakeUpstream

# Memory profiling (--memory-profile): RSS growth per test, with a failing limit.
_MEMORY_LIMIT_MB = 75.0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--memory-profile", action="store_true", help="report RSS growth per test")
    parser.addoption(
        "--fuzz-long", action="store_true", help="run the wire fuzz suite's long profile"
    )


def _rss_mb() -> float:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    if not item.config.getoption("--memory-profile"):
        return (yield)
    gc.collect()
    before = _rss_mb()
    result = yield
    gc.collect()
    growth = _rss_mb() - before
    item.config.stash.setdefault(_growth_key, []).append((item.nodeid, growth))
    if growth > _MEMORY_LIMIT_MB:
        raise AssertionError(
            f"memory grew {growth:.1f} MB in this test (limit {_MEMORY_LIMIT_MB} MB)"
        )
    return result


_growth_key = pytest.StashKey[list[tuple[str, float]]]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    rows = config.stash.get(_growth_key, [])
    if rows:
        terminalreporter.section("memory growth per test (RSS, MB)")
        for nodeid, growth in sorted(rows, key=lambda r: -r[1])[:25]:
            terminalreporter.write_line(f"{growth:8.2f}  {nodeid}")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url, server = shared_redis_url()
    yield url
    if server is not None:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A real three-master Redis Cluster, started once for the session."""
    cluster = RedisCluster().start()
    yield cluster.url
    cluster.stop()


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of this test's own, so tests sharing one Redis never meet."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
def store_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings sections selecting the conversation/usage store (parametrized): memory,
    one Redis server, or a three-master Redis Cluster."""
    if request.param == "memory":
        return {}
    prefix = request.getfixturevalue("redis_prefix")
    if request.param == "redis-cluster":
        url = request.getfixturevalue("redis_cluster_url")
        return {"redis": {"url": url, "key_prefix": prefix, "mode": "cluster"}}
    url = request.getfixturevalue("redis_url")
    return {"redis": {"url": url, "key_prefix": prefix}}


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    up = await FakeUpstream(name="primary").start()
    yield up
    await up.stop()


@pytest.fixture
async def upstream_factory() -> AsyncIterator[Callable[..., Awaitable[FakeUpstream]]]:
    started: list[FakeUpstream] = []

    async def make(name: str = "up", **kwargs: Any) -> FakeUpstream:
        up = await FakeUpstream(name=name, **kwargs).start()
        started.append(up)
        return up

    yield make
    for up in started:
        await up.stop()


@pytest.fixture
async def sidecar_factory() -> AsyncIterator[Callable[..., Awaitable[Sidecar]]]:
    started: list[Sidecar] = []

    async def make(settings: Settings, **kwargs: Any) -> Sidecar:
        sidecar = await start_sidecar(settings, **kwargs)
        started.append(sidecar)
        return sidecar

    yield make
    for sidecar in started:
        await stop_within(sidecar, STOP_SECONDS)


#: Longest a test sidecar may take to stop: its grace is 0.2 s and every release step
#: is bounded, so a stop this slow is a hang, reported with what every task was doing.
STOP_SECONDS = 30.0


async def stop_within(sidecar: Sidecar, seconds: float) -> None:
    try:
        async with asyncio.timeout(seconds):
            await sidecar.stop(grace=0.2)
    except TimeoutError:
        stacks = io.StringIO()
        for task in asyncio.all_tasks():
            task.print_stack(limit=12, file=stacks)
        pytest.fail(f"the sidecar did not stop within {seconds} s; tasks:\n{stacks.getvalue()}")


@pytest.fixture
async def sidecar(
    upstream: FakeUpstream, sidecar_factory: Callable[..., Awaitable[Sidecar]]
) -> Sidecar:
    return await sidecar_factory(make_settings([provider("primary", upstream.url)]))


@pytest.fixture
async def client_factory(sidecar: Sidecar) -> AsyncIterator[Callable[..., AsyncLLMManagerClient]]:
    clients: list[AsyncLLMManagerClient] = []
    shared: list[AsyncLLMManagerClient] = []

    def make(user_id: str, **ctx: Any) -> AsyncLLMManagerClient:
        context = UserContext(user_id, **ctx)
        if not shared:
            shared.append(AsyncLLMManagerClient(f"127.0.0.1:{sidecar.port}", context, timeout=10))
            clients.append(shared[0])
            return shared[0]
        client = shared[0].with_context(context)
        clients.append(client)
        return client

    yield make
    for client in shared:
        await client.close()


def _children() -> list[int]:
    """Processes this test process started that are still alive (zombies excluded)."""
    mine = str(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[1].decode() == mine and fields[0] != b"Z":
            found.append(int(entry))
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Every process the suite started ends with it: a child a test left behind (a
    sidecar, a Redis) is named and killed here, so it can neither hold the run open
    nor outlive it."""
    leftovers = _children()
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    if leftovers:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"killed processes the tests left running: {leftovers}")

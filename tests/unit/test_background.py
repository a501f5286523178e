"""Background tasks end when stopped, even one that swallowed its cancellation."""

from __future__ import annotations

import asyncio
import contextlib

from llm_sidecar.core.background import BackgroundTask, cancel_and_wait


async def _swallows_one_cancellation(started: asyncio.Event) -> None:
    """As a loop does when a library inside it loses a cancellation: it goes on."""
    started.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.Event().wait()
    await asyncio.Event().wait()


async def test_a_task_that_swallowed_its_cancellation_is_cancelled_again() -> None:
    started = asyncio.Event()
    stubborn = asyncio.create_task(_swallows_one_cancellation(started))
    await started.wait()
    async with asyncio.timeout(10):  # bounds a broken run; a passing one takes 0.5 s
        await cancel_and_wait([stubborn])
    assert stubborn.cancelled()


async def test_failures_are_retrieved_and_finished_tasks_left_alone() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    failed = asyncio.create_task(fails())
    done = asyncio.create_task(asyncio.sleep(0))
    await asyncio.wait([failed, done])
    await cancel_and_wait([failed, done])
    assert not done.cancelled() and isinstance(failed.exception(), RuntimeError)


async def test_a_background_task_stops_even_when_it_swallowed_the_first_cancel() -> None:
    started = asyncio.Event()
    loop = BackgroundTask("stubborn")
    loop.start(lambda: _swallows_one_cancellation(started))
    await started.wait()
    async with asyncio.timeout(10):
        await loop.stop()
    assert not loop.running

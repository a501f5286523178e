"""A named background coroutine that is started once and stopped by cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

#: How long a cancelled task has to end before it is cancelled again.
RECANCEL_SECONDS = 0.5


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and return once every one has ended.

    A task can swallow a cancellation without meaning to: on Python 3.11,
    ``asyncio.wait_for`` inside a library loses one that races its inner
    completion, and a loop then carries on. Such a task is cancelled again every
    :data:`RECANCEL_SECONDS` instead of holding a shutdown for ever.
    """
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_SECONDS)
    for task in tasks:  # retrieved, so that none is reported as never retrieved
        if not task.cancelled():
            task.exception()


class BackgroundTask:
    """Owns at most one task at a time."""

    __slots__ = ("_name", "_task")

    def __init__(self, name: str) -> None:
        self._name = name
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether the task is running now."""
        return self._task is not None and not self._task.done()

    def start(self, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Start ``run()`` unless it runs already."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(run(), name=self._name)

    async def stop(self) -> None:
        """Cancel the task and wait for it to end."""
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None


class Periodic:
    """Base of a component that runs ``_run`` in the background every ``interval``
    seconds (0 disables it); ``start``/``stop``/``running`` are written once here."""

    interval: float
    _loop: BackgroundTask

    async def _run(self) -> None:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        """Whether the background loop runs."""
        return self._loop.running

    def start(self) -> None:
        """Start the background loop (unless the interval is 0)."""
        if self.interval > 0:
            self._loop.start(self._run)

    async def stop(self) -> None:
        """Stop the background loop."""
        await self._loop.stop()

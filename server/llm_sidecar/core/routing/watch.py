"""The time bound of one provider attempt, without a timer per chunk.

An attempt ends when the provider sends nothing for ``idle`` seconds while the
router waits for it, or when the caller's deadline passes. ``asyncio.timeout``
around every chunk arms and cancels a timer per chunk; this watch arms one
timer per attempt and, per chunk, only notes the time. When its timer fires
it checks what happened since and either ends the wait (cancelling the task
where it waits for the provider, like ``asyncio.timeout`` does) or re-arms.
Time spent handing a chunk to the caller does not count as idle.
"""

from __future__ import annotations

import asyncio

# How soon a watch looks again when its timer found the attempt handing a chunk on.
_RECHECK = 0.05


class AttemptWatch:
    """Arm with :meth:`start`, wrap each wait in :meth:`waiting` / :meth:`waited`,
    and :meth:`stop` when the attempt ends."""

    __slots__ = (
        "_cancelling",
        "_deadline",
        "_handle",
        "_idle",
        "_loop",
        "_since",
        "_task",
        "_waiting",
        "cut",
        "expired",
    )

    def __init__(self, idle: float, deadline: float | None) -> None:
        """``deadline`` is in the event loop's clock (``loop.time()``), or None."""
        self._loop = asyncio.get_running_loop()
        self._idle = idle
        self._deadline = deadline
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._since = 0.0
        self._waiting = False
        #: The wait was ended by this watch; ``cut`` when the caller's deadline did it.
        self.expired = False
        self.cut = False

    def start(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._cancelling = task.cancelling()
        self._since = self._loop.time()
        self._arm()

    def _due(self) -> float:
        due = self._since + self._idle
        return due if self._deadline is None or due < self._deadline else self._deadline

    def _arm(self) -> None:
        self._handle = self._loop.call_at(self._due(), self._fire)

    def _fire(self) -> None:
        now = self._loop.time()
        if not self._waiting:
            # Handing a chunk on took this long: the idle clock restarts at the next wait.
            # Past the deadline the next check waits a little, rather than spinning
            # until the attempt waits again (gRPC ends the call at its deadline anyway).
            self._since = now
            self._handle = self._loop.call_at(max(self._due(), now + _RECHECK), self._fire)
            return
        if now >= self._due() - 1e-6:
            self.expired = True
            self.cut = self._deadline is not None and now >= self._deadline - 1e-6
            assert self._task is not None
            self._task.cancel()
            return
        self._handle = self._loop.call_at(self._due(), self._fire)

    def waiting(self) -> None:
        """The attempt now waits for the provider."""
        self._since = self._loop.time()
        self._waiting = True

    def waited(self) -> None:
        """The provider answered (or the wait ended otherwise)."""
        self._waiting = False

    def ended_wait(self) -> bool:
        """After a CancelledError: whether it was this watch's doing (then the caller
        turns it into a timeout), rather than a cancellation from outside."""
        if not self.expired:
            return False
        assert self._task is not None
        return self._task.uncancel() <= self._cancelling

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

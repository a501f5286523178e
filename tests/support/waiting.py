"""Waiting for something to become true, instead of sleeping and hoping it did."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

Check = Callable[[], bool | Awaitable[bool]]


async def eventually(check: Check, timeout: float = 10.0, *, what: str = "") -> None:
    """Return as soon as ``check()`` (plain or async) is true; fail after ``timeout``.

    The timeout is generous on purpose: it bounds a broken run, while a passing one
    returns at the first true check, however busy the machine is.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s: {what or check}")
        await asyncio.sleep(0.02)

"""Per-user admission: concurrent requests and tokens per minute."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from llm_sidecar.core.vocabulary.errors import ResourceExhaustedError

_WINDOW = 60.0


@dataclass(frozen=True, slots=True)
class UserLimits:
    """Per-user admission limits; 0 disables."""

    max_concurrent: int = 64
    tokens_per_minute: int = 0


DEFAULT_USER_LIMITS = UserLimits()


class UserLimiter:
    """Limits of one user; 0 disables a limit."""

    __slots__ = (
        "_clock",
        "_tokens",
        "_tokens_sum",
        "in_flight",
        "max_concurrent",
        "tokens_per_minute",
    )

    def __init__(
        self,
        limits: UserLimits = DEFAULT_USER_LIMITS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_concurrent = limits.max_concurrent
        self.tokens_per_minute = limits.tokens_per_minute
        self._clock = clock
        self.in_flight = 0
        self._tokens: deque[tuple[float, int]] = deque()
        self._tokens_sum = 0

    def _prune(self, now: float) -> None:
        horizon = now - _WINDOW
        while self._tokens and self._tokens[0][0] <= horizon:
            self._tokens_sum -= self._tokens.popleft()[1]

    def acquire(self) -> None:
        """Admit one request or raise :class:`ResourceExhaustedError`."""
        if self.max_concurrent and self.in_flight >= self.max_concurrent:
            raise ResourceExhaustedError(
                f"more than {self.max_concurrent} concurrent requests for this user",
                retry_after=0.1,
                limit="max_concurrent_requests",
            )
        if self.tokens_per_minute:
            now = self._clock()
            self._prune(now)
            if self._tokens_sum >= self.tokens_per_minute:
                retry = self._tokens[0][0] + _WINDOW - now if self._tokens else 1.0
                raise ResourceExhaustedError(
                    f"this user used {self._tokens_sum} of {self.tokens_per_minute} tokens "
                    "per minute",
                    retry_after=max(retry, 0.001),
                    limit="tokens_per_minute",
                )
        self.in_flight += 1

    def release(self) -> None:
        """End one admitted request."""
        self.in_flight -= 1

    def record_tokens(self, tokens: int) -> None:
        """Charge tokens a provider used to the per-minute window."""
        if self.tokens_per_minute and tokens > 0:
            self._tokens.append((self._clock(), tokens))
            self._tokens_sum += tokens

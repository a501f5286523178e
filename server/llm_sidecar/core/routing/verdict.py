"""What follows a round in which every provider of a chain failed: another round
after a backoff, or the error the caller gets."""

from __future__ import annotations

from collections.abc import Sequence

from llm_sidecar.core.routing.chain import ProviderSlot, RetryPolicy
from llm_sidecar.core.vocabulary.errors import (
    DeadlineExceededError,
    ErrorKind,
    ProviderError,
    ProviderUnavailableError,
    StructuredOutputError,
)
from llm_sidecar.core.vocabulary.models import AttemptRecord

# Below this much time left an attempt cannot finish; fail fast instead.
MIN_ATTEMPT_SECONDS = 0.002


def next_round_delay(
    slots: Sequence[ProviderSlot],
    policy: RetryPolicy,
    round_no: int,
    errors: list[ProviderError],
    deadline: float | None,
    now: float,
) -> float | None:
    """Backoff before round ``round_no`` (1-based), or None when no round should follow.

    At least until the first provider may be called again (a Retry-After hold),
    never past the deadline, and none when every circuit is open or every
    failure was an answer that did not fit the schema.
    """
    if round_no > policy.retry_rounds or not errors:
        return None
    if all(e.kind is ErrorKind.INVALID_OUTPUT for e in errors):
        return None
    waits = [w for s in slots if (w := s.wait_seconds(now)) is not None]
    if not waits:
        return None  # every circuit is open
    delay = max(policy.backoff(round_no), min(waits))
    if deadline is not None and delay + MIN_ATTEMPT_SECONDS >= deadline - now:
        return None
    return delay


def exhausted(
    route: str,
    slots: Sequence[ProviderSlot],
    attempts: list[AttemptRecord],
    errors: list[ProviderError],
    deadline: float | None,
    now: float,
) -> Exception:
    """The error for a chain that could not answer, with when to come back."""
    if errors and all(e.kind is ErrorKind.INVALID_OUTPUT for e in errors):
        return StructuredOutputError(
            f"no provider of '{route}' produced JSON valid against the schema "
            f"({errors[-1].message})",
            attempts,
        )
    if deadline is not None and deadline - now < MIN_ATTEMPT_SECONDS:
        return DeadlineExceededError("the deadline passed before a provider answered", attempts)
    waits = [s.breaker.retry_after() for s in slots if s.wait_seconds(now) is None]
    waits += [s.hold_until - now for s in slots if s.hold_until > now]
    waits += [e.retry_after for e in errors if e.retry_after is not None]
    return ProviderUnavailableError(
        f"no provider of '{route}' could answer: {tried(attempts)}",
        attempts,
        retry_after=max(min(waits) if waits else 1.0, 0.05),
    )


def tried(attempts: Sequence[AttemptRecord]) -> str:
    """Each provider tried, in order, with how it failed: ``openai (connection);
    azure (HTTP 503, circuit_open)``. Names and classes only, never keys or bodies."""
    causes: dict[str, list[str]] = {}
    for attempt in attempts:
        if attempt.error_type:
            seen = causes.setdefault(attempt.provider, [])
            if (cause := attempt.cause()) not in seen:
                seen.append(cause)
    if not causes:
        return "no provider was tried"
    return "; ".join(f"{name} ({', '.join(why)})" for name, why in causes.items())

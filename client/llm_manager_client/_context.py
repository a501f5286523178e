"""The user context a client sends as metadata on every call."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace


@dataclass(frozen=True, slots=True)
class UserContext:
    """Who the calls are made for. Only ``user_id`` is required."""

    user_id: str
    session_id: str | None = None
    thread_id: str | None = None
    execution_id: str | None = None
    request_id: str | None = None
    permissions: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not isinstance(self.permissions, frozenset):
            object.__setattr__(self, "permissions", frozenset(self.permissions))

    def with_(self, **changes: object) -> UserContext:
        """A copy with some fields changed (e.g. another session)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def to_metadata(self) -> tuple[tuple[str, str], ...]:
        """gRPC metadata pairs for this context."""
        pairs: list[tuple[str, str]] = [("x-user-id", self.user_id)]
        optional: Iterable[tuple[str, str | None]] = (
            ("x-session-id", self.session_id),
            ("x-thread-id", self.thread_id),
            ("x-execution-id", self.execution_id),
            ("x-request-id", self.request_id),
        )
        pairs.extend((key, value) for key, value in optional if value is not None)
        if self.permissions:
            pairs.append(("x-permissions", ",".join(sorted(self.permissions))))
        return tuple(pairs)

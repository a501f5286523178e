"""The user execution context: who a call is for, validated once at the edge.

Metadata is hostile input. Every value is checked for presence, length and
charset here, before any state is touched, and placeholder ids that a buggy
caller sends by accident (``None``, ``null``, ``undefined``) are refused so
that two users never collapse into one tenant called "None".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from llm_sidecar.core.vocabulary.errors import InvalidContextError

USER_ID_KEY = "x-user-id"
SESSION_ID_KEY = "x-session-id"
THREAD_ID_KEY = "x-thread-id"
EXECUTION_ID_KEY = "x-execution-id"
REQUEST_ID_KEY = "x-request-id"
PERMISSIONS_KEY = "x-permissions"

CONTEXT_KEYS = (
    USER_ID_KEY,
    SESSION_ID_KEY,
    THREAD_ID_KEY,
    EXECUTION_ID_KEY,
    REQUEST_ID_KEY,
    PERMISSIONS_KEY,
)

MAX_ID_LENGTH = 128
MAX_PERMISSIONS = 32
MAX_PERMISSION_LENGTH = 64
DEFAULT_THREAD_ID = "main"

# Wide enough for emails, UUIDs, ULIDs and "tenant:user" forms; narrow enough
# that no control character, space or glob character reaches a key.
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:+=/\-]*")
_PERMISSION_RE = re.compile(r"[a-z0-9][a-z0-9_.:\-]*")
_PLACEHOLDERS = frozenset({"none", "null", "nil", "undefined", "nan", "unknown", "anonymous"})


def validate_id(key: str, value: str | None, *, required: bool) -> str | None:
    """Check one id from metadata; return it, or None when absent and optional."""
    if value is None:
        if required:
            raise InvalidContextError(key, "is required", missing=True)
        return None
    if not value.strip():
        raise InvalidContextError(key, "is empty", missing=required)
    if len(value) > MAX_ID_LENGTH:
        raise InvalidContextError(key, f"is longer than {MAX_ID_LENGTH} characters")
    if value.lower() in _PLACEHOLDERS:
        raise InvalidContextError(key, "is a placeholder value, not an id")
    if _ID_RE.fullmatch(value) is None:
        raise InvalidContextError(
            key, "has characters outside [A-Za-z0-9._@:+=/-] or does not start alphanumeric"
        )
    return value


def parse_permissions(value: str | None) -> frozenset[str]:
    """Parse the comma-separated permission list."""
    if value is None or not value.strip():
        return frozenset()
    tokens = [token.strip() for token in value.split(",")]
    if len(tokens) > MAX_PERMISSIONS:
        raise InvalidContextError(PERMISSIONS_KEY, f"lists more than {MAX_PERMISSIONS} permissions")
    for token in tokens:
        if len(token) > MAX_PERMISSION_LENGTH or _PERMISSION_RE.fullmatch(token) is None:
            raise InvalidContextError(
                PERMISSIONS_KEY,
                f"has an invalid entry: permissions are lowercase [a-z0-9_.:-], "
                f"at most {MAX_PERMISSION_LENGTH} characters",
            )
    return frozenset(tokens)


@dataclass(frozen=True, slots=True)
class UserExecutionContext:
    """Immutable, validated identity of one call.

    Construct it with :meth:`from_metadata` (validates every context key) or
    directly in trusted code; direct construction validates too.
    ``x-execution-id`` is validated at the edge and reserved: the sidecar does not act
    on it yet, so it is not kept. ``x-permissions`` are the user's groups, which the
    MCP gateway's access rules read; they do not make another user of the same id.
    """

    user_id: str
    session_id: str | None = None
    thread_id: str | None = None
    request_id: str | None = None
    permissions: frozenset[str] = field(default=frozenset(), compare=False)

    def __post_init__(self) -> None:
        validate_id(USER_ID_KEY, self.user_id, required=True)
        validate_id(SESSION_ID_KEY, self.session_id, required=False)
        validate_id(THREAD_ID_KEY, self.thread_id, required=False)
        validate_id(REQUEST_ID_KEY, self.request_id, required=False)

    @classmethod
    def from_metadata(cls, values: Mapping[str, str]) -> UserExecutionContext:
        """Build a context from metadata already reduced to one value per key."""
        context = cls(
            user_id=values.get(USER_ID_KEY),  # type: ignore[arg-type]  # validated in __post_init__
            session_id=values.get(SESSION_ID_KEY),
            thread_id=values.get(THREAD_ID_KEY),
            request_id=values.get(REQUEST_ID_KEY),
            permissions=parse_permissions(values.get(PERMISSIONS_KEY)),
        )
        validate_id(EXECUTION_ID_KEY, values.get(EXECUTION_ID_KEY), required=False)
        return context

    @property
    def conversation_thread(self) -> str:
        """The thread a conversation call uses: the given one or the default."""
        return self.thread_id or DEFAULT_THREAD_ID

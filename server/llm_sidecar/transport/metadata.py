"""gRPC metadata -> validated user context, trace carrier and credentials."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from llm_sidecar.core.vocabulary.context import CONTEXT_KEYS, UserExecutionContext
from llm_sidecar.core.vocabulary.errors import InvalidContextError

_CONTEXT_KEYS = frozenset(CONTEXT_KEYS)
_TRACE_KEYS = frozenset({"traceparent", "tracestate", "baggage"})
AUTHORIZATION_KEY = "authorization"


@dataclass(slots=True)
class Incoming:
    """What a call's metadata carries, sorted by use."""

    #: One value per context key.
    values: dict[str, str] = field(default_factory=dict)
    #: W3C trace context and baggage.
    carrier: dict[str, str] = field(default_factory=dict)
    #: The ``authorization`` value, if any (never logged).
    authorization: str | None = None


def split_metadata(metadata: Iterable[Any] | None) -> Incoming:
    """Sort invocation metadata.

    A context key given twice is refused: which one a caller meant is unknowable.
    """
    incoming = Incoming()
    if not metadata:
        return incoming
    values = incoming.values
    for key, value in metadata:
        if key in _CONTEXT_KEYS:
            if key in values:
                raise InvalidContextError(key, "appears more than once")
            if not isinstance(value, str):
                raise InvalidContextError(key, "must be text metadata")
            values[key] = value
        elif key in _TRACE_KEYS and isinstance(value, str):
            incoming.carrier[key] = value
        elif key == AUTHORIZATION_KEY and isinstance(value, str):
            if incoming.authorization is not None:
                raise InvalidContextError(key, "appears more than once", missing=True)
            incoming.authorization = value
    return incoming


def context_from(values: dict[str, str]) -> UserExecutionContext:
    """The validated context; raises InvalidContextError naming the bad key."""
    return UserExecutionContext.from_metadata(values)


def check_token(authorization: str | None, token: str) -> None:
    """Raise UNAUTHENTICATED unless ``authorization`` is ``Bearer <token>``, the scheme in
    any case (constant time)."""
    scheme, _, presented = (authorization or "").partition(" ")
    expected = token.encode("utf-8")
    # RFC 7235: the scheme is case-insensitive (as on HTTP).
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        presented.encode("utf-8", "replace"), expected
    ):
        raise InvalidContextError(
            AUTHORIZATION_KEY, "must be 'Bearer <token>' with the sidecar's token", missing=True
        )

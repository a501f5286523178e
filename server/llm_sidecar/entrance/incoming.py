"""What a call brings besides its body, read the same from gRPC metadata and HTTP
headers (whose names are the same): the user context, the trace context, and the
credentials."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from llm_sidecar.core.vocabulary.context import CONTEXT_KEYS
from llm_sidecar.core.vocabulary.errors import InvalidContextError

_CONTEXT_KEYS = frozenset(CONTEXT_KEYS)
_TRACE_KEYS = frozenset({"traceparent", "tracestate", "baggage"})
AUTHORIZATION_KEY = "authorization"
#: The Anthropic SDK's way of sending a key; the token rule accepts it on every wire.
API_KEY_KEY = "x-api-key"


@dataclass(slots=True)
class Incoming:
    """What a call's metadata or headers carry, sorted by use."""

    #: One value per context key.
    values: dict[str, str] = field(default_factory=dict)
    #: W3C trace context and baggage.
    carrier: dict[str, str] = field(default_factory=dict)
    #: The ``authorization`` value, if any (never logged).
    authorization: str | None = None
    #: The ``x-api-key`` value, if any (never logged).
    api_key: str | None = None
    #: What made the metadata unreadable (a key given twice), raised once the call's
    #: record and span exist, so the refusal is logged and traced like any other.
    problem: InvalidContextError | None = None


def read_incoming(pairs: Iterable[tuple[str, object]] | None) -> Incoming:
    """Sort (lower-case name, value) pairs. A context key or a credential given twice
    is refused (in ``problem``): which one a caller meant is unknowable."""
    incoming = Incoming()
    if not pairs:
        return incoming
    try:
        _sort(pairs, incoming)
    except InvalidContextError as exc:
        return Incoming(problem=exc)
    return incoming


def _sort(pairs: Iterable[tuple[str, object]], incoming: Incoming) -> None:
    values = incoming.values
    for key, value in pairs:
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
        elif key == API_KEY_KEY and isinstance(value, str):
            if incoming.api_key is not None:
                raise InvalidContextError(key, "appears more than once", missing=True)
            incoming.api_key = value

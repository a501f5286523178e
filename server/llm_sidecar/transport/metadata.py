"""gRPC metadata -> validated user context (and trace carrier)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from llm_sidecar.core.context import CONTEXT_KEYS, UserExecutionContext
from llm_sidecar.core.errors import InvalidContextError

_CONTEXT_KEYS = frozenset(CONTEXT_KEYS)
_TRACE_KEYS = frozenset({"traceparent", "tracestate", "baggage"})


def split_metadata(metadata: Iterable[Any] | None) -> tuple[dict[str, str], dict[str, str]]:
    """(context values, trace carrier) from invocation metadata.

    A context key given twice is refused: which one a caller meant is unknowable.
    """
    values: dict[str, str] = {}
    carrier: dict[str, str] = {}
    if not metadata:
        return values, carrier
    for key, value in metadata:
        if key in _CONTEXT_KEYS:
            if key in values:
                raise InvalidContextError(key, "appears more than once")
            if not isinstance(value, str):
                raise InvalidContextError(key, "must be text metadata")
            values[key] = value
        elif key in _TRACE_KEYS and isinstance(value, str):
            carrier[key] = value
    return values, carrier


def context_from(values: dict[str, str]) -> UserExecutionContext:
    """The validated context; raises InvalidContextError naming the bad key."""
    return UserExecutionContext.from_metadata(values)

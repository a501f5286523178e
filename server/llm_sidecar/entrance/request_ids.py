"""Request ids: the caller's ``x-request-id`` when it is a valid id, or one made here,
in one format for every wire: ``sc-<process>-<serial>`` (a random per-process part and
a counter, unique across pods, and cheaper than a UUID per call)."""

from __future__ import annotations

import itertools
import os

from llm_sidecar.core.vocabulary.context import REQUEST_ID_KEY, validate_id
from llm_sidecar.core.vocabulary.errors import InvalidContextError

_PROCESS_PART = os.urandom(6).hex()
_SERIAL = itertools.count(1)


def new_request_id() -> str:
    """A request id for a call that brought none (or brought one that is refused)."""
    return f"sc-{_PROCESS_PART}-{next(_SERIAL):x}"


def request_id_of(given: str | None) -> str:
    """The call's request id: the caller's when valid, a new one otherwise. A refused
    value is never logged or echoed; the user context refuses it by name."""
    if given is not None:
        try:
            validate_id(REQUEST_ID_KEY, given, required=True)
        except InvalidContextError:
            return new_request_id()
        return given
    return new_request_id()

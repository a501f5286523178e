"""One call from the moment a wire hands it over until its access line: the request id
(bound to every log line of the call), the token and the user context, the server span's
user and failure, the duration metric and the access line, each written once here."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.metrics import Histogram
from opentelemetry.trace import Span, Status, StatusCode

from llm_sidecar.core.observability import Observability
from llm_sidecar.core.vocabulary.context import REQUEST_ID_KEY, UserExecutionContext
from llm_sidecar.core.vocabulary.models import AskResult, EmbedResult
from llm_sidecar.entrance.credentials import check_token
from llm_sidecar.entrance.incoming import Incoming
from llm_sidecar.entrance.request_ids import request_id_of
from llm_sidecar.telemetry.access import AccessLog, CallRecord
from llm_sidecar.telemetry.logs import bind_request_id, frames_only, unbind_request_id

log = logging.getLogger("llm_sidecar.entrance")


class Entrance:
    """What every wire's calls go through; one per listener group."""

    __slots__ = ("access", "obs", "token")

    def __init__(self, obs: Observability, access: AccessLog, *, token: str = "") -> None:
        self.obs = obs
        self.access = access
        #: The token calls from the network must present ("" = none needed).
        self.token = token

    def open(self, method: str, incoming: Incoming) -> CallScope:
        """A call named ``method`` (its span name and access-line method) begins."""
        request_id = request_id_of(incoming.values.get(REQUEST_ID_KEY))
        # The context carries the id to the answers; a refused one stays for the context
        # to refuse by name, while the record and the logs carry the new one.
        incoming.values.setdefault(REQUEST_ID_KEY, request_id)
        return CallScope(self, incoming, CallRecord(method, request_id))


class CallScope:
    """One call's identity and record; see the module."""

    __slots__ = ("_bound", "entrance", "incoming", "record", "span", "started")

    def __init__(self, entrance: Entrance, incoming: Incoming, record: CallRecord) -> None:
        self.entrance = entrance
        self.incoming = incoming
        self.record = record
        self.span: Span | None = None
        self.started = time.perf_counter()
        self._bound = bind_request_id(record.request_id)

    @property
    def request_id(self) -> str:
        return self.record.request_id

    def parent(self) -> Context | None:
        """The caller's trace, to continue (None: a new trace)."""
        carrier = self.incoming.carrier
        return propagate.extract(carrier) if carrier else None

    def admit(self, span: Span, *, local: bool, needs_user: bool) -> UserExecutionContext | None:
        """Check the token (unless the call came over a local socket, which file
        permissions guard) and read the user context; the span names the user as
        telemetry may show it."""
        self.span = span
        if self.incoming.problem is not None:
            raise self.incoming.problem
        entrance = self.entrance
        if entrance.token and not local:
            check_token(self.incoming, entrance.token)
        if not needs_user:
            return None
        ctx = UserExecutionContext.from_metadata(self.incoming.values)
        ref = entrance.obs.user_ref(ctx.user_id)
        self.record.user = ref
        if ref and span.is_recording():
            raw = entrance.obs.user_id_mode == "raw"
            span.set_attribute("enduser.id" if raw else "enduser.pseudo.id", ref)
        return ctx

    def answered(self, result: AskResult) -> None:
        """Take the answer's figures for the access line."""
        self.record.answered(result)

    def embedded(self, result: EmbedResult) -> None:
        """Take an embedding call's figures for the access line."""
        self.record.embedded(result)

    def refused(
        self, exc: BaseException, status: str, reason: str, attributes: dict[str, Any]
    ) -> None:
        """The call ends in ``status`` (the wire's own name for it) for ``reason`` (the
        error's, ``INTERNAL`` for an unexpected one, which is logged with its frames,
        never its message: that may quote request data); the record and the span say so."""
        if reason == "INTERNAL":
            log.error(
                "call crashed", extra={"method": self.record.method, "error": frames_only(exc)}
            )
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("call refused", extra={"method": self.record.method, "status": status})
        self.record.failed(status, reason, len(getattr(exc, "attempts", ())))
        span = self.span
        if span is not None and span.is_recording():
            span.set_attributes(attributes)
            span.set_attribute("error.type", reason)
            span.set_status(Status(StatusCode.ERROR, status))

    def cancelled(self) -> None:
        """The caller went away (or its deadline passed) before the answer."""
        self.record.failed("CANCELLED", "CANCELLED", self.record.attempts)

    def done(self, duration: Histogram, attributes: dict[str, Any]) -> None:
        """The call has ended: its duration, its access line; its logs are its own no more."""
        elapsed = time.perf_counter() - self.started
        duration.record(elapsed, attributes)
        self.entrance.access.write(self.record, elapsed)
        # A stream's generator may be closed from another context (a finaliser).
        with contextlib.suppress(ValueError):
            unbind_request_id(self._bound)

"""The access log: one line per call an operator can act on, and never any content.

Every transport fills a :class:`CallRecord` while it serves a call (what it knows
at the edge: method, status, duration, request id, user; and what the answer
said: route, provider, attempts, cached, tokens, cost) and hands it to
:meth:`AccessLog.write`. The line goes to the ``llm_sidecar.access`` logger at
INFO, inside the call's server span, so the JSON formatter adds the trace and
span ids. The user appears only as the telemetry form of its id (a pseudonym
by default), and no prompt, answer or metadata value is ever written.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from llm_sidecar.core.vocabulary.models import AskResult, EmbedResult

log = logging.getLogger("llm_sidecar.access")


@dataclass(slots=True)
class CallRecord:
    """What one call did, as far as an operator needs to know."""

    method: str
    request_id: str = ""
    #: The user as telemetry may show it ("" before the context is known).
    user: str = ""
    status: str = "OK"
    #: The error's machine-readable reason when the call failed.
    reason: str = ""
    route: str = ""
    provider: str = ""
    attempts: int = 0
    cached: bool | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_micro_usd: int | None = None

    def answered(self, result: AskResult) -> None:
        """Take the answer's figures."""
        self.route = result.route
        self.provider = result.provider
        self.attempts = len(result.attempts)
        self.cached = result.cached
        self.prompt_tokens = result.usage.prompt_tokens
        self.completion_tokens = result.usage.completion_tokens
        self.cost_micro_usd = result.cost_micro_usd

    def embedded(self, result: EmbedResult) -> None:
        """Take an Embed call's figures (how many texts came from the cache, not which)."""
        self.route = result.route
        self.provider = result.provider
        self.attempts = len(result.attempts)
        self.cached = all(result.cached)
        self.prompt_tokens = result.usage.prompt_tokens
        self.completion_tokens = 0
        self.cost_micro_usd = result.cost_micro_usd

    def failed(self, status: str, reason: str, attempts: int = 0) -> None:
        """Take a failure's status and reason."""
        self.status = status
        self.reason = reason
        self.attempts = attempts


class AccessLog:
    """Writes one line per call: every failed call, and ``sample_rate`` of the others."""

    __slots__ = ("enabled", "sample_rate", "user_ref")

    def __init__(
        self,
        *,
        enabled: bool = True,
        sample_rate: float = 1.0,
        user_ref: Callable[[str], str] = lambda user_id: "",
    ) -> None:
        self.enabled = enabled
        self.sample_rate = sample_rate
        #: The telemetry form of a user id (a keyed pseudonym by default).
        self.user_ref = user_ref

    def write(self, record: CallRecord, duration_seconds: float) -> None:
        """Log ``record`` unless it is a successful call left out by sampling."""
        if not self.enabled or not log.isEnabledFor(logging.INFO):
            return
        if record.status == "OK" and self.sample_rate < 1.0 and random.random() >= self.sample_rate:
            return
        fields: dict[str, object] = {
            "method": record.method,
            "status": record.status,
            "duration_ms": round(duration_seconds * 1000, 3),
            "request_id": record.request_id,
        }
        if record.user:
            fields["user"] = record.user
        if record.reason:
            fields["reason"] = record.reason
        if record.route:
            fields["route"] = record.route
        if record.provider:
            fields["provider"] = record.provider
        if record.attempts:
            fields["attempts"] = record.attempts
        if record.cached is not None:
            fields["cached"] = record.cached
            fields["prompt_tokens"] = record.prompt_tokens
            fields["completion_tokens"] = record.completion_tokens
            fields["cost_micro_usd"] = record.cost_micro_usd
        log.info("call", extra=fields)


OFF = AccessLog(enabled=False)

"""One call's guard: finds values in the texts it is handed, masks, replaces or refuses
them by the route's policy, counts what it found, and restores what it replaced."""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace

from llm_sidecar.core.guard.findings import Action, Finding
from llm_sidecar.core.guard.policy import GuardPolicy
from llm_sidecar.core.guard.pseudonyms import Pseudonyms, StreamRestorer, label
from llm_sidecar.core.guard.scan import Memo, Scan
from llm_sidecar.core.observability import Observability
from llm_sidecar.core.vocabulary.errors import GuardrailBlockedError, GuardrailFailedError

log = logging.getLogger("llm_sidecar.guardrails")


class Shield:
    """The guard of one call. ``pseudonymize``: False where nothing comes back to be
    restored (a tool's arguments and results, which are the user's own), and the
    values of pseudonymized categories pass as they are."""

    __slots__ = ("_counts", "_memo", "_obs", "_output", "_pseudonymize", "names", "policy")

    def __init__(
        self,
        policy: GuardPolicy,
        observability: Observability,
        *,
        memo: Memo | None = None,
        pseudonymize: bool = True,
        output: bool = False,
    ) -> None:
        self.policy = policy
        #: The user's checks already made (a call of its own: a fresh one).
        self._memo = memo if memo is not None else Memo()
        self.names = Pseudonyms()
        self._obs = observability
        self._pseudonymize = pseudonymize
        #: What is screened comes back from an upstream (a tool's result), rather than
        #: going to one: a blocked value is the upstream's fault, not the caller's.
        self._output = output
        self._counts: Counter[tuple[str, Action]] = Counter()

    # -- going out ------------------------------------------------------------------------

    def texts(self, texts: Sequence[tuple[str, str]]) -> list[str]:
        """Each (text, place), guarded; the call refused when one holds a blocked value.
        Placeholder-shaped text the caller wrote anywhere is reserved first."""
        if self._pseudonymize:
            for text, _ in texts:
                self.names.reserve(text)
        return [self.text(text, place) for text, place in texts]

    def text(self, text: str, place: str) -> str:
        """One text, guarded (call :meth:`texts` for a call's texts, so that literal
        placeholders in any of them are reserved first)."""
        findings = self._find(text)
        if not findings:
            return text
        pieces: list[str] = []
        end = 0
        for finding in findings:
            action = self.policy.action(finding.category)
            if action is Action.PSEUDONYMIZE and not self._pseudonymize:
                continue
            self._counts[finding.category, action] += 1
            if action is Action.BLOCK:
                self._blocked(finding.category, place)
            value = text[finding.start : finding.end]
            pieces.append(text[end : finding.start])
            if action is Action.MASK:
                pieces.append(f"[{label(finding.category)}]")
            else:
                pieces.append(self.names.placeholder(finding.category, value))
            end = finding.end
        pieces.append(text[end:])
        return "".join(pieces)

    def tree(self, value: Any, place: str) -> Any:
        """A JSON value (a tool's arguments or structured result) with its strings
        guarded; places name the path (``arguments.to``, ``arguments.cc[1]``)."""
        if isinstance(value, str):
            return self.text(value, place)
        if isinstance(value, list):
            return [self.tree(item, f"{place}[{i}]") for i, item in enumerate(value)]
        if isinstance(value, dict):
            return {key: self.tree(item, f"{place}.{key}") for key, item in value.items()}
        return value

    def _find(self, text: str) -> list[Finding]:
        """The findings to act on, in order, overlaps given to the higher category."""
        scan = Scan(text, self._memo)
        found: list[Finding] = []
        for detector in self.policy.detectors:
            try:
                found.extend(detector.find(scan))
            except Exception as exc:
                self._failed(detector.category, exc)
        if len(found) < 2:
            return found
        rank = self.policy.rank
        found.sort(key=lambda f: (rank(f.category), f.start))
        kept: list[Finding] = []
        for finding in found:
            if all(finding.end <= k.start or finding.start >= k.end for k in kept):
                kept.append(finding)
        kept.sort(key=lambda f: f.start)
        return kept

    def _failed(self, category: str, exc: Exception) -> None:
        log.error(
            "guardrail detector failed",
            extra={
                "guard_category": category,
                "error_type": type(exc).__name__,
                "on_error": "fail_open" if self.policy.fail_open else "fail_closed",
            },
        )
        if not self.policy.fail_open:
            raise GuardrailFailedError(category) from None

    def _blocked(self, category: str, place: str) -> None:
        self.record()
        log.warning(
            "guardrail blocked a call",
            extra={"guard_category": category, "guard_place": place},
        )
        raise GuardrailBlockedError(category, place, output=self._output)

    # -- coming back ----------------------------------------------------------------------

    @property
    def restoring(self) -> bool:
        """Whether anything was replaced that the answer may give back."""
        return bool(self.names)

    def restore(self, text: str) -> str:
        """An answer's text with this call's placeholders restored."""
        return self.names.restore(text)

    def restore_json(self, text: str) -> str:
        """A JSON text (tool-call arguments, a structured answer) restored."""
        return self.names.restore_json(text)

    def restorer(self) -> StreamRestorer:
        """A restorer of this call's stream deltas."""
        return StreamRestorer(self.names)

    # -- telling ----------------------------------------------------------------------------

    def record(self) -> None:
        """What was found, by category and action, in the metrics and on the current
        span: counts, never values. Once per call."""
        counts, self._counts = self._counts, Counter()
        if not counts:
            return
        span = trace.get_current_span()
        recording = span.is_recording()
        for (category, action), count in counts.items():
            self._obs.guard_detections.add(count, _attributes(category, action))
            if recording:
                span.set_attribute(f"llm_sidecar.guardrails.{category}.{action.value}", count)


@functools.cache
def _attributes(category: str, action: Action) -> dict[str, str]:
    """A detection count's metric attributes (made once per pair: categories are the
    configuration's, a handful)."""
    return {
        "llm_sidecar.guardrails.category": category,
        "llm_sidecar.guardrails.action": action.value,
    }

"""One call's reversible placeholders: ``<EMAIL_1>`` for the first address, restored
in the answer, its tool-call arguments and its stream, and nowhere else.

A call's placeholders are numbered in the order their values first appear in what the
call sends: the thread's stored history (or the chain of stored responses, or the
turns a stateless client resends) and then the new input. Turn after turn the
history is the same prefix, so a value keeps its placeholder for as long as the
thread remembers it. The mapping is made from the caller's own request only, lives
as long as the call, and is never stored or shared: another user's placeholder typed
into a prompt is text like any other.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: What a placeholder looks like: ``<EMAIL_1>``, ``<CREDIT_CARD_12>``.
PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*)_([1-9][0-9]*)>")
#: The longest placeholder the stream holds back for (a label, a serial, brackets).
MAX_PLACEHOLDER = 48
_PARTIAL = re.compile(r"<[A-Z0-9_]*\Z")


def label(category: str) -> str:
    """The placeholder and mask label of a category: ``email`` -> ``EMAIL``."""
    return category.upper()


class Pseudonyms:
    """Values and their placeholders, for one call of one user."""

    __slots__ = ("_placeholders", "_serials", "_taken", "_values")

    def __init__(self) -> None:
        self._placeholders: dict[tuple[str, str], str] = {}
        self._values: dict[str, str] = {}
        self._serials: dict[str, int] = {}
        #: Placeholder-shaped text the caller wrote: never issued, never restored.
        self._taken: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self._values)

    def reserve(self, text: str) -> None:
        """Keep the placeholders ``text`` already holds from being issued."""
        if "<" in text:
            self._taken.update(match.group() for match in PLACEHOLDER.finditer(text))

    def placeholder(self, category: str, value: str) -> str:
        """The value's placeholder in this call, issued on first sight."""
        key = (category, value)
        found = self._placeholders.get(key)
        if found is not None:
            return found
        name = label(category)
        serial = self._serials.get(name, 0)
        while True:
            serial += 1
            found = f"<{name}_{serial}>"
            if found not in self._taken:
                break
        self._serials[name] = serial
        self._placeholders[key] = found
        self._values[found] = value
        return found

    def restore(self, text: str) -> str:
        """``text`` with this call's placeholders back to their values."""
        if not self._values or "<" not in text:
            return text
        return PLACEHOLDER.sub(self._value, text)

    def restore_json(self, text: str) -> str:
        """A JSON document's text with the values written as JSON string content, so
        that a value with a quote or a line break keeps the document valid."""
        if not self._values or "<" not in text:
            return text
        return PLACEHOLDER.sub(self._json_value, text)

    def restore_tree(self, value: Any) -> Any:
        """A parsed JSON document with its strings restored."""
        if isinstance(value, str):
            return self.restore(value)
        if isinstance(value, list):
            return [self.restore_tree(item) for item in value]
        if isinstance(value, dict):
            return {self.restore(k): self.restore_tree(v) for k, v in value.items()}
        return value

    def _value(self, match: re.Match[str]) -> str:
        return self._values.get(match.group(), match.group())

    def _json_value(self, match: re.Match[str]) -> str:
        value = self._values.get(match.group())
        return match.group() if value is None else json.dumps(value, ensure_ascii=False)[1:-1]


class StreamRestorer:
    """Restores a stream's text deltas, holding back the end of a delta only while it
    may be the start of a placeholder: at most :data:`MAX_PLACEHOLDER` characters."""

    __slots__ = ("_held", "_names")

    def __init__(self, names: Pseudonyms) -> None:
        self._names = names
        self._held = ""

    def feed(self, delta: str) -> str:
        """What may go to the caller now (maybe nothing)."""
        text = self._held + delta if self._held else delta
        self._held = ""
        cut = text.rfind("<")
        if cut >= 0 and len(text) - cut < MAX_PLACEHOLDER and _PARTIAL.match(text, cut):
            self._held = text[cut:]
            text = text[:cut]
        return self._names.restore(text)

    def flush(self) -> str:
        """What is held back when the stream ends."""
        held, self._held = self._held, ""
        return self._names.restore(held)

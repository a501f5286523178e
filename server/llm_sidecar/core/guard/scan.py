"""What the detectors of one text share: where its numbers are (found once, for every
detector of numbers), its lower-case form, and the user's memo of the library checks
already made, so that a value a user repeats (their own address, in every turn of a
thread) is checked once."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

# A run of digits with what numbers are written with; each detector of numbers looks
# only around these, never through the prose between them.
_NUMBER = re.compile(r"[0-9][0-9 \t().\-/:+]*")
_DIGIT_CHARS = "0123456789"
#: Deletes the digits (what is left says how many there were).
_DIGITS = str.maketrans("", "", _DIGIT_CHARS)
#: Characters before a run a number may begin with ("+1", "(415", "DE89", "v1.2").
_BEFORE = 4
#: Checks a user's memo keeps (a value and whether it is one), then starts afresh.
MEMO_SIZE = 64


class Memo:
    """One user's checks already made: (category, candidate) -> whether it is a value
    of the category. Bounded; never shared between users."""

    __slots__ = ("_known",)

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], bool] = {}

    def check(self, category: str, candidate: str, check: Callable[[str], bool]) -> bool:
        """``check(candidate)``, made once while the memo holds it."""
        key = (category, candidate)
        known = self._known.get(key)
        if known is None:
            known = check(candidate)
            if len(self._known) >= MEMO_SIZE:
                self._known.clear()
            self._known[key] = known
        return known


class Scan:
    """One text, as the detectors read it."""

    __slots__ = ("_lower", "_numbers", "memo", "text")

    def __init__(self, text: str, memo: Memo) -> None:
        self.text = text
        self.memo = memo
        self._numbers: list[tuple[int, int, int, int]] | None = None
        self._lower: str | None = None

    @property
    def numbers(self) -> list[tuple[int, int, int, int]]:
        """(start, end, run, digits) around each run of digits: from the few characters
        before it a number may begin with to the one after it that ends it, where its
        first digit is, and how many digits it holds."""
        if self._numbers is None:
            if not any(digit in self.text for digit in _DIGIT_CHARS):
                self._numbers = []  # a text of prose alone: no scan at all
                return self._numbers
            size = len(self.text)
            self._numbers = [
                (
                    max(0, m.start() - _BEFORE),
                    min(size, m.end() + 1),
                    m.start(),
                    m.end() - m.start() - len(m.group().translate(_DIGITS)),
                )
                for m in _NUMBER.finditer(self.text)
            ]
        return self._numbers

    def around_numbers(self, pattern: re.Pattern[str], fewest: int = 1) -> Iterator[re.Match[str]]:
        """The matches of ``pattern`` around the text's runs of at least ``fewest``
        digits, each once."""
        text, done = self.text, -1
        for start, end, _, digits in self.numbers:
            if digits < fewest:
                continue
            for match in pattern.finditer(text, max(start, done), end):
                done = match.end()
                yield match

    @property
    def lower(self) -> str:
        """The text in lower case (for patterns that ignore case)."""
        if self._lower is None:
            self._lower = self.text.lower()
        return self._lower

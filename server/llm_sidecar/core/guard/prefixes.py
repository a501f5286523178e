"""The literal text a regular expression's every match begins with, read from its
source: ``ghp_`` of ``(ghp|gho)_[A-Za-z0-9_]{36}``, both ``rk_live_`` and
``sk_live_`` of ``(?:r|s)k_live_...``. A text holding none of a pattern's prefixes
cannot match it, and ``str.__contains__`` says so far faster than the pattern would.
Anything this reader does not follow gives no prefix, and the pattern always runs."""

from __future__ import annotations

_SPECIAL = frozenset(".^$*+?{}[]|()\\")
_QUANTIFIERS = frozenset("*+?{")
#: A shorter prefix would be in most texts: the gate would cost without saving.
_SHORTEST = 2


def literal_prefixes(pattern: str) -> tuple[str, ...]:
    """Every match of ``pattern`` starts with one of these (empty: unknown)."""
    if pattern.startswith("("):
        found = _group(pattern)
    else:
        head, _ = _literal(pattern, 0)
        found = (head,)
    return found if found and all(len(p) >= _SHORTEST for p in found) else ()


def _group(pattern: str) -> tuple[str, ...]:
    """A leading group of alternatives: each one's literal start, and the literal after
    the group when every alternative is a literal whole."""
    start = 3 if pattern.startswith("(?:") else 1
    if pattern.startswith("(?") and start == 1:
        return ()
    end = pattern.find(")", start)
    inner = pattern[start:end]
    if end < 0 or "(" in inner or pattern[end + 1 : end + 2] in _QUANTIFIERS:
        return ()
    heads: list[str] = []
    whole = True
    for alternative in inner.split("|"):
        head, stop = _literal(alternative, 0)
        whole = whole and stop == len(alternative)
        heads.append(head)
    tail = _literal(pattern, end + 1)[0] if whole else ""
    return tuple(head + tail for head in heads)


def _literal(pattern: str, i: int) -> tuple[str, int]:
    """The literal characters from ``i`` (escaped punctuation included), and where they
    stop; a character a quantifier follows is not certain, so it is left out."""
    out: list[str] = []
    while i < len(pattern):
        char = pattern[i]
        step = 1
        if char == "\\":
            following = pattern[i + 1 : i + 2]
            if not following or following.isalnum():
                break
            char, step = following, 2
        elif char in _SPECIAL:
            break
        if pattern[i + step : i + step + 1] in _QUANTIFIERS:
            break
        out.append(char)
        i += step
    return "".join(out), i

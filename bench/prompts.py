"""Prompts as users write them: prose with an address and a phone number in it."""

from __future__ import annotations

_OPENING = (
    "Hello, I need help with my account. My name is Jane and you can reach me at "
    "jane.doe@example.com or on +1 415-555-2671 after five. "
)
_PROSE = (
    "The quarterly report shows steady growth across all regions, and the team "
    "expects the new onboarding flow to reduce support tickets by the end of the year. "
)


def with_values(size: int, tag: str = "") -> str:
    """About ``size`` bytes of prose holding one address and one phone number, then
    ``tag`` (which makes each request a cache miss)."""
    text = _OPENING
    while len(text) < size - len(tag) - 1:
        text += _PROSE
    return text[: max(size - len(tag) - 1, len(_OPENING))] + " " + tag

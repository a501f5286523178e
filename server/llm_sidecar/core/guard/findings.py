"""The guard's vocabulary: what a detector reports, and what is done about it."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from llm_sidecar.core.guard.scan import Scan

#: The built-in categories, as configuration, metrics and placeholders name them.
EMAIL = "email"
PHONE = "phone"
CREDIT_CARD = "credit_card"
IBAN = "iban"
NATIONAL_ID = "national_id"
IP_ADDRESS = "ip_address"
SECRET = "secret"  # noqa: S105 (a category's name)
BUILT_IN = (EMAIL, PHONE, CREDIT_CARD, IBAN, NATIONAL_ID, IP_ADDRESS, SECRET)


class Action(enum.Enum):
    """What happens to a value of a category."""

    #: Sent as it is.
    ALLOW = "allow"
    #: Replaced by ``[EMAIL]`` for good: nobody gets it back.
    MASK = "mask"
    #: Replaced by ``<EMAIL_1>``, restored in the answer for its owner.
    PSEUDONYMIZE = "pseudonymize"
    #: The call is refused, naming the category and the place; nothing goes upstream.
    BLOCK = "block"


@dataclass(frozen=True, slots=True)
class Finding:
    """One detected value: where it is in the text, and its category."""

    start: int
    end: int
    category: str


class Detector(Protocol):
    """Finds the values of one category in a text."""

    category: str

    def find(self, scan: Scan) -> list[Finding]:
        """Every value of the category in the scanned text, in any order; may overlap
        other categories' findings."""

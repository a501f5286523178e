"""The built-in detectors of personal data. Each finds candidates with a cheap regular
expression and lets a library that is made for the job decide: ``email-validator``
for addresses, ``phonenumbers`` for phone numbers, ``python-stdnum`` for checksums
(Luhn, IBAN, national identifiers), :mod:`ipaddress` for addresses. A candidate the
library refuses stays in the text: an order number that fails Luhn is not a card."""

from __future__ import annotations

import importlib
import ipaddress
import re
import string
from collections.abc import Callable, Iterable
from types import ModuleType

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from stdnum import iban, luhn

from llm_sidecar.core.guard.findings import (
    CREDIT_CARD,
    EMAIL,
    IBAN,
    IP_ADDRESS,
    NATIONAL_ID,
    PHONE,
    Finding,
)

# A domain after an "@": searched from the "@" only, so text without one costs a scan.
_DOMAIN = re.compile(r"@[\w\-]+(?:\.[\w\-]+)+")
_LOCAL_CHARS = frozenset(string.ascii_letters + string.digits + ".!#$%&'*+-/=?^_`{|}~")
_MAX_LOCAL = 64


class EmailDetector:
    """Addresses that ``email-validator`` accepts (syntax only: no DNS lookup)."""

    category = EMAIL

    def find(self, text: str) -> list[Finding]:
        if "@" not in text:
            return []
        found: list[Finding] = []
        for match in _DOMAIN.finditer(text):
            start = at = match.start()
            while start > 0 and at - start < _MAX_LOCAL and text[start - 1] in _LOCAL_CHARS:
                start -= 1
            if start == at:
                continue
            try:
                validate_email(text[start : match.end()], check_deliverability=False)
            except EmailNotValidError:
                continue
            found.append(Finding(start, match.end(), EMAIL))
        return found


# A run that may be a phone number: digits with the separators people write.
# (Each pattern starts with its first character and looks behind only after it: a
# leading look-behind would cost a full scan of every text.)
_PHONE = re.compile(r"[+(\d](?<![\w+][+(\d])\(?\d?[\d \t().\-/]{5,20}\d(?!\w)")
# E.164: at most 15 digits; fewer than 7 is no number anywhere.
_PHONE_DIGITS = range(7, 16)


class PhoneDetector:
    """Numbers that ``phonenumbers`` parses as valid: with a ``+`` country code, or
    national numbers of the configured regions."""

    category = PHONE

    def __init__(self, regions: Iterable[str] = ("US",)) -> None:
        self.regions = tuple(regions)

    def find(self, text: str) -> list[Finding]:
        found: list[Finding] = []
        for match in _PHONE.finditer(text):
            candidate = match.group()
            if sum(c.isdigit() for c in candidate) in _PHONE_DIGITS and self._valid(candidate):
                found.append(Finding(match.start(), match.end(), PHONE))
        return found

    def _valid(self, candidate: str) -> bool:
        for region in self.regions if not candidate.startswith("+") else (None,):
            try:
                number = phonenumbers.parse(candidate, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(number):
                return True
        return False


# 13 to 19 digits as cards are written: whole, in fours (the last group shorter or
# longer), or 4-6-5; never digits of neighbouring numbers run together.
_CARD = re.compile(
    r"\d(?<![\w\-+]\d)(?:\d{12,18}|\d{3}( ?)\d{6}\1\d{5}|\d{3}([ \-])\d{4}\2\d{4}\2\d{1,7})"
    r"(?![\w\-])"
)


class CardDetector:
    """Payment card numbers: 13 to 19 digits that pass the Luhn check, written whole,
    in groups of four, or 4-6-5."""

    category = CREDIT_CARD

    def find(self, text: str) -> list[Finding]:
        found: list[Finding] = []
        for match in _CARD.finditer(text):
            digits = match.group().replace(" ", "").replace("-", "")
            if luhn.is_valid(digits):
                found.append(Finding(match.start(), match.end(), CREDIT_CARD))
        return found


_IBAN = re.compile(r"[A-Z](?<!\w[A-Z])[A-Z]\d{2}(?: ?[A-Z0-9]){11,30}\b")


class IbanDetector:
    """IBANs whose country format and check digits ``stdnum.iban`` accepts, written
    whole or in groups of four."""

    category = IBAN

    def find(self, text: str) -> list[Finding]:
        found: list[Finding] = []
        for match in _IBAN.finditer(text):
            candidate = match.group()
            # A word of capitals after the number may have been taken in: drop groups
            # from the end until the rest is valid.
            while len(candidate) >= 15:
                if iban.is_valid(candidate):
                    found.append(Finding(match.start(), match.start() + len(candidate), IBAN))
                    break
                cut = candidate.rfind(" ")
                if cut < 0:
                    break
                candidate = candidate[:cut]
        return found


# How some identifiers are written, where a bare run of digits would be too common to
# take for one (a nine-digit order number is not a US SSN).
_SHAPES = {"us.ssn": r"\d(?<![\w\-]\d)\d\d-\d\d-\d{4}(?![\w\-])"}
_ID_TOKEN = r"\w(?<![\w\-./]\w)(?:\w|[\-./](?=\w)){5,24}(?![\w\-])"  # noqa: S105


class NationalIdDetector:
    """National identifiers of the configured ``python-stdnum`` modules (``us.ssn``,
    ``gb.nino``, ``de.idnr``, ...), each checked by its module's own ``is_valid``."""

    category = NATIONAL_ID

    def __init__(self, modules: Iterable[str] = ("us.ssn",)) -> None:
        self._checks: list[tuple[re.Pattern[str], ModuleType]] = [
            (re.compile(_SHAPES.get(name, _ID_TOKEN)), load_stdnum(name)) for name in modules
        ]

    def find(self, text: str) -> list[Finding]:
        found: list[Finding] = []
        for shape, module in self._checks:
            for match in shape.finditer(text):
                value = match.group()
                if sum(c.isdigit() for c in value) >= 4 and module.is_valid(value):
                    found.append(Finding(match.start(), match.end(), NATIONAL_ID))
        return found


def load_stdnum(name: str) -> ModuleType:
    """The ``python-stdnum`` module of an identifier (``us.ssn``); ValueError when it
    has none that validates."""
    try:
        module = importlib.import_module(f"stdnum.{name}")
    except ImportError:
        raise ValueError(f"python-stdnum has no module {name!r}") from None
    if not callable(getattr(module, "is_valid", None)):
        raise ValueError(f"stdnum.{name} has no is_valid check")
    return module


_IPV4 = re.compile(r"\d(?<![\w.]\d)\d{0,2}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\w]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
# "version 1.2.3.4" is a version, not an address.
_VERSION_BEFORE = re.compile(r"(?i)\b(?:version|release|build|ver|v)\.?\s*$")


class IpAddressDetector:
    """IPv4 and IPv6 addresses that :mod:`ipaddress` parses; a dotted quad after
    "version", "release", "build" or "v" is a version number."""

    category = IP_ADDRESS

    def find(self, text: str) -> list[Finding]:
        found: list[Finding] = []
        if "." in text:
            for match in _IPV4.finditer(text):
                before = text[max(0, match.start() - 12) : match.start()]
                if _VERSION_BEFORE.search(before) is None and _parses(match.group()):
                    found.append(Finding(match.start(), match.end(), IP_ADDRESS))
        if "::" in text or text.count(":") >= 7:
            for match in _IPV6.finditer(text):
                value = match.group()
                if sum(c != ":" for c in value) >= 2 and _parses(value):
                    found.append(Finding(match.start(), match.end(), IP_ADDRESS))
        return found


def _parses(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


class PatternDetector:
    """An operator's own category: a regular expression, and optionally a check of
    each match (``package.module:function``, given the matched text)."""

    def __init__(
        self, category: str, pattern: str, check: Callable[[str], bool] | None = None
    ) -> None:
        self.category = category
        self._pattern = re.compile(pattern)
        self._check = check

    def find(self, text: str) -> list[Finding]:
        found: list[Finding] = []
        for match in self._pattern.finditer(text):
            if match.end() > match.start() and (self._check is None or self._check(match.group())):
                found.append(Finding(match.start(), match.end(), self.category))
        return found

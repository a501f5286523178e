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
from llm_sidecar.core.guard.scan import Scan

# A domain after an "@": searched from the "@" only, so text without one costs a scan.
_DOMAIN = re.compile(r"@[\w\-]+(?:\.[\w\-]+)+")
_LOCAL_CHARS = frozenset(string.ascii_letters + string.digits + ".!#$%&'*+-/=?^_`{|}~")
_MAX_LOCAL = 64


class EmailDetector:
    """Addresses that ``email-validator`` accepts (syntax only: no DNS lookup)."""

    category = EMAIL

    def find(self, scan: Scan) -> list[Finding]:
        text = scan.text
        if "@" not in text:
            return []
        found: list[Finding] = []
        for match in _DOMAIN.finditer(text):
            start = at = match.start()
            while start > 0 and at - start < _MAX_LOCAL and text[start - 1] in _LOCAL_CHARS:
                start -= 1
            if start < at and scan.memo.check(EMAIL, text[start : match.end()], _is_email):
                found.append(Finding(start, match.end(), EMAIL))
        return found


def _is_email(candidate: str) -> bool:
    try:
        validate_email(candidate, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


# A run that may be a phone number: digits with the separators people write.
# (Each pattern starts with its first character and looks behind only after it: a
# leading look-behind would cost a full scan of every text.)
_PHONE = re.compile(r"[+(\d](?<![\w+][+(\d])\(?\d?[\d \t().\-/]{5,60}\d(?!\w)")
# E.164: at most 15 digits; fewer than 7 is no number anywhere.
_PHONE_DIGITS = range(7, 16)
#: Numbers tried in one run of digit groups, at most (each try is a library parse,
#: unless the user's memo knows it).
_PHONE_TRIES = 8
_GROUP = re.compile(r"\+?\(?\d+\)?")


class PhoneDetector:
    """Numbers that ``phonenumbers`` parses as valid: with a ``+`` country code, or
    national numbers of the configured regions."""

    category = PHONE

    def __init__(self, regions: Iterable[str] = ("US",)) -> None:
        self.regions = tuple(regions)

    def find(self, scan: Scan) -> list[Finding]:
        found: list[Finding] = []
        for match in scan.around_numbers(_PHONE, _PHONE_DIGITS.start):
            for start, end in self._numbers_in(scan, match.group()):
                found.append(Finding(match.start() + start, match.start() + end, PHONE))
        return found

    def _numbers_in(self, scan: Scan, candidate: str) -> list[tuple[int, int]]:
        """The valid numbers in a run of digit groups, which may hold several numbers
        or other values beside one ("001-01-0001 (201) 555-0000"): from the left, the
        longest span of groups with a phone number's count of digits that is one. A
        span starts where a number does (the run's start, "+", "("), never inside a
        longer number ("DE00 1234 5678 9012 3456 78" holds no phone number), and
        its groups have two digits or more but for the country code and the one after it
        ("+33 6 12 34 56 78"; "1 2 3 4 5 6 7" is none)."""
        groups = [
            (m.start(), m.end(), sum(c.isdigit() for c in m.group()))
            for m in _GROUP.finditer(candidate)
        ]
        out: list[tuple[int, int]] = []
        tries, done = _PHONE_TRIES, 0
        for first, (begin, _, _) in enumerate(groups):
            if first < done or not (first == 0 or candidate[begin] in "+("):
                continue
            last = first
            while last + 1 < len(groups) and (
                groups[last + 1][2] >= 2 or (last == first and candidate[begin] == "+")
            ):
                last += 1
            while last >= first and tries > 0:
                digits = sum(g[2] for g in groups[first : last + 1])
                if digits < _PHONE_DIGITS.start:
                    break
                if digits in _PHONE_DIGITS:
                    tries -= 1
                    span = (begin, groups[last][1])
                    if scan.memo.check(PHONE, candidate[span[0] : span[1]], self._valid):
                        out.append(span)
                        done = last + 1
                        break
                last -= 1
        return out

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

    def find(self, scan: Scan) -> list[Finding]:
        found: list[Finding] = []
        for match in scan.around_numbers(_CARD, 13):
            digits = match.group().replace(" ", "").replace("-", "")
            if luhn.is_valid(digits):
                found.append(Finding(match.start(), match.end(), CREDIT_CARD))
        return found


_IBAN = re.compile(r"(?<!\w)[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")


class IbanDetector:
    """IBANs whose country format and check digits ``stdnum.iban`` accepts, written
    whole or in groups of four."""

    category = IBAN

    def find(self, scan: Scan) -> list[Finding]:
        found: list[Finding] = []
        text, done = scan.text, 0
        for _, _, run, _ in scan.numbers:
            # The check digits are the first run of digits, after the country code.
            match = _IBAN.match(text, run - 2) if run >= max(2, done) else None
            if match is None:
                continue
            candidate = match.group()
            # Words of capitals, or the next IBAN, may have been taken in after the
            # number: drop groups from the end until the rest is valid.
            while len(candidate) >= 15:
                if iban.is_valid(candidate):
                    done = match.start() + len(candidate)
                    found.append(Finding(match.start(), done, IBAN))
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
    ``es.dni``, ``de.idnr``, ...), each checked by its module's own ``is_valid``."""

    category = NATIONAL_ID

    def __init__(self, modules: Iterable[str] = ("us.ssn",)) -> None:
        self._checks: list[tuple[re.Pattern[str], ModuleType]] = [
            (re.compile(_SHAPES.get(name, _ID_TOKEN)), load_stdnum(name)) for name in modules
        ]

    def find(self, scan: Scan) -> list[Finding]:
        found: list[Finding] = []
        for shape, module in self._checks:
            for match in scan.around_numbers(shape, 4):
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

    def find(self, scan: Scan) -> list[Finding]:
        found: list[Finding] = []
        text = scan.text
        if "." in text:
            for match in scan.around_numbers(_IPV4, 4):
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

    def find(self, scan: Scan) -> list[Finding]:
        found: list[Finding] = []
        check = self._check
        for match in self._pattern.finditer(scan.text):
            if match.end() > match.start() and (
                check is None or scan.memo.check(self.category, match.group(), check)
            ):
                found.append(Finding(match.start(), match.end(), self.category))
        return found

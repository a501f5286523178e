"""Values of every guardrail category, as hypothesis strategies, and prompts that embed
them among ordinary words: what a user pastes into a chat."""

from __future__ import annotations

import base64
import ipaddress
import json
from dataclasses import dataclass

import phonenumbers
from hypothesis import strategies as st
from stdnum import iban, luhn
from stdnum.us import ssn

#: Words between the values: no digits, nothing any detector takes. A literal
#: placeholder now and then: the user's own text, which must come back as written.
WORDS = (
    "please",
    "contact",
    "the",
    "customer",
    "about",
    "invoice",
    "tomorrow",
    "thanks,",
    "ref:",
    "café",
    "日本語",
    "(see",
    "below)",
    "<EMAIL_1>",
    "<PHONE_2>",
    "[IBAN]",
)

_LOCAL = st.from_regex(r"[a-z][a-z0-9_+\-]{0,10}(\.[a-z0-9_+\-]{1,8})?", fullmatch=True)
_LABEL = st.from_regex(r"[a-z][a-z0-9]{0,9}(-[a-z0-9]{1,6})?", fullmatch=True)
_TLD = st.sampled_from(["com", "org", "io", "co.uk", "de", "fr", "app"])


@st.composite
def emails(draw: st.DrawFn) -> str:
    return f"{draw(_LOCAL)}@{draw(_LABEL)}.{draw(_TLD)}"


_REGIONS = ("US", "GB", "DE", "FR", "JP", "BR", "IN", "AU")
_FORMATS = (phonenumbers.PhoneNumberFormat.INTERNATIONAL, phonenumbers.PhoneNumberFormat.E164)


@st.composite
def phones(draw: st.DrawFn) -> str:
    """Valid numbers of several regions, written with their country code (and US
    numbers in the national format too, the configured region)."""
    region = draw(st.sampled_from(_REGIONS))
    example = phonenumbers.example_number_for_type(
        region, phonenumbers.PhoneNumberType.MOBILE
    ) or phonenumbers.example_number(region)
    assert example is not None
    national = str(example.national_number)
    tail = draw(st.integers(0, 999))
    number = phonenumbers.parse(f"+{example.country_code}{national[:-3]}{tail:03d}")
    if not phonenumbers.is_valid_number(number):
        number = example
    kind = draw(st.sampled_from(_FORMATS))
    if region == "US" and draw(st.booleans()):
        kind = phonenumbers.PhoneNumberFormat.NATIONAL
    return phonenumbers.format_number(number, kind)


@st.composite
def ibans(draw: st.DrawFn) -> str:
    bban = "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=18, max_size=18)))
    number = f"DE{iban.calc_check_digits('DE00' + bban)}{bban}"
    assert iban.is_valid(number)
    return iban.format(number) if draw(st.booleans()) else number


@st.composite
def ssns(draw: st.DrawFn) -> str:
    area = draw(st.integers(1, 899).filter(lambda a: a != 666))
    value = f"{area:03d}-{draw(st.integers(1, 99)):02d}-{draw(st.integers(1, 9999)):04d}"
    assert ssn.is_valid(value)
    return value


@st.composite
def ip_addresses(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return str(ipaddress.IPv4Address(draw(st.integers(1 << 24, (1 << 32) - 1))))
    groups = draw(st.lists(st.integers(1, 0xFFFF), min_size=8, max_size=8))
    if draw(st.booleans()):
        groups[2:5] = [0, 0, 0]  # written with "::"
    return str(ipaddress.IPv6Address(":".join(f"{g:x}" for g in groups)))


@st.composite
def cards(draw: st.DrawFn) -> str:
    body = "4" + "".join(draw(st.lists(st.sampled_from("0123456789"), min_size=14, max_size=14)))
    number = body + luhn.calc_check_digit(body)
    if draw(st.booleans()):
        return " ".join(number[i : i + 4] for i in range(0, 16, 4))
    return number


_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _run(alphabet: str, size: int) -> st.SearchStrategy[str]:
    return st.text(st.sampled_from(alphabet), min_size=size, max_size=size)


def _jwt(claims: dict[str, str]) -> str:
    def part(value: object) -> str:
        raw = json.dumps(value, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def secrets() -> st.SearchStrategy[str]:
    """Keys of the shapes detect-secrets publishes, private-key blocks and JWTs."""
    upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    block = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA{}\n-----END RSA PRIVATE KEY-----"
    return st.one_of(
        _run(upper, 16).map(lambda s: "AKIA" + s),
        _run(_ALNUM, 36).map(lambda s: "ghp_" + s),
        _run(_ALNUM, 24).map(lambda s: "sk_live_" + s),
        _run(_ALNUM, 30).map(block.format),
        _run("abcdefghij", 8).map(lambda s: _jwt({"sub": s})),
    )


@dataclass(frozen=True)
class Piece:
    """One part of a prompt: a word, or a value of ``category``."""

    text: str
    category: str = ""


#: The categories a prompt may carry and still go upstream (the rest are blocked).
PASSING = {
    "email": emails(),
    "phone": phones(),
    "iban": ibans(),
    "national_id": ssns(),
    "ip_address": ip_addresses(),
}
BLOCKED = {"credit_card": cards(), "secret": secrets()}


@st.composite
def prompts(draw: st.DrawFn, categories: dict[str, st.SearchStrategy[str]]) -> list[Piece]:
    """Words with values of ``categories`` among them, at least one value."""
    names = sorted(categories)
    pieces: list[Piece] = []
    for _ in range(draw(st.integers(1, 5))):
        pieces.extend(Piece(w) for w in draw(st.lists(st.sampled_from(WORDS), max_size=4)))
        name = draw(st.sampled_from(names))
        pieces.append(Piece(draw(categories[name]), name))
    pieces.extend(Piece(w) for w in draw(st.lists(st.sampled_from(WORDS), max_size=3)))
    return pieces


def written(pieces: list[Piece]) -> str:
    """The prompt as the user wrote it."""
    return " ".join(piece.text for piece in pieces)


def expected(pieces: list[Piece], masked: frozenset[str]) -> str:
    """The prompt as an echo of it comes back: masked categories as ``[LABEL]``, the
    rest restored as written."""
    return " ".join(f"[{p.category.upper()}]" if p.category in masked else p.text for p in pieces)

"""Secrets in text: the key shapes ``detect-secrets`` publishes (its plugins' own
patterns, so a new release brings its fixes), whole private-key blocks, and JWTs that
its JWT plugin finds well formed.

Only the plugins that recognise a key by its shape are used; the ones that look for a
keyword near any long string ("password = ...") would take ordinary prose for
secrets, and they are left to code scanners, which is what they are made for.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import ahocorasick
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector

from llm_sidecar.core.guard.findings import SECRET, Finding
from llm_sidecar.core.guard.prefixes import literal_prefixes
from llm_sidecar.core.guard.scan import Scan

_PLUGINS = (
    AWSKeyDetector,
    AzureStorageKeyDetector,
    BasicAuthDetector,
    GitHubTokenDetector,
    GitLabTokenDetector,
    OpenAIDetector,
    PypiTokenDetector,
    SendGridDetector,
    SlackDetector,
    SquareOAuthDetector,
    StripeDetector,
    TwilioKeyDetector,
)
# Keys of the two providers this sidecar speaks to most, which detect-secrets 1.5 has
# no plugin for, in their published shapes.
_EXTRA = (
    re.compile(r"sk-ant-(?:api|admin)\d\d-[A-Za-z0-9_\-]{80,}"),
    re.compile(r"AIza[0-9A-Za-z_\-]{35}"),
)
_KEY, _JWT, _BLOCK = "key", "jwt", "block"
_KEY_BLOCK_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")


def _patterns() -> tuple[re.Pattern[str], ...]:
    found: list[re.Pattern[str]] = []
    for plugin in _PLUGINS:
        found.extend(plugin().denylist)
    return (*found, *_EXTRA)


class SecretDetector:
    """API keys and tokens by their published shapes, private-key blocks and JWTs."""

    category = SECRET

    def __init__(self) -> None:
        jwt, headers = JwtTokenDetector().denylist, PrivateKeyDetector().denylist
        #: Each pattern with the literal text its matches begin with, and what a match
        #: of it is (a key, a JWT to check, the header of a private-key block).
        self._patterns = [
            *((pattern, literal_prefixes(pattern.pattern), _KEY) for pattern in _patterns()),
            *((pattern, literal_prefixes(pattern.pattern), _JWT) for pattern in jwt),
            *((pattern, literal_prefixes(pattern.pattern), _BLOCK) for pattern in headers),
        ]
        # One pass for every prefix at once (Aho-Corasick, in C) over the lower-case
        # text: a superset of what the patterns take, which then decide. Most texts
        # hold none of them, and are done after it.
        self._always = [i for i, (_, found, _) in enumerate(self._patterns) if not found]
        self._gate = ahocorasick.Automaton()
        by_prefix: dict[str, set[int]] = {}
        for index, (_, found, _) in enumerate(self._patterns):
            for prefix in found:
                by_prefix.setdefault(prefix.lower(), set()).add(index)
        for prefix, indices in by_prefix.items():
            self._gate.add_word(prefix, frozenset(indices))
        self._gate.make_automaton()

    def find(self, scan: Scan) -> list[Finding]:
        chosen = set(self._always)
        for _, indices in self._gate.iter(scan.lower):
            chosen.update(indices)
        if not chosen:
            return []
        text = scan.text
        return [
            Finding(start, end, SECRET)
            for index in sorted(chosen)
            for start, end in self._spans(text, *self._patterns[index])
        ]

    def _spans(
        self, text: str, pattern: re.Pattern[str], _: object, kind: str
    ) -> Iterator[tuple[int, int]]:
        for match in pattern.finditer(text):
            if kind is _BLOCK:
                yield self._key_block(text, match)
            elif kind is _KEY:
                # A group inside the match holds the secret (the password of a URL's
                # user info); one at its start is a prefix of the key.
                group = match.lastindex or 0
                inside = group and match.start(group) > match.start()
                yield match.span(group if inside else 0)
            elif JwtTokenDetector.is_formally_valid(match.group()):
                yield match.span()

    @staticmethod
    def _key_block(text: str, header: re.Match[str]) -> tuple[int, int]:
        """A private key from its BEGIN line to its END line (to the end of the text
        when it was cut off: the part pasted is secret too)."""
        start = text.rfind("-----", 0, header.start())
        start = start if start >= 0 and header.start() - start <= 5 else header.start()
        end = _KEY_BLOCK_END.search(text, header.end())
        return start, end.end() if end is not None else len(text)

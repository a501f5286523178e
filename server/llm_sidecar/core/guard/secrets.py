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
        self._patterns = _patterns()
        self._jwt = tuple(JwtTokenDetector().denylist)
        self._key_headers = tuple(PrivateKeyDetector().denylist)

    def find(self, text: str) -> list[Finding]:
        found = [Finding(start, end, SECRET) for start, end in self._spans(text)]
        return found

    def _spans(self, text: str) -> Iterator[tuple[int, int]]:
        for pattern in self._patterns:
            for match in pattern.finditer(text):
                # A group inside the match holds the secret (the password of a URL's
                # user info); one at its start is a prefix of the key itself.
                group = match.lastindex or 0
                inside = group and match.start(group) > match.start()
                yield match.span(group if inside else 0)
        if "eyJ" in text:
            for pattern in self._jwt:
                for match in pattern.finditer(text):
                    if JwtTokenDetector.is_formally_valid(match.group()):
                        yield match.span()
        if "PRIVATE KEY" in text or "PuTTY" in text:
            yield from self._key_blocks(text)

    def _key_blocks(self, text: str) -> Iterator[tuple[int, int]]:
        """A private key from its BEGIN line to its END line (to the end of the text
        when it was cut off: the part pasted is secret too)."""
        for pattern in self._key_headers:
            for match in pattern.finditer(text):
                start = text.rfind("-----", 0, match.start())
                start = start if start >= 0 and match.start() - start <= 5 else match.start()
                end = _KEY_BLOCK_END.search(text, match.end())
                yield start, end.end() if end is not None else len(text)

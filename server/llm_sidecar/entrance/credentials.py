"""The sidecar's token, one rule for every wire: ``authorization: Bearer <token>``, the
scheme in any case (RFC 6750 and RFC 7235), or ``x-api-key: <token>`` (what the
Anthropic SDK sends). Compared in constant time; never logged or echoed."""

from __future__ import annotations

import hmac

from llm_sidecar.core.vocabulary.errors import InvalidContextError
from llm_sidecar.entrance.incoming import AUTHORIZATION_KEY, Incoming


def check_token(incoming: Incoming, token: str) -> None:
    """Raise UNAUTHENTICATED unless the call presents ``token``."""
    presented = incoming.api_key or ""
    scheme, _, bearer = (incoming.authorization or "").partition(" ")
    if scheme.lower() == "bearer" and bearer:
        presented = bearer
    if not presented or not hmac.compare_digest(
        presented.encode("utf-8", "replace"), token.encode("utf-8")
    ):
        raise InvalidContextError(
            AUTHORIZATION_KEY,
            "must carry the sidecar's token ('Bearer <token>', or x-api-key)",
            missing=True,
        )

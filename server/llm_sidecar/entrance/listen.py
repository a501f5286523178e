"""What a listener that cannot bind says, on every wire."""

from __future__ import annotations


class ListenError(Exception):
    """A listener could not be bound; the message names the address, why, and the
    setting that moves it."""

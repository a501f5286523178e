"""Redis key layout. Every id is hashed, so no id can address another user's keys.

    {prefix}:{<user digest>}:c:<session digest>:<thread digest>   list of messages
    {prefix}:{<user digest>}:s:<session digest>                   set of thread keys
    {prefix}:{<user digest>}:usage                                 hash of counters
    {prefix}:{<user digest>}:r:<write id>                          write applied (replay guard)
    {prefix}:{<user digest>}:q:<quota>:<window>                    hash: committed, reserved
    {prefix}:{<user digest>}:qh  /  :qe                            reservations held / expiries
    {prefix}:{<user digest>}:p:<response id digest>                a stored response
    {prefix}:{<user digest>}:ps:<session digest>                   set of a session's responses

The user digest sits in a hash tag, so all of one user's keys live in one
Redis Cluster slot and the Lua scripts may touch them together. The digests
are BLAKE2b of the raw id (keyed by the prefix), so colons, ``*``, spaces,
unicode or huge ids all become 32 hex characters.
"""

from __future__ import annotations

from hashlib import blake2b

#: How long a marker of an applied write (or settled reservation) lives: longer than
#: any outage whose queued writes are still replayed (the queue lives in the process).
MARKER_TTL_MS = 6 * 3600 * 1000


def digest(value: str, *, salt: str) -> str:
    """A fixed-length hex digest of an id."""
    return blake2b(value.encode("utf-8"), digest_size=16, key=salt.encode("utf-8")[:64]).hexdigest()


class UserKeys:
    """Key names of one user."""

    __slots__ = ("_base", "_salt")

    def __init__(self, prefix: str, user_id: str) -> None:
        self._salt = prefix
        self._base = f"{prefix}:{{{digest(user_id, salt=prefix)}}}"

    @property
    def base(self) -> str:
        return self._base

    def thread(self, session_id: str, thread_id: str) -> str:
        s = digest(session_id, salt=self._salt)
        t = digest(thread_id, salt=self._salt)
        return f"{self._base}:c:{s}:{t}"

    def session(self, session_id: str) -> str:
        return f"{self._base}:s:{digest(session_id, salt=self._salt)}"

    @property
    def usage(self) -> str:
        return f"{self._base}:usage"

    def record(self, record_id: str) -> str:
        """Marker of one applied write (``record_id`` is ours: hex)."""
        return f"{self._base}:r:{record_id}"

    def quota_window(self, key: str) -> str:
        """One quota window (``key`` is ours: a quota name and a window id)."""
        return f"{self._base}:q:{key}"

    def response(self, response_id: str) -> str:
        """One stored response: under the user's own digest, so another user's id names
        a key this user never has."""
        return f"{self._base}:p:{digest(response_id, salt=self._salt)}"

    def response_session(self, session_id: str) -> str:
        """The set of the keys of the responses made in one session."""
        return f"{self._base}:ps:{digest(session_id, salt=self._salt)}"

    @property
    def quota_held(self) -> str:
        return f"{self._base}:qh"

    @property
    def quota_expiry(self) -> str:
        return f"{self._base}:qe"

"""Redis adapters: the per-user state store behind the core interfaces.

``backend`` holds the connection, health and replay queue; ``scripts`` the
Lua; ``codec`` the value formats; ``keys`` the key layout; ``turns`` the one
writer of a user's state; ``conversations`` and ``usage`` the read views.
"""

from llm_sidecar.stores.redis.backend import RedisBackend
from llm_sidecar.stores.redis.store import RedisStateStore

__all__ = ["RedisBackend", "RedisStateStore"]

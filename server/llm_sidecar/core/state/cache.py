"""Bounded response caches: one per user, plus a process-wide byte budget.

Each :class:`UserCache` belongs to exactly one manager and is an LRU bounded
by entries and bytes, with a TTL per entry. The :class:`CacheBudget` keeps the
sum over all users under one limit by evicting the globally least recently
used entries; it holds only opaque digests and per-cache serial numbers, never
a user id or any content.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from llm_sidecar.core.vocabulary.models import CachedAnswer, CachedVector

# Cost of one entry beyond its text: the 64-character key, the OrderedDict nodes
# in the user cache and in the budget, the entry, answer and Completion objects.
# Measured with tracemalloc by `make bench` (bench_resources): 367 bytes.
ENTRY_OVERHEAD_BYTES = 384

_serials = itertools.count(1)


#: What a cache holds: a chat answer, or one embedded text's vector.
Cached = CachedAnswer | CachedVector


def entry_size(answer: Cached) -> int:
    """Bytes an entry costs, as accounted against the limits."""
    if isinstance(answer, CachedVector):
        return ENTRY_OVERHEAD_BYTES + sys.getsizeof(answer.vector)
    size = ENTRY_OVERHEAD_BYTES + sys.getsizeof(answer.completion.text)
    if answer.structured_json is not None:
        size += sys.getsizeof(answer.structured_json)
    return size


@dataclass(slots=True)
class _Entry:
    answer: Cached
    expires_at: float
    size: int


@dataclass(frozen=True, slots=True)
class CacheLimits:
    """Per-user cache bounds."""

    enabled: bool = True
    max_entries: int = 256
    max_bytes: int = 4 * 1024 * 1024
    ttl_seconds: float = 3600.0


DEFAULT_CACHE_LIMITS = CacheLimits()


class CacheBudget:
    """Process-wide byte budget over every user cache."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._order: OrderedDict[tuple[int, str], UserCache] = OrderedDict()
        self.bytes = 0
        self.evictions = 0
        #: False in degraded mode: no new entries anywhere.
        self.admitting = True

    @property
    def entries(self) -> int:
        """Entries live across all users."""
        return len(self._order)

    def _touch(self, cache: UserCache, key: str) -> None:
        self._order.move_to_end((cache.serial, key))

    def _added(self, cache: UserCache, key: str, size: int) -> None:
        self._order[(cache.serial, key)] = cache
        self.bytes += size
        while self.bytes > self.max_bytes and self._order:
            (_, victim_key), victim = self._order.popitem(last=False)
            victim._evict_for_budget(victim_key)
            self.evictions += 1

    def _removed(self, cache: UserCache, key: str, size: int) -> None:
        self._order.pop((cache.serial, key), None)
        self.bytes -= size

    def _released(self, size: int) -> None:
        # The budget's own index entry is already gone (popped by _added).
        self.bytes -= size


class UserCache:
    """LRU + TTL cache of one user's answers."""

    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        ttl_seconds: float,
        budget: CacheBudget,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.serial = next(_serials)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds
        self._budget = budget
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.evictions = 0
        self._closed = False

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Cached | None:
        """Return the live entry for ``key`` and mark it recently used."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        self._budget._touch(self, key)
        self.hits += 1
        return entry.answer

    def contains(self, key: str) -> bool:
        """Whether a live entry exists, without counting a hit or touching LRU order."""
        entry = self._entries.get(key)
        return entry is not None and entry.expires_at > self._clock()

    def put(self, key: str, answer: Cached) -> bool:
        """Store an answer; False when it was not admitted."""
        if self._closed or not self._budget.admitting:
            return False
        size = entry_size(answer)
        if size > self.max_bytes or self.max_entries <= 0:
            return False
        if key in self._entries:
            self._remove(key)
        self._entries[key] = _Entry(answer, self._clock() + self.ttl_seconds, size)
        self.bytes += size
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._remove(oldest)
            self.evictions += 1
        self._budget._added(self, key, size)
        return True

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key)
        self.bytes -= entry.size
        self._budget._removed(self, key, entry.size)

    def _evict_for_budget(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.bytes -= entry.size
            self.evictions += 1
            self._budget._released(entry.size)

    def remove_session(self, session_id: str) -> int:
        """Drop every entry made in ``session_id``; return how many."""
        doomed = [k for k, e in self._entries.items() if e.answer.session_id == session_id]
        for key in doomed:
            self._remove(key)
        return len(doomed)

    def sweep_expired(self) -> int:
        """Drop expired entries; return how many."""
        now = self._clock()
        doomed = [k for k, e in self._entries.items() if e.expires_at <= now]
        for key in doomed:
            self._remove(key)
        return len(doomed)

    def trim(self, keep_fraction: float) -> int:
        """Evict the least recently used entries until ``keep_fraction`` remain."""
        target = int(len(self._entries) * keep_fraction)
        removed = 0
        while len(self._entries) > target:
            self._remove(next(iter(self._entries)))
            removed += 1
        self.evictions += removed
        return removed

    def clear(self) -> int:
        """Drop everything; return how many entries were dropped."""
        count = len(self._entries)
        for key in list(self._entries):
            self._remove(key)
        return count

    def close(self) -> int:
        """Clear and refuse further entries (the owning manager was released)."""
        self._closed = True
        return self.clear()

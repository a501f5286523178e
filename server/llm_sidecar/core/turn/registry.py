"""The manager factory and the registry that keeps one manager per user."""

from __future__ import annotations

import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from llm_sidecar.core.admission.billing import Billing
from llm_sidecar.core.admission.limits import DEFAULT_USER_LIMITS, UserLimiter, UserLimits
from llm_sidecar.core.guard.policy import Guard
from llm_sidecar.core.observability import NOOP, Observability
from llm_sidecar.core.routing.router import Router
from llm_sidecar.core.state.cache import DEFAULT_CACHE_LIMITS, CacheBudget, CacheLimits, UserCache
from llm_sidecar.core.state.store import StateStore
from llm_sidecar.core.turn.manager import LLMManager
from llm_sidecar.core.vocabulary.context import UserExecutionContext
from llm_sidecar.core.vocabulary.errors import IsolationViolationError, ResourceExhaustedError

DEFAULT_MAX_MANAGERS = 10_000
DEFAULT_IDLE_TTL_SECONDS = 1800.0


class LLMManagerFactory:
    """Builds a fresh, fully isolated manager from a user context."""

    def __init__(
        self,
        *,
        router: Router,
        budget: CacheBudget,
        state: StateStore,
        cache_limits: CacheLimits = DEFAULT_CACHE_LIMITS,
        user_limits: UserLimits = DEFAULT_USER_LIMITS,
        billing: Billing | None = None,
        observability: Observability = NOOP,
        guard: Guard | None = None,
    ) -> None:
        self.router = router
        self.billing = billing or Billing(observability=observability)
        self.budget = budget
        self.state = state
        self.cache_limits = cache_limits
        self.user_limits = user_limits
        self.observability = observability
        #: The guardrails every manager's calls pass through (None: none configured).
        self.guard = guard

    def create_llm_manager(self, context: UserExecutionContext) -> LLMManager:
        """A new manager owning a new cache, limiter and view of the user's state."""
        limits = self.cache_limits
        return LLMManager(
            context,
            router=self.router,
            cache=UserCache(
                max_entries=limits.max_entries,
                max_bytes=limits.max_bytes,
                ttl_seconds=limits.ttl_seconds,
                budget=self.budget,
            ),
            state=self.state.for_user(context.user_id),
            limiter=UserLimiter(self.user_limits),
            billing=self.billing,
            cache_enabled=limits.enabled,
            observability=self.observability,
            response_bounds=self.state.memory.response_bounds,
            guard=self.guard,
        )

    __call__ = create_llm_manager


class ManagerRegistry:
    """Exactly one manager per user id, bounded in number and idle time."""

    def __init__(
        self,
        factory: Callable[[UserExecutionContext], LLMManager],
        *,
        max_managers: int = DEFAULT_MAX_MANAGERS,
        idle_ttl_seconds: float = DEFAULT_IDLE_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = factory
        self.max_managers = max_managers
        self.idle_ttl_seconds = idle_ttl_seconds
        self._clock = clock
        self._managers: OrderedDict[str, LLMManager] = OrderedDict()
        #: False in degraded mode: existing users are served, new ones refused.
        self.admitting_new = True
        self.created = 0
        self.released = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._managers)

    def __iter__(self) -> Iterator[LLMManager]:
        return iter(list(self._managers.values()))

    @property
    def in_flight(self) -> int:
        """Requests being answered now, over all users (summed when read, so the request
        path keeps no process-wide counter)."""
        return sum(manager.in_flight for manager in self._managers.values())

    def get(self, user_id: str) -> LLMManager | None:
        """The live manager of ``user_id``, if any."""
        return self._managers.get(user_id)

    def get_or_create(self, context: UserExecutionContext) -> LLMManager:
        """The manager of the context's user, created on first use."""
        manager = self._managers.get(context.user_id)
        if manager is not None:
            self._managers.move_to_end(context.user_id)
            return manager
        if not self.admitting_new:
            raise ResourceExhaustedError(
                "the sidecar is under resource pressure and admits no new users now",
                retry_after=5.0,
                limit="degraded_mode",
            )
        if len(self._managers) >= self.max_managers:
            self._evict_one_for_room()
        manager = self._factory(context)
        if manager.user_id != context.user_id:
            raise IsolationViolationError("the factory built a manager for another user")
        self._managers[context.user_id] = manager
        self.created += 1
        return manager

    def _evict_one_for_room(self) -> None:
        for user_id, manager in self._managers.items():
            if manager.in_flight == 0:
                del self._managers[user_id]
                manager.close()
                self.evicted += 1
                return
        raise ResourceExhaustedError(
            f"all {self.max_managers} manager slots are busy", retry_after=1.0, limit="max_managers"
        )

    async def release(self, user_id: str) -> int | None:
        """Drop the user's manager; cache entries freed, or None if there was none."""
        manager = self._managers.pop(user_id, None)
        if manager is None:
            return None
        self.released += 1
        return manager.close()

    async def evict_idle(self) -> int:
        """Release managers idle longer than the TTL with nothing in flight."""
        horizon = self._clock() - self.idle_ttl_seconds
        doomed = [
            uid for uid, m in self._managers.items() if m.last_used < horizon and m.in_flight == 0
        ]
        for user_id in doomed:
            self._managers.pop(user_id).close()
        self.evicted += len(doomed)
        return len(doomed)

    def close_all(self) -> None:
        """Release every manager."""
        managers = list(self._managers.values())
        self._managers.clear()
        for manager in managers:
            manager.close()


class _LegacyManager:
    """What the deprecated process-wide accessor returns: a manager of nobody."""

    user_id = ""

    def is_cached(self, *_: Any, **__: Any) -> bool:
        return False

    def conversation(self, *_: Any, **__: Any) -> list[Any]:
        return []

    def usage(self, *_: Any, **__: Any) -> list[Any]:
        return []

    def ask(self, *_: Any, **__: Any) -> Any:
        raise IsolationViolationError(
            "the process-wide LLM manager is gone: build one per user with "
            "create_llm_manager(context)"
        )


def get_llm_manager() -> _LegacyManager:
    """Deprecated process-wide accessor, kept only so old imports fail loudly.

    It returns an object bound to no user, holding no data: it can never see
    any user's cache, history or usage, and asking through it raises.
    """
    warnings.warn(
        "get_llm_manager() is deprecated: a shared manager would mix users' data; "
        "use LLMManagerFactory.create_llm_manager(context) per user",
        DeprecationWarning,
        stacklevel=2,
    )
    return _LegacyManager()

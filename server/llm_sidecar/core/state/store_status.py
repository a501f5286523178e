"""How the shared state store is doing, as the service and operators see it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

StoreState = Literal["memory", "up", "degraded", "down"]


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """``memory``: no shared store; ``up``; ``degraded``: unreachable or replaying,
    served from memory; ``down``: unreachable and durability required."""

    state: StoreState
    pending_writes: int = 0
    dropped_writes: int = 0
    replayed_writes: int = 0

    @property
    def serving(self) -> bool:
        """Whether the store holds everything written so far."""
        return self.state in ("memory", "up")


MEMORY_ONLY = StoreStatus("memory")


class StoreHealth(Protocol):
    """A shared store that can be checked and reported on."""

    def status(self) -> StoreStatus:
        """The current figures, without I/O."""
        ...

    async def check(self) -> StoreStatus:
        """Ask the store now (a round trip) and return the new figures."""
        ...

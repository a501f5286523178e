"""Every open upstream session, one per (user, user session, server), never shared.

MCP servers keep state per session, so two users (or one user's two sessions) never
share one. The table is bounded: at ``max_sessions`` the least recently used idle
session closes to make room, idle ones close after ``session_idle_seconds``, a user's
session's close on EndSession, and all close at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable

from llm_sidecar.core.tools.policy import ToolLimits
from llm_sidecar.core.vocabulary.errors import ResourceExhaustedError
from llm_sidecar.mcp_gateway.servers import ToolServer
from llm_sidecar.mcp_gateway.upstream import UpstreamSession

#: (user id, the user's session id or "", server name).
SessionKey = tuple[str, str, str]


class SessionTable:
    """See the module."""

    def __init__(self, limits: ToolLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._sessions: OrderedDict[SessionKey, UpstreamSession] = OrderedDict()
        #: Opens in progress, so concurrent first calls of one key open one session.
        self._opening: dict[SessionKey, asyncio.Future[UpstreamSession]] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    @contextlib.asynccontextmanager
    async def use(
        self, key: SessionKey, server: ToolServer, headers: dict[str, str], credential: str
    ) -> AsyncIterator[UpstreamSession]:
        """The key's session (opened on first use) for one request; a session the request
        finds broken is dropped, so the next request opens a new one."""
        session = await self._get(key, server, headers, credential)
        session.in_flight += 1
        try:
            yield session
        finally:
            session.in_flight -= 1
            session.last_used = self._clock()
            if not session.alive and self._sessions.get(key) is session:
                del self._sessions[key]
                await session.aclose()

    async def _get(
        self, key: SessionKey, server: ToolServer, headers: dict[str, str], credential: str
    ) -> UpstreamSession:
        session = self._sessions.get(key)
        if session is not None:
            if session.alive and session.credential == credential:
                self._sessions.move_to_end(key)
                return session
            # Another token for this user and server: never reuse the old one's session.
            del self._sessions[key]
            await session.aclose()
        pending = self._opening.get(key)
        if pending is not None:
            found = await asyncio.shield(pending)
            if found.credential == credential:
                return found
            return await self._get(key, server, headers, credential)
        return await self._open(key, server, headers, credential)

    async def _open(
        self, key: SessionKey, server: ToolServer, headers: dict[str, str], credential: str
    ) -> UpstreamSession:
        await self._make_room()
        future: asyncio.Future[UpstreamSession] = asyncio.get_running_loop().create_future()
        self._opening[key] = future
        session = UpstreamSession(server, headers, credential, self.limits.max_result_bytes)
        try:
            await session.open()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters get it, nobody else needs to
            raise
        finally:
            del self._opening[key]
        self._sessions[key] = session
        future.set_result(session)
        return session

    async def _make_room(self) -> None:
        if len(self._sessions) + len(self._opening) < self.limits.max_sessions:
            return
        for key, session in self._sessions.items():
            if session.in_flight == 0:
                del self._sessions[key]
                await session.aclose()
                return
        raise ResourceExhaustedError(
            f"every one of the {self.limits.max_sessions} MCP sessions (mcp.max_sessions) is "
            "in use; retry shortly",
            retry_after=1.0,
            limit="mcp.max_sessions",
        )

    async def evict_idle(self) -> int:
        """Close every session unused for ``session_idle_seconds``; how many closed."""
        horizon = self._clock() - self.limits.session_idle_seconds
        idle = [
            key
            for key, session in self._sessions.items()
            if session.in_flight == 0 and session.last_used <= horizon
        ]
        await self._close(idle)
        return len(idle)

    async def end_session(self, user_id: str, session_id: str) -> int:
        """Close one user session's sessions with every server; how many closed."""
        keys = [key for key in self._sessions if key[0] == user_id and key[1] == session_id]
        await self._close(keys)
        return len(keys)

    async def release_user(self, user_id: str) -> int:
        """Close every session of one user; how many closed."""
        keys = [key for key in self._sessions if key[0] == user_id]
        await self._close(keys)
        return len(keys)

    async def close_all(self) -> None:
        """Close every session (shutdown)."""
        await self._close(list(self._sessions))

    async def _close(self, keys: list[SessionKey]) -> None:
        sessions = [self._sessions.pop(key) for key in keys if key in self._sessions]
        await asyncio.gather(*(session.aclose() for session in sessions))

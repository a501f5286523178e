"""The request key under which a fake upstream notes the fault chosen for one request."""

from __future__ import annotations

from aiohttp import web

#: The fault mode chosen for one request (after fault budgets and filters).
MODE = web.RequestKey("mode", str)

"""Which tools a user may use: rules by group over servers and tool names.

A tool is named ``<server>__<tool>`` to the caller, so one namespace holds every
server's tools. With no rule every user may use every tool; once one rule is set,
a tool no rule allows is denied (absent from the user's list, refused when called).
The groups are the user's ``x-permissions`` values; ``*`` in a rule matches anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

#: Between a server's name and its tool's name in the gateway's namespace.
SEPARATOR = "__"


@dataclass(frozen=True, slots=True)
class ToolLimits:
    """How the gateway bounds tool traffic."""

    max_sessions: int = 1000
    session_idle_seconds: float = 300.0
    max_result_bytes: int = 1024 * 1024
    list_retries: int = 2


DEFAULT_TOOL_LIMITS = ToolLimits()


def qualified(server: str, tool: str) -> str:
    """The name a caller sees for ``tool`` of ``server``."""
    return f"{server}{SEPARATOR}{tool}"


def split(name: str) -> tuple[str, str] | None:
    """(server, tool) of a qualified name; None when it names no server."""
    server, sep, tool = name.partition(SEPARATOR)
    if not sep or not server or not tool:
        return None
    return server, tool


@dataclass(frozen=True, slots=True)
class ToolRule:
    """Users in any of ``groups`` may use ``tools`` (globs) on ``servers``."""

    groups: tuple[str, ...] = ("*",)
    servers: tuple[str, ...] = ("*",)
    tools: tuple[str, ...] = ("*",)

    def allows(self, groups: frozenset[str], server: str, tool: str) -> bool:
        return (
            ("*" in self.groups or not groups.isdisjoint(self.groups))
            and ("*" in self.servers or server in self.servers)
            and any(fnmatchcase(tool, pattern) for pattern in self.tools)
        )


class ToolPolicy:
    """The rules in force; :meth:`replace` swaps them whole (a reload)."""

    __slots__ = ("_rules",)

    def __init__(self, rules: Iterable[ToolRule] = ()) -> None:
        self._rules: tuple[ToolRule, ...] = tuple(rules)

    @property
    def rules(self) -> Sequence[ToolRule]:
        return self._rules

    def replace(self, rules: Iterable[ToolRule]) -> None:
        """Put ``rules`` in force for every call that starts from now."""
        self._rules = tuple(rules)

    def allows(self, groups: frozenset[str], server: str, tool: str) -> bool:
        """Whether a user holding ``groups`` may use ``tool`` of ``server``."""
        rules = self._rules
        if not rules:
            return True
        return any(rule.allows(groups, server, tool) for rule in rules)

    def may_use_server(self, groups: frozenset[str], server: str) -> bool:
        """Whether any tool of ``server`` may be allowed (else it is not even listed)."""
        rules = self._rules
        if not rules:
            return True
        return any(
            ("*" in r.groups or not groups.isdisjoint(r.groups))
            and ("*" in r.servers or server in r.servers)
            for r in rules
        )

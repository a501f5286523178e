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


@dataclass(frozen=True, slots=True)
class ToolLimits:
    """How the gateway bounds tool traffic."""

    max_sessions: int = 1000
    session_idle_seconds: float = 300.0
    max_result_bytes: int = 1024 * 1024
    list_retries: int = 2


DEFAULT_TOOL_LIMITS = ToolLimits()


@dataclass(frozen=True, slots=True)
class ToolRule:
    """Users in any of ``groups`` may use ``tools`` (globs) on ``servers``."""

    groups: tuple[str, ...] = ("*",)
    servers: tuple[str, ...] = ("*",)
    tools: tuple[str, ...] = ("*",)

    def covers(self, groups: frozenset[str], server: str) -> bool:
        """Whether the rule speaks of users in ``groups`` on ``server``."""
        return ("*" in self.groups or not groups.isdisjoint(self.groups)) and (
            "*" in self.servers or server in self.servers
        )

    def allows(self, groups: frozenset[str], server: str, tool: str) -> bool:
        return self.covers(groups, server) and any(
            fnmatchcase(tool, pattern) for pattern in self.tools
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
        return any(rule.covers(groups, server) for rule in rules)

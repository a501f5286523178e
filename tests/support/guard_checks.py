"""Checks of operators' own guardrail categories (``check = "module:function"``), as
configuration names them: one that works, and one with a bug that raises."""

from __future__ import annotations


def employee_number(value: str) -> bool:
    """An employee number is EMP- and six digits whose sum is even."""
    return sum(int(c) for c in value[4:]) % 2 == 0


def broken_on_nines(value: str) -> bool:
    """A check with a bug: it raises on 999999."""
    if value.endswith("999999"):
        raise RuntimeError("the check has a bug")
    return employee_number(value)

"""The guardrails section: what is done with each category of personal data or secret
found in what goes to a provider, by default and by route. Without the section the
guard does nothing at all."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Literal, cast

from pydantic import Field, field_validator, model_validator

from llm_sidecar.config.base import Section
from llm_sidecar.core.guard.detectors import load_stdnum
from llm_sidecar.core.guard.findings import BUILT_IN

ActionName = Literal["allow", "mask", "pseudonymize", "block"]
_NAME = r"^[a-z][a-z0-9_]{0,31}$"
_REGION = re.compile(r"[A-Z]{2}")


class GuardPatternSettings(Section):
    """An operator's own category: a regular expression, what to do with a match, and
    optionally a check of each match (``package.module:function``, which takes the
    matched text and returns whether it is one: a checksum, a lookup)."""

    pattern: str = Field(min_length=1, max_length=1024)
    action: ActionName = "mask"
    check: str = ""

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"pattern {value!r} is not a regular expression: {exc}") from None
        return value

    @field_validator("check")
    @classmethod
    def _importable(cls, value: str) -> str:
        if value:
            load_check(value)
        return value


def load_check(path: str) -> Callable[[str], bool]:
    """The function a ``check`` names; ValueError when it names none."""
    module_name, _, name = path.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), name) if name else None
    except (ImportError, AttributeError, ValueError):
        found = None
    if not callable(found):
        raise ValueError(f"check {path!r} names no function (package.module:function)")
    return cast(Callable[[str], bool], found)


class GuardrailSettings(Section):
    """The default action of each category, and what the detectors look for."""

    email: ActionName = "pseudonymize"
    phone: ActionName = "pseudonymize"
    credit_card: ActionName = "block"
    iban: ActionName = "mask"
    national_id: ActionName = "mask"
    ip_address: ActionName = "allow"
    secret: ActionName = "block"  # noqa: S105 (an action)
    #: A detector that raises: "fail_closed" refuses the call (503 / UNAVAILABLE),
    #: "fail_open" sends the text unchecked for that category, and logs it.
    on_error: Literal["fail_closed", "fail_open"] = "fail_closed"
    #: Where a phone number written without "+" and a country code is read as national.
    phone_regions: list[str] = Field(default_factory=lambda: ["US"], max_length=16)
    #: The national identifiers looked for: python-stdnum module names.
    national_ids: list[str] = Field(default_factory=lambda: ["us.ssn"], max_length=32)
    #: The operator's own categories, by name.
    patterns: dict[str, GuardPatternSettings] = Field(default_factory=dict)
    #: Per model route: category -> action, over the defaults.
    routes: dict[str, dict[str, ActionName]] = Field(default_factory=dict)

    @field_validator("phone_regions")
    @classmethod
    def _regions(cls, value: list[str]) -> list[str]:
        for region in value:
            if _REGION.fullmatch(region) is None:
                raise ValueError(f"phone_regions: {region!r} is not a region code (US, GB, DE)")
        return value

    @field_validator("national_ids")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        for name in value:
            load_stdnum(name)
        return value

    @model_validator(mode="after")
    def _names(self) -> GuardrailSettings:
        for name in self.patterns:
            if re.match(_NAME, name) is None or name in BUILT_IN:
                raise ValueError(
                    f"guardrails.patterns.{name}: a name of lower-case letters, digits and "
                    "'_', not a built-in category's"
                )
        known = {*BUILT_IN, *self.patterns}
        for route, actions in self.routes.items():
            for category in actions:
                if category not in known:
                    raise ValueError(f"guardrails.routes.{route}: no category {category!r}")
        return self

    def actions(self, route: str = "") -> dict[str, str]:
        """Category -> action name, for ``route`` ("": the defaults)."""
        actions = {name: getattr(self, name) for name in BUILT_IN}
        actions.update({name: entry.action for name, entry in self.patterns.items()})
        actions.update(self.routes.get(route, {}))
        return actions

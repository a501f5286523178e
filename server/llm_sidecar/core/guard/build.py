"""A guard put together from plain values (the configuration's, once read)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from llm_sidecar.core.guard.detectors import (
    CardDetector,
    EmailDetector,
    IbanDetector,
    IpAddressDetector,
    NationalIdDetector,
    PatternDetector,
    PhoneDetector,
)
from llm_sidecar.core.guard.findings import Action, Detector
from llm_sidecar.core.guard.policy import Guard, GuardPolicy
from llm_sidecar.core.guard.secrets import SecretDetector

#: An operator's category: its regular expression and its check of a match, if any.
Pattern = tuple[str, Callable[[str], bool] | None]


def detectors(
    *,
    phone_regions: Iterable[str] = ("US",),
    national_ids: Iterable[str] = ("us.ssn",),
    patterns: Mapping[str, Pattern] | None = None,
) -> dict[str, Detector]:
    """Every detector, by category: the built-in ones and the operator's."""
    found: dict[str, Detector] = {
        "email": EmailDetector(),
        "phone": PhoneDetector(phone_regions),
        "credit_card": CardDetector(),
        "iban": IbanDetector(),
        "national_id": NationalIdDetector(national_ids),
        "ip_address": IpAddressDetector(),
        "secret": SecretDetector(),
    }
    for name, (pattern, check) in (patterns or {}).items():
        found[name] = PatternDetector(name, pattern, check)
    return found


def guard(
    default: Mapping[str, str],
    routes: Mapping[str, Mapping[str, str]],
    found: Mapping[str, Detector],
    *,
    fail_open: bool = False,
) -> Guard:
    """The guard of these actions (category -> action name) by default and by route."""

    def policy(actions: Mapping[str, str]) -> GuardPolicy:
        return GuardPolicy.of({k: Action(v) for k, v in actions.items()}, found, fail_open)

    return Guard(policy(default), {route: policy(actions) for route, actions in routes.items()})

"""Which categories are looked for, and what is done with each, by route."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from llm_sidecar.core.guard.findings import Action, Detector

#: Overlapping findings: the earlier category in this order keeps the span (a card
#: number is not also a phone number).
PRECEDENCE = ("secret", "iban", "credit_card", "national_id", "email", "ip_address", "phone")


@dataclass(frozen=True, slots=True)
class GuardPolicy:
    """The action of every category, and the detectors of those not allowed."""

    actions: Mapping[str, Action]
    #: The detectors to run, in precedence order (none of an allowed category).
    detectors: tuple[Detector, ...] = ()
    #: A detector that raises: the call is refused (False), or the category is skipped
    #: and the failure counted (True).
    fail_open: bool = False

    @classmethod
    def of(
        cls, actions: Mapping[str, Action], detectors: Mapping[str, Detector], fail_open: bool
    ) -> GuardPolicy:
        """A policy running the detectors whose category is not allowed."""
        rank = {name: i for i, name in enumerate(PRECEDENCE)}
        active = [
            detector
            for name, detector in detectors.items()
            if actions.get(name, Action.ALLOW) is not Action.ALLOW
        ]
        active.sort(key=lambda d: rank.get(d.category, len(rank)))
        return cls(dict(actions), tuple(active), fail_open)

    def action(self, category: str) -> Action:
        """What is done with a value of ``category``."""
        return self.actions.get(category, Action.ALLOW)

    def rank(self, category: str) -> int:
        """The category's precedence among this policy's detectors."""
        for index, detector in enumerate(self.detectors):
            if detector.category == category:
                return index
        return len(self.detectors)


@dataclass(frozen=True, slots=True)
class Guard:
    """The guard of a sidecar: a default policy, and the routes that override it.
    Holds no user data: each call gets a :class:`~llm_sidecar.core.guard.shield.Shield`
    of its own."""

    default: GuardPolicy
    routes: Mapping[str, GuardPolicy] = field(default_factory=dict)

    def policy(self, route: str) -> GuardPolicy | None:
        """The route's policy; None when it looks for nothing."""
        policy = self.routes.get(route, self.default)
        return policy if policy.detectors else None

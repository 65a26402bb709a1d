"""Mailpit's chaos triggers: refuse a sender, a recipient or AUTH now and then.

Set over ``PUT /api/v1/chaos``; the command's SMTP handlers call `Chaos.check`. A trigger
is an SMTP error code (400-599) and a probability in percent (0 disables it).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from .bodies import fold_keys

__all__ = ["Chaos", "Trigger", "ChaosError", "TRIGGERS"]

TRIGGERS = ("Sender", "Recipient", "Authentication")


class ChaosError(ValueError):
    """A bad trigger configuration; ``str()`` names the problem."""


@dataclass
class Trigger:
    """Answer ``ErrorCode`` with ``Probability`` percent chance."""

    ErrorCode: int = 451
    Probability: int = 0


class Chaos:
    """The current triggers (all off at first)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.triggers: dict[str, Trigger] = {name: Trigger() for name in TRIGGERS}
        self._random = rng or random.Random()

    def to_json(self) -> dict[str, Any]:
        return {name: {"ErrorCode": t.ErrorCode, "Probability": t.Probability} for name, t in self.triggers.items()}

    def update(self, data: object) -> None:
        """Replace the triggers (omitted ones are reset, like Mailpit); `ChaosError`."""
        if not isinstance(data, dict):
            raise ChaosError("expected a JSON object of triggers")
        data = fold_keys(data, TRIGGERS)  # keys in any case, as Mailpit's Go decoder takes them
        unknown = sorted(set(data) - set(TRIGGERS))
        if unknown:
            raise ChaosError(f"unknown trigger {unknown[0]!r} (expected {', '.join(TRIGGERS)})")
        triggers = {name: Trigger() for name in TRIGGERS}
        for name, value in data.items():
            if not isinstance(value, dict):
                raise ChaosError(f"{name}: expected an object with ErrorCode and Probability")
            value = fold_keys(value, ("ErrorCode", "Probability"))
            code = value.get("ErrorCode", 451)
            probability = value.get("Probability", 0)
            if not isinstance(code, int) or isinstance(code, bool) or not 400 <= code <= 599:
                raise ChaosError(f"{name}: ErrorCode must be a number from 400 to 599")
            if not isinstance(probability, int) or isinstance(probability, bool) or not 0 <= probability <= 100:
                raise ChaosError(f"{name}: Probability must be a number from 0 to 100")
            triggers[name] = Trigger(code, probability)
        self.triggers = triggers

    def check(self, name: str) -> int | None:
        """The error code to answer now, or None (the trigger did not fire)."""
        trigger = self.triggers[name]
        if trigger.Probability and self._random.uniform(0, 100) < trigger.Probability:
            return trigger.ErrorCode
        return None

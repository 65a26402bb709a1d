"""The counter store behind the limits: one interface, kept in-process or in Redis."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Verdict", "LimitBackend", "MemoryBackend"]


@dataclass(frozen=True)
class Verdict:
    """The answer of a counter: ``allowed`` and the count it compared (after adding, when
    allowed; the count that was full, when not)."""

    allowed: bool
    count: int


class LimitBackend(Protocol):
    """Where counters live. Every call is atomic: two receivers asking at once cannot both
    take the last slot."""

    async def start(self) -> None:
        """Connect (Redis) and start the heartbeat; raise ``OSError`` if unreachable."""
        ...

    async def acquire(self, key: str, holder: str, limit: int) -> Verdict:
        """Take one of ``limit`` concurrent slots under ``key`` for ``holder`` (a
        connection ID unique across receivers); refused when all are taken."""
        ...

    async def release(self, key: str, holder: str) -> None:
        """Give the slot back."""
        ...

    async def hit(self, key: str, limit: int, period: float, amount: int = 1) -> Verdict:
        """Add ``amount`` to the count of the current ``period``-second window under
        ``key`` unless that would pass ``limit``."""
        ...

    async def close(self) -> None:
        """Stop the heartbeat and disconnect (slots held are released)."""
        ...


class MemoryBackend:
    """Counters in this process: the limits hold per receiver process only."""

    def __init__(self) -> None:
        self._slots: dict[str, set[str]] = {}
        self._windows: dict[str, tuple[int, int]] = {}  # key -> (window number, count)
        self._last_sweep = 0.0

    async def start(self) -> None:
        return None

    async def acquire(self, key: str, holder: str, limit: int) -> Verdict:
        slots = self._slots.setdefault(key, set())
        if holder in slots:
            return Verdict(True, len(slots))
        if len(slots) >= limit:
            return Verdict(False, len(slots))
        slots.add(holder)
        return Verdict(True, len(slots))

    async def release(self, key: str, holder: str) -> None:
        slots = self._slots.get(key)
        if slots is not None:
            slots.discard(holder)
            if not slots:
                del self._slots[key]

    async def hit(self, key: str, limit: int, period: float, amount: int = 1) -> Verdict:
        now = time.time()
        self._sweep(now)
        window = int(now // period)
        full_key = f"{key}/{period:g}"
        current_window, count = self._windows.get(full_key, (window, 0))
        if current_window != window:
            count = 0
        if count + amount > limit:
            self._windows[full_key] = (window, count)
            return Verdict(False, count)
        self._windows[full_key] = (window, count + amount)
        return Verdict(True, count + amount)

    def _sweep(self, now: float) -> None:
        """Drop windows that ended (at most once a minute), so memory stays bounded."""
        if now - self._last_sweep < 60:
            return
        self._last_sweep = now
        for full_key, (window, _) in list(self._windows.items()):
            period = float(full_key.rsplit("/", 1)[1])
            if window != int(now // period):
                del self._windows[full_key]

    async def close(self) -> None:
        self._slots.clear()
        self._windows.clear()
        await asyncio.sleep(0)

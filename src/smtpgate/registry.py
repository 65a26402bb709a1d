"""The server's registry of connections: who is connected, and when all have ended."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["ConnectionRegistry"]

C = TypeVar("C")


class ConnectionRegistry(Generic[C]):
    """Connections from accept to their very end.

    A connection is *live* (counted by ``len()``, iterated, and by ``max_clients``) until
    its session is over, then *finishing* while ``on_close`` runs, then gone. `wait_empty`
    waits for the last one to be gone.
    """

    def __init__(self) -> None:
        self._live: set[C] = set()
        self._all: set[C] = set()
        self._empty: asyncio.Event | None = None
        self.closing = False  # the server is closing: new connections are refused

    def __len__(self) -> int:
        return len(self._live)

    def __bool__(self) -> bool:
        return bool(self._live)

    def __iter__(self) -> Iterator[C]:
        return iter(list(self._live))

    def __contains__(self, connection: object) -> bool:
        return connection in self._live

    def everyone(self) -> list[C]:
        """Every connection not gone yet, live or finishing."""
        return list(self._all)

    def add(self, connection: C) -> None:
        self._live.add(connection)
        self._all.add(connection)

    def session_over(self, connection: C) -> None:
        """The session ended; its on_close may still be running."""
        self._live.discard(connection)

    def remove(self, connection: C) -> None:
        """The connection is gone for good."""
        self._live.discard(connection)
        self._all.discard(connection)
        if not self._all and self._empty is not None:
            self._empty.set()

    async def wait_empty(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every connection to be gone; True if they are."""
        if not self._all:
            return True
        if self._empty is None:
            self._empty = asyncio.Event()
        self._empty.clear()
        try:
            await asyncio.wait_for(self._empty.wait(), timeout)
        except asyncio.TimeoutError:
            return not self._all
        return True

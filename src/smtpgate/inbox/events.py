"""Change notifications of the inbox store, for the websocket and the wait endpoint."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Event", "Subscription", "Hub"]

QUEUE_SIZE = 1000
"""Events a slow subscriber may fall behind by before it gets one ``prune`` instead."""


@dataclass(frozen=True)
class Event:
    """One change, in Mailpit's event vocabulary: ``new`` (data: the message summary),
    ``delete`` (``{"ID": ...}``), ``update`` (``{"ID": ..., "Read": ...}``), ``stats``
    (``{"Total", "Unread", "Version"}``), ``truncate`` (all deleted) and ``prune`` (many
    deleted, or the subscriber fell behind: reload)."""

    type: str
    data: Any = None
    mailboxes: frozenset[str] = field(default_factory=frozenset)
    """The mailboxes the message is filed under (``new``/``delete``/``update``)."""

    def to_json(self) -> dict[str, Any]:
        return {"Type": self.type, "Data": self.data}


class Subscription:
    """Events since `Hub.subscribe`; ``async for event in subscription`` or `get`."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_SIZE)
        self._overflowed = False

    def _put(self, event: Event) -> None:
        if self._overflowed:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._overflowed = True

    async def get(self) -> Event:
        """The next event (``prune`` once after falling more than `QUEUE_SIZE` behind)."""
        if self._overflowed and self._queue.empty():
            self._overflowed = False
            return Event("prune")
        return await self._queue.get()

    def close(self) -> None:
        self._hub._subscribers.discard(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        return await self.get()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Hub:
    """Fan-out of events to subscribers; `publish` runs on the event loop."""

    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()

    def subscribe(self) -> Subscription:
        subscription = Subscription(self)
        self._subscribers.add(subscription)
        return subscription

    def publish(self, event: Event) -> None:
        for subscription in list(self._subscribers):
            subscription._put(event)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

"""Deliver queued messages into a sink (a Maildir, an mbox file, an inbox, ...)."""

from __future__ import annotations

from ..queue.base import Delivered, DeliveryResult, QueuedMessage, Retry
from ..sinks import Sink, SinkFull

__all__ = ["SinkDeliverer"]


class SinkDeliverer:
    """Stores each queued message in ``sink`` (started by `start`, or already started).
    One outcome for the whole message: stored, or retried when the sink fails."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def describe(self) -> str:
        """The sink's spec."""
        return self.sink.describe()

    async def start(self) -> None:
        """Start the sink."""
        await self.sink.start()

    async def close(self) -> None:
        """Close the sink."""
        await self.sink.close()

    async def __call__(self, message: QueuedMessage) -> DeliveryResult:
        delivery = self.sink.open(message.info)
        try:
            async for chunk in message.iter_body():
                await delivery.write(chunk)
            where = await delivery.commit()
        except SinkFull as error:
            delivery.abort()
            return Retry(f"the sink is full: {error}")
        except Exception as error:
            delivery.abort()
            return Retry(f"{type(error).__name__}: {error}")
        return Delivered(f"stored as {where}")

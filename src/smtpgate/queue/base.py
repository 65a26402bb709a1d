"""The queue interface: what every queue backend and every deliverer share.

A queue is a sink (see `smtpgate.sinks`): a message is in the queue, durably, when its
`Delivery.commit` returns, and only then does the client get its ``250``. From there a
delivery worker (`smtpgate.queue.worker`) claims due messages, hands each to a
*deliverer* and records the outcome, per recipient, until every recipient has a final
one. Delivery is at least once: a message stays in the queue until it is removed or
moved to the dead-letter area, so a crash during a delivery means it is delivered again,
with the same `QueuedMessage.id`.

The types:

* `QueuedMessage`: one queued message as a backend hands it out: a stable ID, the
  envelope (`MessageInfo`), attempts, times, per-recipient state, the last error, and
  the body (wire format, CRLF line endings, no dot-stuffing) to read as a stream.
* `Delivered`, `Retry`, `Failed`: the outcomes a deliverer returns, one for the whole
  message or one per recipient (`DeliveryResult`).
* `Deliverer`: an async callable, ``await deliverer(message) -> DeliveryResult``.
* `MessageQueue`: the base class of queue backends (the local directory queue, Redis
  Streams). A backend stores messages and their state; the retry policy (backoff,
  maximum age) belongs to the worker, not to the backend.
"""

from __future__ import annotations

import asyncio
import io
import os
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO, Literal, Protocol, TypeAlias

from ..sinks import MessageInfo, Sink

__all__ = [
    "BodySource",
    "BytesBody",
    "FileBody",
    "RecipientState",
    "RecipientStatus",
    "QueuedMessage",
    "Delivered",
    "Retry",
    "Failed",
    "Outcome",
    "DeliveryResult",
    "Deliverer",
    "QueueStats",
    "MessageQueue",
    "per_recipient",
    "new_message_id",
]

RecipientStatus = Literal["pending", "delivered", "failed"]
"""``pending`` until a deliverer gives the recipient a final outcome (``delivered`` or
``failed``)."""

_CHUNK = 64 * 1024


class BodySource(Protocol):
    """Where a queued message's bytes are: opened for reading each time they are needed."""

    def open(self) -> BinaryIO:
        """A new binary file object positioned at the start of the message."""
        ...


@dataclass(frozen=True)
class FileBody:
    """The body is a file on disk (the local queue), from byte ``offset`` to the end."""

    path: str
    offset: int = 0

    def open(self) -> BinaryIO:
        handle = open(self.path, "rb")
        if self.offset:
            handle.seek(self.offset)
        return handle


@dataclass(frozen=True)
class BytesBody:
    """The body is held in memory (backends that fetch it whole, such as Redis)."""

    data: bytes

    def open(self) -> BinaryIO:
        return io.BytesIO(self.data)


@dataclass(frozen=True)
class RecipientState:
    """Where one recipient of a queued message stands."""

    address: str
    status: RecipientStatus = "pending"
    detail: str = ""
    """The last reply or error for this recipient (the reason of a failure)."""
    updated: float | None = None
    """When the status or detail last changed (seconds since the epoch)."""


@dataclass(frozen=True)
class QueuedMessage:
    """One message in a queue, as a backend hands it out. Immutable: the worker makes an
    updated copy (`dataclasses.replace`) and gives it back to the backend to store."""

    id: str
    """Stable for the message's whole life in the queue (and across redeliveries): pass
    it on so that receivers can drop duplicates (the webhook's ``webhook-id``)."""
    info: MessageInfo
    """The envelope and the client, as the server received them."""
    size: int
    """The body's length in bytes."""
    queued: float
    """When the message entered the queue (seconds since the epoch)."""
    recipients: tuple[RecipientState, ...]
    """One entry per envelope recipient, in envelope order."""
    body: BodySource = field(repr=False, compare=False)
    attempts: int = 0
    """Delivery attempts made so far."""
    first_attempt: float | None = None
    last_attempt: float | None = None
    next_attempt: float = 0.0
    """Not delivered before this time (seconds since the epoch); 0 means at once."""
    last_error: str = ""
    """The reason of the last temporary or permanent failure ("" if none)."""
    dead_reason: str = ""
    """Why the message is in the dead-letter area ("" while it is queued)."""

    @property
    def pending(self) -> tuple[str, ...]:
        """The recipients still without a final outcome: the ones a deliverer must serve."""
        return tuple(r.address for r in self.recipients if r.status == "pending")

    @property
    def dead(self) -> bool:
        """The message is in the dead-letter area."""
        return bool(self.dead_reason)

    def open_body(self) -> BinaryIO:
        """The body as a binary file object (blocking reads; close it when done)."""
        return self.body.open()

    async def read_body(self) -> bytes:
        """The whole body (read in a thread unless it is held in memory)."""
        if isinstance(self.body, BytesBody):
            return self.body.data

        def read() -> bytes:
            with self.open_body() as handle:
                return handle.read()

        return await asyncio.to_thread(read)

    async def iter_body(self, chunk_size: int = _CHUNK) -> AsyncIterator[bytes]:
        """The body in chunks of up to ``chunk_size`` bytes (each read in a thread; the
        first with the opening, and a short chunk is the last: a body that fits in one
        chunk costs one trip to a thread)."""

        if isinstance(self.body, BytesBody):
            data = self.body.data
            for start in range(0, len(data), chunk_size):
                yield data[start : start + chunk_size]
            return

        def first() -> tuple[BinaryIO, bytes]:
            handle = self.open_body()
            try:
                return handle, handle.read(chunk_size)
            except BaseException:
                handle.close()
                raise

        handle, chunk = await asyncio.to_thread(first)
        try:
            while chunk:
                yield chunk
                if len(chunk) < chunk_size:
                    return
                chunk = await asyncio.to_thread(handle.read, chunk_size)
        finally:
            handle.close()


@dataclass(frozen=True)
class Delivered:
    """The message reached the recipient (or the endpoint); ``detail`` is for the log."""

    detail: str = ""


@dataclass(frozen=True)
class Retry:
    """A temporary failure: try again later, after ``delay`` seconds if the other side
    said how long (``Retry-After``), else on the worker's backoff schedule."""

    reason: str = ""
    delay: float | None = None


@dataclass(frozen=True)
class Failed:
    """A permanent failure: no retry; the message goes to the dead-letter area with
    ``reason`` once every recipient has a final outcome."""

    reason: str = ""


Outcome: TypeAlias = Delivered | Retry | Failed
"""What one delivery attempt did, for a whole message or for one recipient."""

DeliveryResult: TypeAlias = Outcome | Mapping[str, Outcome]
"""One outcome for every pending recipient, or a mapping of recipient address to outcome.
A pending recipient missing from the mapping counts as ``Retry``."""


class Deliverer(Protocol):
    """Hands a queued message on. Serves only ``message.pending`` recipients; returns one
    outcome, or one per recipient. An exception counts as ``Retry`` with its text. A plain
    ``async def deliver(message): ...`` is a deliverer."""

    async def __call__(self, message: QueuedMessage, /) -> DeliveryResult: ...


def per_recipient(message: QueuedMessage, result: DeliveryResult) -> dict[str, Outcome]:
    """One outcome for each pending recipient of ``message`` (a single outcome applies to
    all of them; a recipient a mapping leaves out gets ``Retry``)."""
    pending = message.pending
    if isinstance(result, (Delivered, Retry, Failed)):
        return dict.fromkeys(pending, result)
    by_address = {address.lower(): outcome for address, outcome in result.items()}
    missing = Retry("the deliverer gave no outcome for this recipient")
    return {address: by_address.get(address.lower(), missing) for address in pending}


@dataclass(frozen=True)
class QueueStats:
    """How full a queue is (``smtpgate queue`` prints it)."""

    queued: int
    """Messages waiting for delivery (deferred or due)."""
    dead: int
    """Messages in the dead-letter area."""
    size: int
    """Bytes the queue holds on disk or in memory (queued and dead messages)."""
    oldest: float | None
    """When the oldest queued message entered the queue (None if empty)."""


class MessageQueue(Sink):
    """Base class of queue backends: a sink plus the operations of the delivery worker
    and of ``smtpgate queue``.

    Sink side (from `Sink`): ``start()``, ``open(info) -> Delivery`` (its ``commit``
    returns the new message's ID and raises `smtpgate.sinks.SinkFull` when the queue has
    no room), ``close()``.

    Worker side: `claim` hands out due messages and *holds* them, so that no other worker
    (thread, process, host) delivers them at the same time; the holder ends the hold with
    exactly one of `save` (more attempts to come), `remove` (every recipient delivered),
    `bury` (dead-letter) or `release` (no change, e.g. at shutdown). A hold whose holder
    dies ends by itself (a lock of a dead process, a lease that times out), so the message
    is delivered again: at least once.

    Admin side: `messages`, `get`, `retry_now`, `delete`, `requeue`, `stats`.
    Message IDs are strings of ``[0-9A-Za-z_-]``.
    """

    async def claim(self, limit: int) -> list[QueuedMessage]:
        """Up to ``limit`` queued messages whose ``next_attempt`` has come, oldest due
        first, each now held by the caller. Empty when none is due."""
        raise NotImplementedError

    async def wait(self, timeout: float) -> None:
        """Return when a message may have become due (a new one committed, a retry time
        reached), at the latest after ``timeout`` seconds."""
        await asyncio.sleep(timeout)

    async def save(self, message: QueuedMessage) -> None:
        """Store the message's new state (attempts, times, recipients, last error),
        atomically, and end the hold."""
        raise NotImplementedError

    async def remove(self, message_id: str) -> None:
        """Every recipient has a final outcome and none failed: drop the message and
        end the hold."""
        raise NotImplementedError

    async def bury(self, message: QueuedMessage, reason: str) -> None:
        """Move the message (with its final state) to the dead-letter area with
        ``reason``, and end the hold."""
        raise NotImplementedError

    async def release(self, message_id: str) -> None:
        """End the hold without a change (the message stays due)."""
        raise NotImplementedError

    async def messages(self, *, dead: bool = False) -> list[QueuedMessage]:
        """Every queued message (or every dead one), oldest first."""
        raise NotImplementedError

    async def get(self, message_id: str) -> QueuedMessage | None:
        """One message, queued or dead, or None."""
        raise NotImplementedError

    async def retry_now(self, message_id: str | None = None) -> int:
        """Make one queued message (None: all of them) due now; returns how many."""
        raise NotImplementedError

    async def delete(self, message_id: str | None = None) -> int:
        """Delete one message, queued or dead (None: all of them); returns how many."""
        raise NotImplementedError

    async def requeue(self, message_id: str | None = None) -> int:
        """Put dead messages (None: all of them) back in the queue, due now, with their
        failed recipients pending again and no attempts; returns how many."""
        raise NotImplementedError

    async def stats(self) -> QueueStats:
        """Counts, size and oldest message."""
        raise NotImplementedError


def new_message_id() -> str:
    """A new queue ID: 24 hexadecimal digits, the first 14 the time in microseconds, so
    IDs sort by arrival; the rest random."""
    return f"{time.time_ns() // 1000:014x}{os.urandom(5).hex()}"

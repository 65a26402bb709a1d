"""The delivery queue: messages acknowledged with ``250`` are stored here, then handed on
by a delivery worker with retries, backoff and a dead-letter area.

`base` holds the interface every backend and deliverer share; `local` is the directory
queue; `worker` delivers.
"""

from __future__ import annotations

from .base import (
    BodySource,
    BytesBody,
    Delivered,
    Deliverer,
    DeliveryResult,
    Failed,
    FileBody,
    MessageQueue,
    Outcome,
    QueuedMessage,
    QueueStats,
    RecipientState,
    RecipientStatus,
    Retry,
    new_message_id,
    per_recipient,
)

__all__ = [
    "BodySource",
    "BytesBody",
    "Delivered",
    "Deliverer",
    "DeliveryResult",
    "Failed",
    "FileBody",
    "MessageQueue",
    "Outcome",
    "QueuedMessage",
    "QueueStats",
    "RecipientState",
    "RecipientStatus",
    "Retry",
    "new_message_id",
    "per_recipient",
]

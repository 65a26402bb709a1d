"""How the Redis stream queue lays out a message: stream entry fields, the body (inline or
in chunks), and the options of a ``redis://`` sink spec. No I/O here but the chunk
reader."""

from __future__ import annotations

import dataclasses
import io
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..sinks import MessageInfo
from .base import BytesBody, QueuedMessage, RecipientState

__all__ = ["StreamOptions", "parse_spec", "entry_fields", "message_from_fields", "ChunkBody"]

_INFO_FIELDS = (
    "sender",
    "recipients",
    "session_id",
    "client_address",
    "client_name",
    "user",
    "secure",
    "lmtp",
    "received",
)


@dataclass(frozen=True)
class StreamOptions:
    """The options of a Redis stream queue; in a spec as URL query parameters
    (``redis://host:6379/0?stream=mail&replicas=1``)."""

    stream: str = "smtpgate"
    """The stream's key; the other keys start with it (``STREAM:dead``, ``STREAM:body:ID``...)."""
    group: str = "smtpgate"
    """The consumer group of the delivery workers."""
    replicas: int = 0
    """Answer ``250`` only once this many replicas have the message (``WAIT``)."""
    wait_timeout: float = 5.0
    """Seconds ``WAIT`` may take before the message is refused with ``451``."""
    chunk_size: int = 256 * 1024
    """Bodies up to this size go inline in the stream entry; larger ones in chunks of it."""
    claim_timeout: float = 60.0
    """Seconds after which a message held by a silent consumer is taken over (``XAUTOCLAIM``)."""
    max_attempts: int = 25
    """Attempts before a message goes to the dead-letter stream (0: no limit)."""
    settle: float = 0.0
    """Workers: seconds a new entry waits before delivery. With receivers that use
    ``replicas``, set it to their ``wait-timeout`` (plus a little): a message the replicas
    did not confirm is then taken back (and answered ``451``) before anyone delivers it."""
    timeout: float = 5.0
    """Seconds for connecting and for each command: a stuck Redis fails fast (``451``)."""
    password_file: str | None = None

    @property
    def dead(self) -> str:
        return f"{self.stream}:dead"

    @property
    def delayed(self) -> str:
        return f"{self.stream}:delayed"

    @property
    def bytes_key(self) -> str:
        return f"{self.stream}:bytes"

    def body_key(self, message_id: str) -> str:
        return f"{self.stream}:body:{message_id}"

    def delayed_key(self, message_id: str) -> str:
        return f"{self.stream}:delayed:{message_id}"


_CONVERT: dict[str, Any] = {
    "stream": str,
    "group": str,
    "replicas": int,
    "wait_timeout": float,
    "chunk_size": int,
    "claim_timeout": float,
    "max_attempts": int,
    "timeout": float,
    "settle": float,
    "password_file": str,
}


def parse_spec(url: str) -> tuple[str, StreamOptions]:
    """Split a sink spec into the URL for redis-py and the `StreamOptions`; raises
    ``ValueError`` naming a bad parameter."""
    parts = urllib.parse.urlsplit(url)
    kept: list[tuple[str, str]] = []
    values: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        name = key.replace("-", "_")
        if name in _CONVERT:
            try:
                values[name] = _CONVERT[name](value)
            except ValueError:
                raise ValueError(f"invalid value {value!r} for {key!r}") from None
        else:
            kept.append((key, value))
    options = StreamOptions(**values)
    if options.replicas < 0 or options.chunk_size < 1024 or options.max_attempts < 0:
        raise ValueError("replicas and max-attempts must not be negative, chunk-size at least 1024")
    if not options.stream or not options.group:
        raise ValueError("stream and group must not be empty")
    plain = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(kept)))
    return plain, options


def _meta(message: QueuedMessage) -> bytes:
    info = {name: getattr(message.info, name) for name in _INFO_FIELDS}
    info["recipients"] = list(message.info.recipients)
    return json.dumps(
        {
            "info": info,
            "size": message.size,
            "queued": message.queued,
            "recipients": [[r.address, r.status, r.detail, r.updated] for r in message.recipients],
            "attempts": message.attempts,
            "first_attempt": message.first_attempt,
            "last_attempt": message.last_attempt,
            "next_attempt": message.next_attempt,
            "last_error": message.last_error,
            "dead_reason": message.dead_reason,
        },
        separators=(",", ":"),
    ).encode()


def entry_fields(message: QueuedMessage, body: bytes | None, chunks: int) -> dict[bytes, bytes]:
    """The fields of the message's stream entry: ``id``, ``meta`` (JSON) and either
    ``body`` (inline) or ``chunks`` (the count of chunks in ``STREAM:body:ID``)."""
    fields = {b"id": message.id.encode(), b"meta": _meta(message)}
    if body is not None:
        fields[b"body"] = body
    else:
        fields[b"chunks"] = str(chunks).encode()
    return fields


def new_message(message_id: str, info: MessageInfo, size: int, queued: float) -> QueuedMessage:
    """A message as it enters the queue: every recipient pending, no attempt yet."""
    return QueuedMessage(
        id=message_id,
        info=info,
        size=size,
        queued=queued,
        recipients=tuple(RecipientState(address) for address in info.recipients),
        body=BytesBody(b""),
    )


def message_from_fields(fields: Mapping[bytes, bytes], chunk_body: Any) -> tuple[QueuedMessage, int]:
    """The `QueuedMessage` of a stream entry (``chunk_body(id, count)`` makes the body of a
    chunked one) and its chunk count (0: inline)."""
    message_id = fields[b"id"].decode()
    meta = json.loads(fields[b"meta"])
    raw_info = meta["info"]
    raw_info["recipients"] = tuple(raw_info["recipients"])
    info = MessageInfo(**{name: raw_info[name] for name in _INFO_FIELDS if name in raw_info})
    chunks = int(fields.get(b"chunks", b"0"))
    body = chunk_body(message_id, chunks) if chunks else BytesBody(fields.get(b"body", b""))
    recipients = tuple(RecipientState(a, s, d, u) for a, s, d, u in meta["recipients"])
    message = QueuedMessage(
        id=message_id,
        info=info,
        size=int(meta["size"]),
        queued=float(meta["queued"]),
        recipients=recipients,
        body=body,
        attempts=int(meta["attempts"]),
        first_attempt=meta["first_attempt"],
        last_attempt=meta["last_attempt"],
        next_attempt=float(meta["next_attempt"]),
        last_error=meta["last_error"],
        dead_reason=meta["dead_reason"],
    )
    return message, chunks


def requeued(message: QueuedMessage) -> QueuedMessage:
    """A dead message back in the queue: failed recipients pending, no attempts, due now."""
    recipients = tuple(
        dataclasses.replace(r, status="pending") if r.status == "failed" else r for r in message.recipients
    )
    return dataclasses.replace(
        message, recipients=recipients, attempts=0, next_attempt=0.0, dead_reason="", first_attempt=None
    )


class ChunkBody:
    """A body stored in chunks (a Redis list): read one chunk at a time, never whole.
    ``client`` is a synchronous redis-py client (the worker reads bodies in threads)."""

    def __init__(self, client: Any, key: str, chunks: int) -> None:
        self.client = client
        self.key = key
        self.chunks = chunks

    def open(self) -> io.BufferedReader:
        return io.BufferedReader(_ChunkReader(self.client, self.key, self.chunks), buffer_size=64 * 1024)


class _ChunkReader(io.RawIOBase):
    def __init__(self, client: Any, key: str, chunks: int) -> None:
        self._client = client
        self._key = key
        self._chunks = chunks
        self._index = 0
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending and self._index < self._chunks:
            chunk = self._client.lindex(self._key, self._index)
            if chunk is None:
                raise OSError(f"chunk {self._index} of {self._key} is missing")
            self._pending = bytes(chunk)
            self._index += 1
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

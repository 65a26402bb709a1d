"""The local queue's files: the message file (an envelope line, then the message), the
state file, atomic writes, and the delivery that puts a new message in ``active/``."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from typing import Any, Protocol

from ..sinks import Delivery, MessageInfo, SinkFull
from ..sinks.files import StagedFile, fsync_dir
from .base import BytesBody, FileBody, QueuedMessage, RecipientState, new_message_id

__all__ = [
    "ACTIVE",
    "DEAD",
    "QueueDelivery",
    "fsync_dir",
    "write_atomic",
    "unlink_quietly",
    "info_to_json",
    "info_from_json",
    "state_to_json",
    "load_message",
    "valid_id",
]

ACTIVE, DEAD = "active", "dead"
_MAX_HEADER = 4 * 1024 * 1024


def write_atomic(directory: str, name: str, data: bytes, tmp: str) -> None:
    """Write ``directory/name`` through a temporary file: fsync, rename, fsync the folder."""
    temp = os.path.join(tmp, f"{name}.{os.getpid()}.{os.urandom(4).hex()}")
    try:
        with open(temp, "xb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, os.path.join(directory, name))
    except BaseException:
        unlink_quietly(temp)
        raise
    fsync_dir(directory)


def unlink_quietly(path: str) -> None:
    """Remove a file that may be gone already."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def info_to_json(info: MessageInfo) -> dict[str, Any]:
    """The envelope line's ``info``."""
    data = {f.name: getattr(info, f.name) for f in dataclasses.fields(info)}  # flat: no deep copy
    data["recipients"] = list(info.recipients)
    return data


def info_from_json(data: dict[str, Any]) -> MessageInfo:
    """The envelope from its line (unknown keys ignored)."""
    names = {f.name for f in dataclasses.fields(MessageInfo)}
    values = {key: value for key, value in data.items() if key in names}
    values["recipients"] = tuple(values.get("recipients", ()))
    return MessageInfo(**values)


def state_to_json(message: QueuedMessage) -> bytes:
    """The contents of a state file."""
    state = {
        "v": 1,
        "attempts": message.attempts,
        "first_attempt": message.first_attempt,
        "last_attempt": message.last_attempt,
        "next_attempt": message.next_attempt,
        "last_error": message.last_error,
        "dead_reason": message.dead_reason,
        "recipients": [dataclasses.asdict(r) for r in message.recipients],
    }
    return json.dumps(state).encode()


def load_message(message_id: str, msg_path: str, state_path: str, *, in_memory: int = 0) -> QueuedMessage:
    """Read one message's envelope and state; raises ``FileNotFoundError`` if gone. A
    message of at most ``in_memory`` bytes is read whole (a `BytesBody`: a deliverer then
    needs no more trips to a thread); a larger one stays a `FileBody`."""
    data: bytes | None = None
    with open(msg_path, "rb") as handle:
        line = handle.readline(_MAX_HEADER)
        size = os.fstat(handle.fileno()).st_size - len(line)
        if size <= in_memory:
            data = handle.read(size + 1)
    header = json.loads(line)
    info = info_from_json(header["info"])
    state: dict[str, Any] = {}
    try:
        with open(state_path, "rb") as handle:
            state = json.loads(handle.read())
    except FileNotFoundError:
        pass
    if "recipients" in state:
        recipients = tuple(RecipientState(**r) for r in state["recipients"])
    else:
        recipients = tuple(RecipientState(address) for address in info.recipients)
    return QueuedMessage(
        id=message_id,
        info=info,
        size=size,
        queued=float(header["queued"]),
        recipients=recipients,
        body=FileBody(msg_path, len(line)) if data is None or len(data) != size else BytesBody(data),
        attempts=int(state.get("attempts", 0)),
        first_attempt=state.get("first_attempt"),
        last_attempt=state.get("last_attempt"),
        next_attempt=float(state.get("next_attempt", 0.0)),
        last_error=str(state.get("last_error", "")),
        dead_reason=str(state.get("dead_reason", "")),
    )


class _Owner(Protocol):
    """What a `QueueDelivery` needs of its queue."""

    path: str

    def has_room(self, size: int) -> bool: ...

    def added(self, message_id: str, size: int) -> None: ...


class QueueDelivery(Delivery):
    """A message on its way into the queue: a file in ``tmp/`` (a `StagedFile`: no file
    I/O on the event loop) renamed into ``active/`` at commit."""

    def __init__(self, queue: _Owner, info: MessageInfo) -> None:
        self._queue = queue
        self.message_id = new_message_id()
        header = {"v": 1, "id": self.message_id, "queued": time.time(), "info": info_to_json(info)}
        line = json.dumps(header).encode() + b"\n"
        temp = os.path.join(queue.path, "tmp", self.message_id + ".msg")
        self._file: StagedFile | None = StagedFile(temp, line)
        self._offset = len(line)
        self._size = 0

    async def write(self, chunk: bytes) -> None:
        if self._file is None:
            raise RuntimeError("the delivery is closed")
        self._size += len(chunk)
        await self._file.write(chunk)

    async def commit(self) -> str:
        staged = self._file
        if staged is None:
            raise RuntimeError("the delivery is closed")
        queue = self._queue
        if not queue.has_room(self._size + self._offset):
            self.abort()
            raise SinkFull(f"the queue {queue.path} is full")
        final = os.path.join(queue.path, ACTIVE, self.message_id + ".msg")
        self._file = None

        def store() -> None:
            staged.finish()
            os.rename(staged.path, final)
            fsync_dir(os.path.dirname(final))

        try:
            await asyncio.to_thread(store)
        except BaseException:
            staged.discard()
            raise
        queue.added(self.message_id, self._size + self._offset)
        return self.message_id

    def abort(self) -> None:
        staged, self._file = self._file, None
        if staged is not None:
            staged.discard()


def valid_id(message_id: str) -> bool:
    """IDs are ``[0-9A-Za-z_-]``: nothing that could leave the folder."""
    return bool(message_id) and all(ch.isalnum() or ch in "-_" for ch in message_id) and message_id.isascii()

"""The ``inbox:PATH`` sink: the command's messages go into an `InboxStore`."""

from __future__ import annotations

import errno
import os
import sqlite3

from ..sinks.base import Delivery, MessageInfo, Sink, SinkError, SinkFull
from .spool import Spool
from .store import InboxStore, StoreError

__all__ = ["InboxSink", "InboxDelivery"]

_SQLITE_FULL = 13  # sqlite3.SQLITE_FULL (Python 3.11+): "database or disk is full"


class InboxDelivery(Delivery):
    """One message streamed into a spool, then stored (durably) by `commit`."""

    def __init__(self, store: InboxStore, info: MessageInfo) -> None:
        self._store = store
        self._info = info
        self._spool: Spool | None = Spool(os.path.join(store.files, "tmp"))

    async def write(self, chunk: bytes) -> None:
        assert self._spool is not None, "write after commit or abort"
        try:
            self._spool.write(chunk)
        except OSError as error:
            full = _full(error)
            if full is None:
                raise
            raise full from error

    async def commit(self) -> str:
        spool = self._spool
        assert spool is not None, "commit after commit or abort"
        self._spool = None
        try:
            return await self._store.add(spool, self._info)
        except (OSError, sqlite3.Error) as error:
            spool.discard()
            full = _full(error)
            if full is None:
                raise
            raise full from error
        except BaseException:
            spool.discard()
            raise

    def abort(self) -> None:
        if self._spool is not None:
            self._spool.discard()
            self._spool = None


def _full(error: Exception) -> SinkFull | None:
    """`SinkFull` (452) for a full disk or database, None for other errors (451)."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return SinkFull(f"inbox: {error.strerror}")
    code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+; the message before
    if isinstance(error, sqlite3.Error) and (code == _SQLITE_FULL or "database or disk is full" in str(error)):
        return SinkFull(f"inbox: {error}")
    return None


class InboxSink(Sink):
    """``inbox:PATH``: store messages in the SQLite inbox at ``PATH`` (see `InboxStore`).

    The command's HTTP API reads the same `store`."""

    kind = "inbox"

    def __init__(self, path: str, *, max_messages: int = 0, max_age: float = 0.0) -> None:
        super().__init__(path)
        if not path:
            raise SinkError("inbox sink needs a path: inbox:FILE")
        directory = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as error:
            raise SinkError(f"cannot create the folder of inbox {path!r}: {error.strerror}") from None
        if not os.access(directory, os.W_OK):
            raise SinkError(f"cannot write to the folder of inbox {path!r}")
        self.store = InboxStore(path, max_messages=max_messages, max_age=max_age)
        self._started = False

    async def start(self) -> None:
        if self._started:
            return
        try:
            await self.store.open()
        except StoreError as error:
            raise SinkError(str(error)) from None
        self._started = True

    def open(self, info: MessageInfo) -> Delivery:
        return InboxDelivery(self.store, info)

    async def close(self) -> None:
        if self._started:
            self._started = False
            await self.store.close()

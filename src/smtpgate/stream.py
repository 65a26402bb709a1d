"""DataStream: the message body as the ``on_data`` handler reads it."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable
from typing import Final

from .compiled import mypyc_attr
from .streamend import end_of_stream

__all__ = ["DataStream", "DataStreamError", "MessageTooLarge"]

HIGH_WATER: Final = 256 * 1024  # bytes buffered for the handler before the socket stops being read


@mypyc_attr(allow_interpreted_subclasses=True)  # public: users may subclass it
class DataStreamError(Exception):
    """The body did not arrive whole: the client went away, or the message was refused
    while it was being received (e.g. a bare LF with ``bare_lf="reject"``)."""


@mypyc_attr(allow_interpreted_subclasses=True)  # public: users may subclass it
class MessageTooLarge(DataStreamError):
    """The message outgrew the server's ``size`` (with ``reject_oversized=True``, the
    default): reads raise it once the first ``size`` bytes are read, so a truncated
    message cannot pass for a whole one. The server answers ``552 5.3.4``."""


@mypyc_attr(allow_interpreted_subclasses=True)  # public: users may subclass it
class DataStream:
    """An async iterator of ``bytes`` chunks, dot-unstuffed, ending exactly at the end of
    the message. ``read()`` returns the rest in one piece.

    Past the server's ``size`` limit nothing more is kept: ``size_exceeded`` becomes true
    and ``byte_length`` goes on counting the real size. With ``refuse_oversized`` (the
    server's ``reject_oversized``), reads then end with `MessageTooLarge` instead of
    the end of the message.
    """

    def __init__(self, size_limit: int = 0, *, unbounded: bool = False, refuse_oversized: bool = False) -> None:
        self._high_water = 1 << 62 if unbounded else HIGH_WATER
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._limit = size_limit
        self._refuse_oversized = refuse_oversized
        self._ended = False
        self._error: BaseException | None = None
        self._discard = False
        self._reader: asyncio.Future[None] | None = None
        self._writer: asyncio.Future[None] | None = None
        self.byte_length = 0
        """Bytes of message received so far (after dot-unstuffing)."""
        self.size_exceeded = False
        """True once the message is larger than the server's ``size``."""

    # --------------------------------------------------------------- server side

    def feed(self, data: bytes) -> bool:
        """Add a chunk; False means "wait for `wait_for_space` before the next"."""
        start = self.byte_length
        self.byte_length = start + len(data)
        if self._discard:
            return True
        limit = self._limit
        if limit and self.byte_length > limit:
            if not self.size_exceeded:
                self.size_exceeded = True
                if self._refuse_oversized and self._error is None:
                    self._error = MessageTooLarge(f"message exceeds fixed maximum message size {limit}")
                    self._wake_reader()
            if start >= limit:
                return True
            data = data[: limit - start]
        self._chunks.append(data)
        self._buffered += len(data)
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)
        return self._buffered < self._high_water

    async def wait_for_space(self) -> None:
        """Wait until the handler has read enough (or stopped reading)."""
        while self._buffered >= self._high_water and not self._discard:
            self._writer = asyncio.get_running_loop().create_future()
            await self._writer

    def finish(self) -> None:
        """The end of the message was received."""
        self._ended = True
        self._wake_reader()

    def abort(self, error: BaseException) -> None:
        """The message will not be complete; the handler's next read raises ``error``."""
        if self._ended:
            return
        self._ended = True
        self._error = error
        self._chunks.clear()
        self._buffered = 0
        self._wake_reader()

    def discard(self) -> None:
        """The handler is done with the stream: drop what is left and what comes."""
        self._discard = True
        self._chunks.clear()
        self._buffered = 0
        self._wake_writer()

    @property
    def error(self) -> BaseException | None:
        """Why the body did not arrive whole (what reads raise), or None."""
        return self._error

    @property
    def ended(self) -> bool:
        """True once the whole message (or an error) has arrived."""
        return self._ended

    def _drained(self) -> bool:
        """The whole message arrived and every byte of it was read."""
        return self._ended and not self._chunks and self._error is None

    def _wake_reader(self) -> None:
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    def _wake_writer(self) -> None:
        writer = self._writer
        if writer is not None and not writer.done():
            writer.set_result(None)

    # --------------------------------------------------------------- handler side

    def __aiter__(self) -> DataStream:
        return self

    def __anext__(self) -> Awaitable[bytes]:
        if self._drained():
            return end_of_stream()  # (raised from compiled code, it would cost a traceback)
        return self._next_chunk()

    async def _next_chunk(self) -> bytes:
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._ended:
                raise StopAsyncIteration
            self._reader = asyncio.get_running_loop().create_future()
            await self._reader
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._writer is not None and self._buffered < self._high_water:
            self._wake_writer()
        return chunk

    async def read(self, n: int = -1) -> bytes:
        """Read up to ``n`` bytes, or (by default) everything up to the end of the message."""
        if n == 0:
            return b""
        chunks = self._chunks
        if n < 0 and self._ended and self._error is None:  # all of it is here: no waiting
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            self._buffered = 0
            self._wake_writer()
            return data
        parts: list[bytes] = []
        got = 0
        while n < 0 or got < n:
            if self._drained():
                break
            try:
                chunk = await self._next_chunk()
            except StopAsyncIteration:
                break
            if n >= 0 and got + len(chunk) > n:
                keep = n - got
                self._chunks.appendleft(chunk[keep:])
                self._buffered += len(chunk) - keep
                chunk = chunk[:keep]
            parts.append(chunk)
            got += len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def getvalue(self) -> bytes:
        """Everything not read yet, without waiting; for plain-function ``on_data``
        handlers, which are called once the whole message is in."""
        if self._error is not None:
            raise self._error
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        return data

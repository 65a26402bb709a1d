"""SMTPProtocol: what asyncio's transports call for an SMTP client connection."""

from __future__ import annotations

import asyncio
from asyncio.protocols import BufferedProtocol
from typing import TYPE_CHECKING

from .compiled import mypyc_attr
from .readbuffer import read_buffer

if TYPE_CHECKING:
    from .connection import SMTPConnection

__all__ = ["SMTPProtocol"]


@mypyc_attr(native_class=False)  # it subclasses asyncio's protocol
class SMTPProtocol(BufferedProtocol):
    """What the transport talks to: every call goes on to the connection.

    A class of its own so that `SMTPConnection` need not subclass asyncio's protocol: then
    the compiled build makes it a native class, whose attributes the compiled code reads
    straight from the object (a subclass of a Python class keeps them in a dict)."""

    __slots__ = ("connection", "_buffer")

    def __init__(self, connection: SMTPConnection) -> None:
        self.connection = connection
        self._buffer = read_buffer()  # shared by the loop's connections: see read_buffer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connection.connection_made(transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        # Copy out first: the buffer is the next connection's as soon as this returns.
        self.connection.data_received(self._buffer[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        self.connection.data_received(data)

    def eof_received(self) -> bool:
        return self.connection.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.connection.connection_lost(exc)

    def pause_writing(self) -> None:
        self.connection.pause_writing()

    def resume_writing(self) -> None:
        self.connection.resume_writing()

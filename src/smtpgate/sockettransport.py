"""A lean transport for plain TCP on asyncio's own (selector) event loops.

asyncio's ``_SelectorSocketTransport`` is pure Python: per read it runs three methods
before the protocol sees a byte, and per accepted connection a task, a future and a
handful of scheduled callbacks. This transport does the same job in one compiled class
(setup.py): it reads into the loop's shared buffer (readbuffer.py) and hands the bytes
straight to the `SMTPConnection`, sends replies at once and buffers only what the socket
would not take. Other loops (uvloop) keep their own transports, which are compiled too.

What it keeps of asyncio's transport, so that the connection and the TLS layer cannot tell
the difference: flow control both ways (``pause_reading``; ``pause_writing`` above the
write buffer's high-water mark), half-close (``eof_received`` may keep the write side
open), ``close`` after the buffered replies are sent, ``abort``, one ``connection_lost``
(with the error that ended the connection), ``set_protocol`` (the TLS hand-over) and the
usual ``get_extra_info`` names (``peername``, ``sockname``, ``socket``).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from asyncio.protocols import BufferedProtocol
from asyncio.trsock import TransportSocket
from collections.abc import Callable, Iterable
from typing import Any, Final, cast

from .connection import SMTPConnection
from .readbuffer import read_buffer
from .smtpprotocol import SMTPProtocol
from .tlslayer import TLSLayer

__all__ = ["SocketTransport", "SocketListener", "fits", "open_transport"]

logger = logging.getLogger("smtpgate")

HIGH_WATER: Final = 64 * 1024  # unsent bytes above which the protocol is asked to pause writing
_ACCEPT_RETRY_DELAY: Final = 1.0  # seconds without accepting after the process ran out of sockets
_OUT_OF_RESOURCES: Final = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_WRITES_AFTER_LOSS_LOGGED: Final = 5  # writes to a lost connection before a warning, as asyncio


def fits(loop: asyncio.AbstractEventLoop) -> bool:
    """True for asyncio's selector loops, whose ``add_reader`` this transport needs."""
    return isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop)


class SocketTransport:
    """One accepted TCP socket: an asyncio transport, compiled, for the selector loops."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: Any, peer: Any) -> None:
        # Typed Any for the selector loop's own _add_reader and friends: the public
        # add_reader first checks that no asyncio transport owns the fd (a KeyError caught
        # for every fd that is not one of asyncio's), half again the cost of registering.
        self._loop: Any = loop
        self._sock = sock
        self._fd = sock.fileno()
        try:
            sockname: Any = sock.getsockname()
        except OSError:
            sockname = None
        self._extra: dict[str, Any] = {"socket": TransportSocket(sock), "peername": peer, "sockname": sockname}
        self._buffer = read_buffer()
        self._unsent = bytearray()
        self._high = HIGH_WATER
        self._low = HIGH_WATER // 4
        self._reading = False  # registered with the selector for reading
        self._paused = False  # pause_reading() was called
        self._closing = False  # close() or abort(): no more reads
        self._lost = 0  # connection_lost is on its way; then the writes after it
        self._eof = False  # write_eof(): shut the write side once the buffer is sent
        self._writing_paused = False  # the protocol was told to pause writing
        self._protocol: Any = None
        self._connection: SMTPConnection | None = None
        self._tls: TLSLayer | None = None
        self._buffered = False
        self.set_protocol(protocol)

    def __repr__(self) -> str:
        state = "closed" if self._lost else "closing" if self._closing else "open"
        return f"<SocketTransport fd={self._fd} {state} unsent={len(self._unsent)}>"

    def start(self) -> None:
        """Tell the protocol, then start reading (unless it paused reading or closed)."""
        try:
            self._protocol.connection_made(self)
        except Exception as error:
            self._fatal_error(error, "Fatal error: protocol.connection_made() call failed.")
            return
        if not self._paused and not self._closing:
            self._start_reading()

    # ----------------------------------------------------------------- protocol

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol
        self._connection = protocol.connection if type(protocol) is SMTPProtocol else None
        self._tls = protocol if type(protocol) is TLSLayer else None
        self._buffered = isinstance(protocol, BufferedProtocol)

    def get_protocol(self) -> Any:
        return self._protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    # ----------------------------------------------------------------- reading

    def _start_reading(self) -> None:
        if not self._reading:
            self._reading = True
            self._loop._add_reader(self._fd, self._read_ready)

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop._remove_reader(self._fd)

    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    def pause_reading(self) -> None:
        if self._closing or self._paused:
            return
        self._paused = True
        self._stop_reading()

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._start_reading()

    def _read_ready(self) -> None:
        if self._lost:
            return
        connection = self._connection
        if connection is None:
            self._read_for_protocol()
            return
        buffer = self._buffer
        try:
            count = self._sock.recv_into(buffer)
        except (BlockingIOError, InterruptedError):
            return
        except Exception as error:
            self._fatal_error(error, "Fatal read error on socket transport")
            return
        if not count:
            self._on_eof()
            return
        try:
            # Copy out at once: the buffer is the next connection's when this returns.
            connection.data_received(buffer[:count].tobytes())
        except Exception as error:
            self._fatal_error(error, "Fatal error: protocol.data_received() call failed.")

    def _read_for_protocol(self) -> None:
        """The TLS layer (after STARTTLS), or any other protocol with asyncio's calls."""
        protocol = self._protocol
        tls = self._tls
        try:
            if tls is not None:
                buffer = self._buffer  # (the layer's own buffer is the same one)
                count = self._sock.recv_into(buffer)
                if count:
                    tls.feed(buffer[:count])
            elif self._buffered:
                buffer = protocol.get_buffer(-1)
                count = self._sock.recv_into(buffer)
                if count:
                    protocol.buffer_updated(count)
            else:
                data = self._sock.recv(len(self._buffer))
                count = len(data)
                if count:
                    protocol.data_received(data)
        except (BlockingIOError, InterruptedError):
            return
        except Exception as error:
            self._fatal_error(error, "Fatal error on socket transport while reading")
            return
        if not count:
            self._on_eof()

    def _on_eof(self) -> None:
        try:
            keep_open = self._protocol.eof_received()
        except Exception as error:
            self._fatal_error(error, "Fatal error: protocol.eof_received() call failed.")
            return
        if keep_open:
            self._stop_reading()
        else:
            self.close()

    # ----------------------------------------------------------------- writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data:
            return
        if self._lost:
            if self._lost >= _WRITES_AFTER_LOSS_LOGGED:
                logger.warning("socket.send() raised exception.")
            self._lost += 1
            return
        if not self._unsent:
            try:
                sent = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except Exception as error:
                self._fatal_error(error, "Fatal write error on socket transport")
                return
            if sent == len(data):
                return
            self._loop._add_writer(self._fd, self._write_ready)
            self._unsent += memoryview(data)[sent:]
        else:
            self._unsent += data
        self._maybe_pause_protocol()

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(list_of_data))

    def _write_ready(self) -> None:
        if self._lost:
            return
        try:
            sent = self._sock.send(self._unsent)
        except (BlockingIOError, InterruptedError):
            return
        except Exception as error:
            self._loop._remove_writer(self._fd)
            self._unsent.clear()
            self._fatal_error(error, "Fatal write error on socket transport")
            return
        if sent:
            del self._unsent[:sent]
        self._maybe_resume_protocol()  # (the protocol may write more)
        if not self._unsent:
            self._loop._remove_writer(self._fd)
            if self._closing:
                self._call_connection_lost(None)
            elif self._eof:
                self._shut_write_side()

    def _shut_write_side(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as error:
            self._fatal_error(error, "Fatal error on socket transport while shutting down")

    def write_eof(self) -> None:
        if self._closing or self._eof:
            return
        self._eof = True
        if not self._unsent:
            self._shut_write_side()

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return len(self._unsent)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low, self._high)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        self._maybe_pause_protocol()

    def _maybe_pause_protocol(self) -> None:
        if self._writing_paused or len(self._unsent) <= self._high:
            return
        self._writing_paused = True
        self._call_protocol(self._protocol.pause_writing, "protocol.pause_writing() failed")

    def _maybe_resume_protocol(self) -> None:
        if self._writing_paused and len(self._unsent) <= self._low:
            self._writing_paused = False
            self._call_protocol(self._protocol.resume_writing, "protocol.resume_writing() failed")

    def _call_protocol(self, method: Callable[[], Any], message: str) -> None:
        try:
            method()
        except Exception as error:
            context = {"message": message, "exception": error, "transport": self, "protocol": self._protocol}
            self._loop.call_exception_handler(context)

    # ----------------------------------------------------------------- closing

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop reading; once what was written is sent, close (``connection_lost(None)``)."""
        if self._closing:
            return
        self._closing = True
        self._stop_reading()
        if not self._unsent and not self._lost:
            self._lost = 1
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        """Close now: what was not sent yet is dropped."""
        self._force_close(None)

    def _fatal_error(self, error: Exception, message: str) -> None:
        if not isinstance(error, OSError):  # a bug somewhere: say so (a reset is no news)
            context = {"message": message, "exception": error, "transport": self, "protocol": self._protocol}
            self._loop.call_exception_handler(context)
        self._force_close(error)

    def _force_close(self, error: Exception | None) -> None:
        if self._lost:
            return
        if self._unsent:
            self._unsent.clear()
            self._loop._remove_writer(self._fd)
        if not self._closing:
            self._closing = True
            self._stop_reading()
        self._lost = 1
        self._loop.call_soon(self._call_connection_lost, error)

    def _call_connection_lost(self, error: Exception | None) -> None:
        self._lost = max(self._lost, 1)
        protocol = self._protocol
        try:
            if protocol is not None:
                protocol.connection_lost(error)
        finally:
            self._sock.close()
            # The transport, its protocol and the connection refer to each other: let go.
            self._protocol = None
            self._connection = None
            self._tls = None


def open_transport(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: Any, peer: Any, tcp: bool | None = None
) -> SocketTransport:
    """Serve an accepted, non-blocking ``sock`` with ``protocol`` (``connection_made`` now).
    ``tcp``: whether it is a TCP socket, if the caller knows (else its family is read)."""
    if tcp is None:
        tcp = sock.family in (socket.AF_INET, socket.AF_INET6)
    if tcp:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # replies go out at once
        except OSError:
            pass  # (the client may already be gone: the first read says so)
    transport = SocketTransport(loop, sock, protocol, peer)
    transport.start()
    return transport


class SocketListener:
    """Accepts connections on one listening socket and serves each with `SocketTransport`
    (in place of ``loop.create_server``, whose accept path runs a task per connection)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: socket.socket, factory: Callable[[], Any], backlog: int
    ) -> None:
        self.sockets = [sock]
        self._loop = loop
        self._sock = sock
        self._factory = factory
        self._backlog = max(1, backlog)
        self._closed = False
        self._retry: asyncio.TimerHandle | None = None
        # What every accepted socket shares with this one, read once: socket.accept() reads
        # them again per connection through Python properties that convert to enums.
        self._family = sock.family
        self._tcp = sock.family in (socket.AF_INET, socket.AF_INET6)
        loop.add_reader(sock.fileno(), self._accept)

    def _accept(self) -> None:
        loop = self._loop
        for _ in range(self._backlog):  # what queued up since the last wake, within the backlog
            try:
                fd, address = cast(Any, self._sock)._accept()  # (socket.accept without its wrapper)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as error:
                if error.errno not in _OUT_OF_RESOURCES:
                    logger.warning("accept failed: %s", error)
                    return
                # The socket stays readable: stop listening for a moment instead of spinning.
                logger.warning("accept failed: %s; accepting again in %.0f s", error, _ACCEPT_RETRY_DELAY)
                loop.remove_reader(self._sock.fileno())
                self._retry = loop.call_later(_ACCEPT_RETRY_DELAY, self._resume)
                return
            try:
                client = socket.socket(self._family, socket.SOCK_STREAM, 0, fd)
            except OSError as error:
                os.close(fd)
                logger.warning("accept failed: %s", error)
                continue
            try:
                client.setblocking(False)
                open_transport(loop, client, self._factory(), address, self._tcp)
            except Exception as error:  # a bug of ours: this connection only
                logger.error("could not serve a connection from %s: %s", address, error, exc_info=error)
                client.close()

    def _resume(self) -> None:
        self._retry = None
        if not self._closed:
            self._loop.add_reader(self._sock.fileno(), self._accept)

    def close(self) -> None:
        """Stop accepting; sessions already accepted go on."""
        if self._closed:
            return
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
        else:
            self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    async def wait_closed(self) -> None:
        """Nothing to wait for: the listening socket is closed in `close`."""

"""TLS over a connection's plain transport, without asyncio's TLS protocol.

On asyncio's own loops, ``loop.start_tls`` puts a pure-Python TLS protocol between
the socket and the SMTP connection: about half of the server's time per message in a TLS
session went there (bench/profile.md), and it holds a read buffer per connection. This
layer does the same job with less: it reads into the loop's shared buffer (readbuffer.py),
moves ciphertext through two ``ssl.MemoryBIO`` and hands plaintext on in one call per
read. OpenSSL does the cryptography in both cases. uvloop's ``start_tls`` is compiled, but
goes through ``ssl.SSLObject``'s Python methods for every record and keeps a buffer per
connection: this layer runs on uvloop's transports as well, and spends about 5 % fewer
instructions per message there (bench/profile.md). It needs only the public transport
API (``set_protocol``, ``pause_reading``/``resume_reading``, ``write``, ``close``).

One object plays two parts: it is the plain transport's protocol (bytes from the socket
come in here) and the SMTP connection's transport (its replies go out through here). It
subclasses neither asyncio class, so that the compiled build makes it a native class: the
plain transport of asyncio's own loops (sockettransport.py) calls it directly.

The layer is the server side only. TLS 1.2 renegotiation is refused by the context
(``OP_NO_RENEGOTIATION``); post-handshake messages of TLS 1.3 are handled by OpenSSL
inside ``read``, their answers flushed after every read. ``close`` sends ``close_notify``
and does not wait for the client's (SMTP ends with ``QUIT``/``221`` first).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterable
from typing import Any, Final, Protocol

from .readbuffer import read_buffer

__all__ = ["TLSLayer", "upgrade"]

logger = logging.getLogger("smtpgate")


class _App(Protocol):
    """What the layer needs of the protocol above it (an `SMTPConnection`)."""

    def data_received(self, data: bytes) -> None: ...

    def eof_received(self) -> bool | None: ...

    def connection_lost(self, exc: Exception | None) -> None: ...

    def pause_writing(self) -> None: ...

    def resume_writing(self) -> None: ...


class _Gone:
    """The app of a layer whose connection is lost: nothing more reaches it."""

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        pass

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


_GONE: Final = _Gone()


class TLSLayer:
    """The server side of one TLS session over ``transport``, for ``app``: a buffered
    protocol for the transport below, a transport for the app above.

    ``handshake`` is a future: its result once the handshake is done, its exception if it
    failed (the alert, if any, was sent) or the connection ended first."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        transport: asyncio.Transport,
        app: _App,
        context: ssl.SSLContext,
    ) -> None:
        self._raw = transport
        self._app = app
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        # What SSLObject's read, write and pending hand every call on to (its OpenSSL
        # connection): called directly, each record skips a Python frame of ssl.py.
        self._records: Any = getattr(self._ssl, "_sslobj", self._ssl)
        self._buffer = read_buffer()
        self.handshake: asyncio.Future[None] = loop.create_future()
        self._established = False
        self._closing = False
        self._error: Exception | None = None

    # ----------------------------------------------------------------- from the socket

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.feed(self._buffer[:nbytes])

    def data_received(self, data: bytes) -> None:
        """For transports that do not read into `get_buffer` (not asyncio's own)."""
        self.feed(data)

    def connection_made(self, transport: Any) -> None:
        """(The layer is put on a transport already connected: see `upgrade`.)"""

    def feed(self, ciphertext: bytes | memoryview) -> None:
        """Bytes from the client: advance the handshake or decrypt and hand on."""
        if self._closing:
            return
        self._incoming.write(ciphertext)
        if self._established or self._advance_handshake():
            self._decrypt()

    def _advance_handshake(self) -> bool:
        """True once the handshake is done (now or before)."""
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return False
        except (ssl.SSLError, ValueError) as error:
            self._flush()  # the alert that tells the client why
            self._fail_handshake(error)
            return False
        self._flush()
        self._established = True
        if not self.handshake.done():
            self.handshake.set_result(None)
        return True

    def _fail_handshake(self, error: Exception) -> None:
        self._closing = True
        if not self.handshake.done():
            self.handshake.set_exception(error)

    def _decrypt(self) -> None:
        """Everything the incoming BIO holds, decrypted into the shared buffer and handed on
        (in pieces of the buffer's size); then the end of the stream, if it came."""
        buffer, incoming = self._buffer, self._incoming
        # typeshed says read() returns bytes; given a buffer it returns a count (Any, so
        # that the compiled build does not check the call's result for bytes)
        tls = self._records
        size = len(buffer)
        filled = 0
        ended = False
        try:
            while True:
                count: int = tls.read(size - filled, buffer[filled:])
                if not count:  # close_notify
                    ended = True
                    break
                filled += count
                if not incoming.pending and not tls.pending():
                    break  # nothing left: spare the exception of one more read
                if filled == size:
                    self._app.data_received(buffer[:filled].tobytes())
                    filled = 0
                    if self._closing:
                        return
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            ended = True
        except ssl.SSLError as error:
            self._flush()
            self._fatal(error)
            return
        if self._outgoing.pending:
            self._flush()  # answers to post-handshake messages
        if filled:
            self._app.data_received(buffer[:filled].tobytes())
        if ended and not self._closing:
            self._app.eof_received()
            self.close()

    def _fatal(self, error: Exception) -> None:
        logger.info("TLS error from %s: %s", self._raw.get_extra_info("peername"), error)
        self._error = error
        self._closing = True
        self._raw.abort()

    def eof_received(self) -> bool:
        if not self._established:
            self._fail_handshake(ConnectionResetError("connection closed during the TLS handshake"))
            return False
        self._app.eof_received()
        return False  # a TLS session cannot be half-closed: the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if not self.handshake.done():
            self.handshake.set_exception(exc or ConnectionResetError("connection closed during the TLS handshake"))
        app, self._app = self._app, _GONE
        app.connection_lost(self._error or exc)  # (the app refers to this layer: let go of it)

    def pause_writing(self) -> None:
        self._app.pause_writing()

    def resume_writing(self) -> None:
        self._app.resume_writing()

    # ----------------------------------------------------------------- to the socket

    def _flush(self) -> None:
        if self._outgoing.pending:
            self._raw.write(self._outgoing.read())

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        if not self._established:
            raise RuntimeError("write before the TLS handshake is done")
        try:
            records = self._records
            written = records.write(data)  # all of it: memory BIOs never push back
            if written < len(data):
                view = memoryview(data)[written:]
                while view:
                    view = view[records.write(view) :]
        except ssl.SSLError as error:
            self._fatal(error)
            return
        self._raw.write(self._outgoing.read())

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        raise NotImplementedError("a TLS session cannot be half-closed")

    def close(self) -> None:
        """Send ``close_notify`` and what is buffered, then close the socket."""
        if self._closing:
            if not self._raw.is_closing():
                self._raw.close()
            return
        self._closing = True
        if self._established:
            try:
                self._ssl.unwrap()
            except (ssl.SSLError, ValueError):
                pass  # the client's close_notify is not awaited
            self._flush()
        self._raw.close()

    def abort(self) -> None:
        self._closing = True
        self._raw.abort()

    def is_closing(self) -> bool:
        return self._closing or self._raw.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._ssl
        if name == "sslcontext":
            return self._ssl.context
        if name == "peercert":
            return self._ssl.getpeercert()
        if name == "cipher":
            return self._ssl.cipher()
        if name == "compression":
            return self._ssl.compression()
        return self._raw.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._raw.pause_reading()

    def resume_reading(self) -> None:
        self._raw.resume_reading()

    def is_reading(self) -> bool:
        return self._raw.is_reading()

    def get_write_buffer_size(self) -> int:
        return self._raw.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._raw.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        limits: tuple[int, int] = self._raw.get_write_buffer_limits()
        return limits

    def set_protocol(self, protocol: Any) -> None:
        self._app = protocol

    def get_protocol(self) -> Any:
        return self._app

    def can_write_eof(self) -> bool:
        return False


async def upgrade(
    loop: asyncio.AbstractEventLoop,
    transport: asyncio.Transport,
    app: _App,
    context: ssl.SSLContext,
    handshake_timeout: float,
    read_too_early: list[bytes] | None = None,
) -> asyncio.Transport:
    """The server side of TLS on ``transport`` for ``app``, once the handshake is done.

    No byte read from the moment of this call reaches ``app`` unencrypted: the TLS
    protocol is on the transport before this first waits. ``read_too_early``: bytes the
    plain protocol read before (implicit TLS on loops that read right after accepting).
    Raises what the handshake raised, or ``asyncio.TimeoutError``; the caller aborts."""
    layer = TLSLayer(loop, transport, app, context)
    transport.set_protocol(layer)  # type: ignore[arg-type]  # (a buffered protocol in all but name)
    if read_too_early:
        layer.feed(b"".join(read_too_early))
    transport.resume_reading()
    await asyncio.wait_for(layer.handshake, handshake_timeout)
    return layer  # type: ignore[return-value]  # (a transport in all but name)

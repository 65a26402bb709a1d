"""Server-side ``start_tls`` with a TLS read buffer sized for SMTP.

asyncio's TLS protocol (Python 3.11+) allocates a 256 KiB read buffer for every
connection before the handshake; an SMTP server holding thousands of TLS sessions pays
that in RSS. On asyncio's own event loops this module builds the same protocol with a
32 KiB buffer (two full TLS records); other loops (uvloop) use their own ``start_tls``.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from typing import Any

from .session import TLSDetails
from .tls import tls_info

__all__ = ["start_tls", "upgrade", "TLS_READ_BUFFER", "tls_details", "feed_early_bytes"]

TLS_READ_BUFFER = 32 * 1024

if sys.version_info >= (3, 11):
    from asyncio import sslproto

    class _SMTPSSLProtocol(sslproto.SSLProtocol):
        max_size = TLS_READ_BUFFER

else:  # pragma: no cover - Python 3.10's TLS protocol has no such buffer
    _SMTPSSLProtocol = None


def _uses_asyncio_start_tls(loop: asyncio.AbstractEventLoop) -> bool:
    return (
        _SMTPSSLProtocol is not None
        and isinstance(loop, asyncio.BaseEventLoop)
        and type(loop).start_tls is asyncio.BaseEventLoop.start_tls
    )


async def start_tls(
    loop: asyncio.AbstractEventLoop,
    transport: asyncio.BaseTransport,
    protocol: asyncio.BaseProtocol,
    context: ssl.SSLContext,
    handshake_timeout: float,
) -> Any:
    """Upgrade ``transport`` to TLS as the server; the new transport, once the handshake
    is done. Like ``loop.start_tls``, the protocol is swapped before the first wait, so no
    byte read after this call starts can reach the old protocol."""
    if not _uses_asyncio_start_tls(loop) or not getattr(transport, "_start_tls_compatible", False):
        return await loop.start_tls(
            transport, protocol, context, server_side=True, ssl_handshake_timeout=handshake_timeout
        )
    assert _SMTPSSLProtocol is not None
    waiter = loop.create_future()
    try:
        ssl_protocol = _SMTPSSLProtocol(
            loop,
            protocol,
            context,
            waiter,
            server_side=True,
            server_hostname=None,
            ssl_handshake_timeout=handshake_timeout,
            call_connection_made=False,
        )
    except TypeError:  # a Python whose TLS protocol takes other arguments: the stock path
        return await loop.start_tls(
            transport, protocol, context, server_side=True, ssl_handshake_timeout=handshake_timeout
        )
    transport.pause_reading()
    transport.set_protocol(ssl_protocol)
    made = loop.call_soon(ssl_protocol.connection_made, transport)
    resumed = loop.call_soon(transport.resume_reading)
    try:
        await waiter
    except BaseException:
        transport.close()
        made.cancel()
        resumed.cancel()
        raise
    return ssl_protocol._app_transport


def tls_details(ssl_object: Any, servername: str | None) -> TLSDetails:
    """``session.tls`` from a finished handshake."""
    info = tls_info(ssl_object)
    try:
        peer = ssl_object.getpeercert() or None
        der = ssl_object.getpeercert(binary_form=True)
    except ValueError:  # no handshake (cannot happen once it finished)
        peer, der = None, None
    return TLSDetails(
        version=info.version,
        cipher=info.name,
        standard_name=info.standard_name,
        servername=servername,
        peer_certificate=peer,
        peer_certificate_der=der,
    )


def feed_early_bytes(protocol: Any, data: bytes) -> None:
    """Hand bytes read too early to the protocol now on the transport (asyncio's and
    uvloop's TLS protocols are buffered protocols; uvloop's is not a Python subclass)."""
    if hasattr(protocol, "get_buffer"):
        view = memoryview(data)
        while view:
            buffer = memoryview(protocol.get_buffer(len(view)))
            size = min(len(buffer), len(view))
            buffer[:size] = view[:size]
            protocol.buffer_updated(size)
            view = view[size:]
    else:
        protocol.data_received(data)


async def upgrade(
    loop: asyncio.AbstractEventLoop,
    transport: asyncio.Transport,
    protocol: asyncio.BaseProtocol,
    context: ssl.SSLContext,
    handshake_timeout: float,
    read_too_early: list[bytes] | None,
) -> Any:
    """`start_tls`, handing it the bytes of the handshake that were read before it
    started (implicit TLS on loops that read right after accepting)."""
    handshake = start_tls(loop, transport, protocol, context, handshake_timeout)
    if not read_too_early:
        # Awaited at once: the protocol is swapped before any more bytes are read,
        # so a ClientHello right behind STARTTLS's 220 cannot reach the core.
        return await handshake
    # start_tls puts its TLS protocol on the transport before its first wait; the bytes
    # read too early go to that protocol.
    started = asyncio.ensure_future(handshake)
    await asyncio.sleep(0)
    feed_early_bytes(transport.get_protocol(), b"".join(read_too_early))
    return await started

"""Listening sockets: binding, and the accept path that reads a PROXY header first.

Without ``use_proxy`` the sockets go to a `SocketListener` (sockettransport.py) on
asyncio's own loops, to ``loop.create_server`` on others. With it, smtpgate accepts
connections itself and reads exactly the PROXY header (never a byte more: with implicit
TLS the ClientHello follows) before handing the socket to its transport.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .proxy import V2_SIGNATURE, ProxyError, ProxyInfo, header_length, parse_proxy_header
from .sockettransport import fits, open_transport

if TYPE_CHECKING:
    from .server import SMTPServer

__all__ = ["bind_socket", "ProxyListener", "read_proxy_header"]

logger = logging.getLogger("smtpgate")


def bind_socket(host: str, port: int, *, backlog: int, reuse_port: bool) -> socket.socket:
    """A listening, non-blocking TCP socket (IPv6 sockets are IPv6-only)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            if not hasattr(socket, "SO_REUSEPORT"):
                raise OSError("reuse_port is not supported on this platform")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def _recv_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = await loop.sock_recv(sock, count - len(data))
        if not chunk:
            raise ProxyError("connection closed before the PROXY header was complete")
        data += chunk
    return data


async def read_proxy_header(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> ProxyInfo:
    """Read one PROXY header from ``sock`` and nothing after it.

    A v2 header says its length in its first 16 bytes. A v1 line is read a byte at a time
    up to its CRLF, each byte checked as it comes, so a line that cannot be a header
    (``PROXY BOGUS``) is refused at once rather than after ``proxy_timeout``.
    """
    data = await _recv_exactly(loop, sock, 6)
    header_length(data)  # refuses at once what cannot start a header
    if data.startswith(V2_SIGNATURE[:6]):
        data += await _recv_exactly(loop, sock, 16 - len(data))
        total = header_length(data)
        assert total is not None
        data += await _recv_exactly(loop, sock, total - len(data))
        return parse_proxy_header(data)
    while True:
        total = header_length(data)  # raises once the line cannot be a header (or is too long)
        if total is not None:
            return parse_proxy_header(data[:total])
        data += await _recv_exactly(loop, sock, 1)


class ProxyListener:
    """Accept loop for one listening socket when the PROXY protocol is in use."""

    def __init__(self, server: SMTPServer, sock: socket.socket, factory: Callable[..., asyncio.BaseProtocol]) -> None:
        self.server = server
        self.sockets = [sock]
        self._factory = factory
        self._loop = asyncio.get_running_loop()
        self._pending: set[asyncio.Task[None]] = set()
        self._task = self._loop.create_task(self._accept_loop(sock))

    async def _accept_loop(self, sock: socket.socket) -> None:
        while True:
            try:
                client, address = await self._loop.sock_accept(sock)
            except asyncio.CancelledError:
                raise
            except OSError as error:  # e.g. EMFILE: back off instead of spinning
                logger.warning("accept failed: %s", error)
                await asyncio.sleep(0.1)
                continue
            task = self._loop.create_task(self._handshake(client, address))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _handshake(self, client: socket.socket, address: Any) -> None:
        server = self.server
        peer = str(address[0]) if isinstance(address, tuple) else str(address)
        options = server.options
        client.setblocking(False)
        if options.max_clients and len(server.connections) + len(self._pending) > options.max_clients * 2:
            client.close()  # far over the limit: do not even read headers
            return
        info: ProxyInfo | None = None
        trusted = peer in server.proxy_trust
        if trusted:
            try:
                info = await asyncio.wait_for(read_proxy_header(self._loop, client), options.proxy_timeout)
            except (ProxyError, OSError, asyncio.TimeoutError) as error:
                reason = "timed out" if isinstance(error, asyncio.TimeoutError) else str(error)
                logger.warning("closing connection from %s: bad PROXY header: %s", peer, reason)
                server.emit("error", ProxyError(f"PROXY header from {peer}: {reason}"), None)
                client.close()
                return
            except asyncio.CancelledError:
                client.close()
                raise
        try:
            local = client.getsockname()
        except OSError:
            local = None
        try:
            if fits(self._loop):
                open_transport(self._loop, client, self._factory(info, trusted, address, local), address)
            else:
                await self._loop.connect_accepted_socket(
                    lambda: self._factory(proxy=info, proxy_trusted=trusted, peer=address, local=local), client
                )
        except OSError as error:
            logger.info("connection from %s lost before it started: %s", peer, error)
            client.close()

    def close(self) -> None:
        self._task.cancel()
        for task in list(self._pending):
            task.cancel()
        for sock in self.sockets:
            sock.close()

    async def wait_closed(self) -> None:
        tasks = [self._task, *self._pending]
        await asyncio.gather(*tasks, return_exceptions=True)

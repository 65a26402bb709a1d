"""SMTPServer: options, listening sockets, the connection registry, events, shutdown."""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .connection import SMTPConnection
from .context import ConnectionContext
from .listener import ProxyListener, bind_socket
from .options import HANDLER_NAMES, ServerOptions, build_options
from .protocol.core import ProtocolConfig
from .proxy import ProxyInfo, TrustList
from .registry import ConnectionRegistry
from .tls import TLS_OPTION_NAMES, TLSContexts, TLSOptions

__all__ = ["SMTPServer"]

logger = logging.getLogger("smtpgate")

EVENTS = ("listening", "connect", "close", "error")


class Handlers:
    """The handlers in use: given as options, or methods of a subclass, or None."""

    def __init__(self, server: SMTPServer, options: ServerOptions) -> None:
        for name in HANDLER_NAMES:
            handler = getattr(options, name)
            if handler is None and getattr(type(server), name, None) is not None:
                handler = getattr(server, name)
            setattr(self, name, handler)
        self.on_connect: Callable[..., Any] | None
        self.on_secure: Callable[..., Any] | None
        self.on_auth: Callable[..., Any] | None
        self.on_mail_from: Callable[..., Any] | None
        self.on_rcpt_to: Callable[..., Any] | None
        self.on_data: Callable[..., Any] | None
        self.on_close: Callable[..., Any] | None
        on_data = self.on_data
        self.on_data_is_async = on_data is not None and (
            inspect.iscoroutinefunction(on_data) or inspect.iscoroutinefunction(getattr(on_data, "__call__", None))  # noqa: B004
        )


class SMTPServer:
    """An SMTP (or LMTP) server.

    Options are keyword arguments (every one is in the configuration reference); handlers
    are options too, or methods of a subclass:

    ```python
    server = SMTPServer(on_data=on_data, size=10 * 1024 * 1024)
    await server.listen(2525, host="127.0.0.1")
    ...
    await server.close()
    ```
    """

    def __init__(self, **options: Any) -> None:
        self.options: ServerOptions = build_options(options)
        self.handlers = Handlers(self, self.options)
        opts = self.options
        starttls = "STARTTLS" not in opts.disabled_commands
        self.protocol_config = ProtocolConfig(
            name=opts.name,
            banner=opts.banner,
            lmtp=opts.lmtp,
            size=opts.size,
            hide_size=opts.hide_size,
            hide_pipelining=opts.hide_pipelining,
            hide_8bitmime=opts.hide_8bitmime,
            hide_smtputf8=opts.hide_smtputf8,
            hide_enhancedstatuscodes=opts.hide_enhancedstatuscodes,
            hide_dsn=opts.hide_dsn,
            hide_requiretls=opts.hide_requiretls,
            chunking=not opts.hide_chunking,
            starttls=starttls,
            hide_starttls=opts.hide_starttls,
            needs_upgrade=opts.needs_upgrade and not opts.secure,
            disabled_commands=opts.disabled_commands,
            helo_response=opts.helo_response,
            max_recipients=opts.max_recipients,
            max_command_length=opts.max_command_length,
            max_unrecognized_commands=opts.max_unrecognized_commands,
            bare_lf=opts.bare_lf,
            reject_oversized=opts.reject_oversized,
            accept_unknown_params=opts.accept_unknown_params,
            auth_methods=opts.auth_methods if self.handlers.on_auth is not None else (),
            auth_optional=opts.auth_optional,
            allow_insecure_auth=opts.allow_insecure_auth,
            auth_required_message=opts.auth_required_message,
            max_unauthenticated_commands=int(opts.max_allowed_unauthenticated_commands or 0),
            max_auth_failures=opts.max_auth_failures,
        )
        self.tls = TLSContexts(
            TLSOptions(**{name: getattr(opts, name) for name in TLS_OPTION_NAMES}),
            opts.sni_options,
            opts.name,
            needed=opts.secure or "STARTTLS" not in opts.disabled_commands,
        )
        self.proxy_trust = TrustList(opts.use_proxy)
        self.xclient_trust = TrustList(opts.use_xclient)
        self.xforward_trust = TrustList(opts.use_xforward)
        self.connections: ConnectionRegistry[SMTPConnection] = ConnectionRegistry()
        self._servers: list[Any] = []  # asyncio Servers or ProxyListeners
        self._listeners: dict[str, list[Callable[..., Any]]] = {name: [] for name in EVENTS}
        self._closing = False
        self._all_closed: asyncio.Event | None = None
        self._drained: asyncio.Future[None] | None = None
        self._connection_context = ConnectionContext.of(self)

    # ----------------------------------------------------------------- events

    def on(self, event: str, callback: Callable[..., Any]) -> None:
        """Call ``callback`` on ``"listening"`` (server), ``"connect"`` (session),
        ``"error"`` (exception, session or None) or ``"close"`` (no arguments)."""
        if event not in self._listeners:
            raise ValueError(f"unknown event {event!r}; expected one of {EVENTS}")
        if not callable(callback):
            raise TypeError("callback must be callable")
        self._listeners[event].append(callback)

    def emit(self, event: str, *args: Any) -> None:
        """Call the listeners of ``event``; a failing listener is logged, never raised."""
        for callback in self._listeners[event]:
            try:
                result = callback(*args)
                if inspect.isawaitable(result):
                    asyncio.ensure_future(result)
            except Exception:
                logger.exception("%r listener failed", event)

    # ----------------------------------------------------------------- listening

    async def listen(
        self,
        port: int = 25,
        host: str | Iterable[str] | None = None,
        *,
        backlog: int = 511,
        reuse_port: bool = False,
    ) -> None:
        """Start accepting connections.

        ``host=None`` listens on every IPv4 and IPv6 address; a list listens on each.
        ``port=0`` picks a free port (the same one for every host): read ``server.port``.
        Raises ``OSError`` with the address when the port cannot be bound.
        """
        loop = asyncio.get_running_loop()
        if self._closing:
            raise RuntimeError("server is closed")
        if host is None:
            hosts: list[str] = ["0.0.0.0"]
            if socket.has_ipv6:
                hosts.append("::")
            optional = {"::"}
        elif isinstance(host, str):
            hosts, optional = [host], set()
        else:
            hosts, optional = list(host), set()
        started: list[Any] = []
        for item in hosts:
            try:
                sock = bind_socket(item, port, backlog=backlog, reuse_port=reuse_port)
            except (OSError, UnicodeError) as error:
                if item in optional and started:
                    continue
                for listener in started:
                    listener.close()
                errno = getattr(error, "errno", None)
                reason = getattr(error, "strerror", None) or error
                raise OSError(errno, f"cannot listen on {item}:{port}: {reason}") from None
            if self.proxy_trust.enabled:
                started.append(ProxyListener(self, sock, self._new_connection))
            else:
                started.append(await loop.create_server(self._new_connection, sock=sock, backlog=backlog))
            if port == 0:
                port = sock.getsockname()[1]
        self._servers.extend(started)
        logger.info("listening on %s", ", ".join(f"{a[0]}:{a[1]}" for a in self.addresses))
        self.emit("listening", self)

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(host, port) of every listening socket."""
        found = []
        for server in self._servers:
            for sock in server.sockets:
                name = sock.getsockname()
                found.append((str(name[0]), int(name[1])))
        return found

    @property
    def port(self) -> int:
        """The port listened on (useful after ``listen(0)``)."""
        addresses = self.addresses
        if not addresses:
            raise RuntimeError("server is not listening")
        return addresses[0][1]

    @property
    def closing(self) -> bool:
        """True once ``close()`` was called."""
        return self._closing

    @property
    def listening(self) -> bool:
        """True between ``listen()`` and ``close()``."""
        return bool(self._servers) and not self._closing

    async def serve_forever(self) -> None:
        """Wait until the server is closed (from another task or a signal handler)."""
        if self._all_closed is None:
            self._all_closed = asyncio.Event()
        await self._all_closed.wait()

    async def __aenter__(self) -> SMTPServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ----------------------------------------------------------------- connections

    def _new_connection(
        self,
        proxy: ProxyInfo | None = None,
        proxy_trusted: bool = False,
        peer: Any = None,
        local: Any = None,
    ) -> SMTPConnection:
        context = self._connection_context
        return SMTPConnection(context, proxy=proxy, proxy_trusted=proxy_trusted, peer=peer, local=local)

    async def close(self) -> None:
        """Stop listening; let sessions finish their transaction for up to
        ``close_timeout`` seconds, then answer the rest ``421`` and close them."""
        if self._closing:
            if self._drained is not None:
                await asyncio.shield(self._drained)
            return
        self._closing = self.connections.closing = True
        loop = asyncio.get_running_loop()
        self._drained = loop.create_future()
        for server in self._servers:
            server.close()
        connections = self.connections
        for connection in connections.everyone():
            connection.shutdown()
        if not await connections.wait_empty(self.options.close_timeout):
            logger.info("close timeout: closing %d sessions", len(connections.everyone()))
            for connection in connections.everyone():
                connection.force_close()
            if not await connections.wait_empty(5.0):
                logger.warning("%d sessions did not end in time", len(connections.everyone()))
        if not self._drained.done():
            self._drained.set_result(None)
        for server in self._servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 1.0)
            except asyncio.TimeoutError:
                pass
        self._servers.clear()
        if self._all_closed is not None:
            self._all_closed.set()
        self.emit("close")

    # ----------------------------------------------------------------- TLS

    def update_secure_context(self, **tls_options: Any) -> None:
        """Replace TLS options (``key``, ``cert``, ``ca``, ..., ``sni_options``) for new
        connections; sessions already running keep theirs. Raises, keeping the old
        certificate, if the new one cannot be loaded."""
        unknown = set(tls_options) - set(TLS_OPTION_NAMES) - {"sni_options"}
        if unknown:
            raise TypeError(f"update_secure_context: unknown TLS option(s) {sorted(unknown)}")
        current = self.tls.default_options
        merged = {name: tls_options.get(name, getattr(current, name)) for name in TLS_OPTION_NAMES}
        # Entries inherit from the new top-level options, unless new entries are given.
        sni = tls_options.get("sni_options", self.tls.sni_given)
        if sni is not None and not isinstance(sni, Mapping):
            raise TypeError("sni_options must be a mapping")
        check = {k: v for k, v in merged.items() if k in ("request_cert", "reject_unauthorized", "min_version")}
        build_options(check)
        self.tls.update(TLSOptions(**merged), sni)
        logger.info("TLS context updated")

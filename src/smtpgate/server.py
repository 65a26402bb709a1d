"""SMTPServer: options, listening sockets, the connection registry, events, shutdown."""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .connection import SMTPConnection, SMTPProtocol
from .context import ConnectionContext
from .listener import ProxyListener, bind_socket
from .options import HANDLER_ARGUMENTS, HANDLER_NAMES, ServerOptions, ServerSettings, build_options
from .protocol.core import ProtocolConfig
from .proxy import ProxyInfo, TrustList
from .registry import ConnectionRegistry
from .sockettransport import SocketListener, fits
from .tls import TLS_OPTION_NAMES, TLSContexts, TLSOptions, TLSSettings, check_tls_options

if sys.version_info >= (3, 11):
    from typing import Unpack
elif TYPE_CHECKING:
    from typing_extensions import Unpack


class TLSUpdate(TLSSettings, total=False):
    """The keyword arguments of `SMTPServer.update_secure_context`."""

    sni_options: Mapping[str, TLSSettings | TLSOptions] | None


__all__ = ["SMTPServer", "check_port"]

logger = logging.getLogger("smtpgate")

EVENTS = ("listening", "connect", "close", "error")


def check_port(port: object) -> int:
    """A TCP port to listen on: 1-65535, or 0 for a free one; anything else raises."""
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, got {type(port).__name__}")
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be between 0 and 65535 (0 picks a free port), got {port}")
    return port


def check_handler(name: str, handler: Callable[..., Any]) -> None:
    """Refuse a handler that cannot be called with the arguments it will be given."""
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):  # a builtin without a signature: cannot tell
        return
    arguments = HANDLER_ARGUMENTS[name]
    try:
        signature.bind(*arguments)
    except TypeError as error:
        shown = getattr(handler, "__qualname__", None) or type(handler).__qualname__
        raise TypeError(
            f"handler {name!r} is called as {name}({', '.join(arguments)}), "
            f"but {shown}{signature} cannot take that: {error}"
        ) from None


class Handlers:
    """The handlers in use: given as options, or methods of a subclass, or None."""

    def __init__(self, server: SMTPServer, options: ServerOptions) -> None:
        for name in HANDLER_NAMES:
            handler = getattr(options, name)
            if handler is None and getattr(type(server), name, None) is not None:
                handler = getattr(server, name)
            if handler is not None:
                check_handler(name, handler)
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

    Options are keyword arguments, typed by `ServerSettings` (every one is in the
    configuration reference); handlers are options too, or methods of a subclass. Unknown,
    ill-typed and contradictory options raise ``TypeError``/``ValueError`` here.

    ```python
    server = SMTPServer(on_data=on_data, size=10 * 1024 * 1024)
    server.run(2525, host="127.0.0.1")  # until SIGINT/SIGTERM; or, in a running loop:
    await server.listen(2525, host="127.0.0.1")
    ...
    await server.close()
    ```
    """

    def __init__(self, **options: Unpack[ServerSettings]) -> None:
        self.options: ServerOptions = build_options(dict(options))
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
        self._servers: list[Any] = []  # SocketListeners, asyncio Servers or ProxyListeners
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
        port = check_port(port)
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
            elif fits(loop):
                started.append(SocketListener(loop, sock, self._new_connection, backlog))
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

    async def serve(
        self,
        port: int = 25,
        host: str | Iterable[str] | None = None,
        *,
        backlog: int = 511,
        reuse_port: bool = False,
    ) -> None:
        """Listen, serve until SIGINT or SIGTERM (or until ``close()`` is called elsewhere),
        then close gracefully, as ``close()`` does.

        A second signal while closing ends the remaining sessions at once (``421``).
        Signals are handled only in the main thread (elsewhere, call ``close()``).
        """
        await self.listen(port, host, backlog=backlog, reuse_port=reuse_port)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        installed: list[signal.Signals] = []

        def on_signal(signum: signal.Signals) -> None:
            if not stop.is_set():
                logger.info("%s: closing (sessions may finish within %s s)", signum.name, self.options.close_timeout)
                stop.set()
            else:
                logger.info("%s again: closing %d sessions now", signum.name, len(self.connections.everyone()))
                for connection in self.connections.everyone():
                    connection.force_close()

        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(signum, on_signal, signum)
                except (NotImplementedError, RuntimeError, ValueError):  # e.g. Windows: Ctrl-C raises
                    continue
                installed.append(signum)
        waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.serve_forever())}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            await self.close()
        finally:
            for waiter in waiters:
                waiter.cancel()
            for signum in installed:
                loop.remove_signal_handler(signum)

    def run(
        self,
        port: int = 25,
        host: str | Iterable[str] | None = None,
        *,
        backlog: int = 511,
        reuse_port: bool = False,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    ) -> None:
        """Serve on a new event loop until SIGINT (Ctrl-C) or SIGTERM, then close
        gracefully and return: the whole life of a server in one call (see `serve`).

        ```python
        SMTPServer(on_data=on_data).run(2525, host="127.0.0.1")
        ```

        ``loop_factory`` makes the loop (default ``asyncio.new_event_loop``; e.g.
        ``uvloop.new_event_loop``). Raises what ``listen()`` raises.
        """
        loop = (loop_factory or asyncio.new_event_loop)()
        try:
            try:
                loop.run_until_complete(self.serve(port, host, backlog=backlog, reuse_port=reuse_port))
            except KeyboardInterrupt:  # where signal handlers cannot be installed
                loop.run_until_complete(self.close())
        finally:
            try:
                leftover = [task for task in asyncio.all_tasks(loop) if not task.done()]
                for task in leftover:  # e.g. serve() after a KeyboardInterrupt
                    task.cancel()
                if leftover:
                    loop.run_until_complete(asyncio.wait(leftover))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

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
    ) -> SMTPProtocol:
        context = self._connection_context
        # The protocol refers to the connection, not the other way round: once the transport lets
        # go of the protocol, reference counting frees the connection (no cycle for the collector).
        return SMTPProtocol(SMTPConnection(context, proxy=proxy, proxy_trusted=proxy_trusted, peer=peer, local=local))

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

    def update_secure_context(self, **tls_options: Unpack[TLSUpdate]) -> None:
        """Replace TLS options (``key``, ``cert``, ``ca``, ..., ``sni_options``) for new
        connections; sessions already running keep theirs. Raises, keeping the old
        certificate, if the new one cannot be loaded."""
        unknown = set(tls_options) - set(TLS_OPTION_NAMES) - {"sni_options"}
        if unknown:
            raise TypeError(f"update_secure_context: unknown TLS option(s) {sorted(unknown)}")
        current = self.tls.default_options
        merged: dict[str, Any] = {name: tls_options.get(name, getattr(current, name)) for name in TLS_OPTION_NAMES}
        # Entries inherit from the new top-level options, unless new entries are given.
        sni = tls_options.get("sni_options", self.tls.sni_given)
        if sni is not None and not isinstance(sni, Mapping):
            raise TypeError("sni_options must be a mapping")
        new = TLSOptions(**merged)
        check_tls_options(new)
        self.tls.update(new, sni)
        logger.info("TLS context updated")

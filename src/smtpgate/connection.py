"""One client connection: the asyncio shell around the protocol core.

It moves bytes between the socket and the core, calls the user's handlers for the events
that need a decision, feeds the ``on_data`` stream with backpressure, runs the idle timer
and the TLS handshakes, and guarantees exactly one ``on_close`` per session.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import logging
import re
import secrets
import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from .errors import SMTPError
from .protocol.addresses import plain_ip
from .protocol.core import ServerProtocol
from .protocol.events import (
    AuthAttempt,
    BodyAborted,
    CloseConnection,
    DataChunk,
    DataEnd,
    DataStart,
    MailFrom,
    RcptTo,
    StartTLS,
    XClient,
)
from .proxy import V2_SIGNATURE, ProxyInfo
from .sasl import AuthResult
from .session import Session, TLSDetails
from .starttls import start_tls
from .stream import DataStream, DataStreamError
from .tls import tls_info

if TYPE_CHECKING:
    from .server import SMTPServer

__all__ = ["SMTPConnection", "new_session_id"]

logger = logging.getLogger("smtpgate")

_PROXY_PROBE_HOLD = 1.0  # seconds blank lines wait to show whether they start a PROXY v2 header
_BODY_PROGRESS_BYTES = 1024  # body bytes without a line end that count as activity
_CLOSE_FLUSH_GRACE = 5.0  # seconds unread replies may take to drain once we close
_HANDLER_CLEANUP_TIME = 5.0  # seconds an on_data handler gets to finish after a disconnect
MAX_PENDING_INPUT = 64 * 1024  # unprocessed bytes before the socket stops being read
_HOSTNAME = re.compile(r"(?=.{1,253}$)(?:(?!-)[a-z0-9_-]{1,63}(?<!-)\.)*(?!-)[a-z0-9_-]{1,63}(?<!-)")
_INTERNAL_ERROR = SMTPError(451, "Error: internal server error", enhanced="4.3.0")
_AUTH_FAILED = SMTPError(535, "Error: authentication failed", enhanced="5.7.8")
_HANDLER_TIMEOUT = SMTPError(451, "Error: timeout while processing, try again later", enhanced="4.3.0")


def new_session_id() -> str:
    """16 characters of base32: 80 random bits."""
    return base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()


class _ConnectionLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = self.extra or {}
        kwargs.setdefault("extra", {}).update(extra)
        return f"[{extra.get('connection_id')}] {msg}", kwargs


def _plain_address(address: str) -> str:
    """Drop IPv4-mapped IPv6 prefixes and scope ids; normalise IPv6 (non-IP text as is)."""
    try:
        return plain_ip(address)
    except ValueError:
        return address


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


def _feed(protocol: Any, data: bytes) -> None:
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


class SMTPConnection(asyncio.Protocol):
    """The asyncio protocol for one client."""

    def __init__(
        self,
        server: SMTPServer,
        proxy: ProxyInfo | None = None,
        proxy_trusted: bool = False,
        peer: Any = None,
        local: Any = None,
    ) -> None:
        self.server = server
        self._proxy = proxy
        self._peer = peer  # addresses known at accept time: a socket reset early has none
        self._local = local
        self._proxy_probe = b""
        self._watch_for_proxy_header = server.proxy_trust.enabled and not proxy_trusted
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.core: ServerProtocol | None = None
        self.session: Session | None = None
        self.log: logging.LoggerAdapter[logging.Logger] | Any = None
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._write_ready: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._lost = False
        self._timer: asyncio.TimerHandle | None = None
        self._last_activity = 0.0
        self._seen_progress = 0
        self._busy = False  # waiting on a handler: the idle timer does not fire
        self._stream: DataStream | None = None
        self._data_task: asyncio.Future[Any] | None = None
        self._data_deferred = False  # an async on_data not started yet (see _begin_data)
        self._deciding_data = False  # the session task waits for on_data's verdict
        self._stream_blocked = False
        self._shutting_down = False
        self._tls_active = False
        self._tls_early_data: list[bytes] | None = None
        self._opened = False  # on_connect's turn came: on_close is owed
        self._body_progress = 0  # body bytes since the idle timer was last refreshed
        self._before_tls: list[bytes] | None = None  # implicit TLS: bytes read before start_tls
        self._pending_event: object | None = None  # taken by _pump, for the session task
        self._must_wait_for_space = False

    # ----------------------------------------------------------------- asyncio callbacks

    def connection_made(self, base_transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, so no isinstance check.
        transport = cast(asyncio.Transport, base_transport)
        self.transport = transport
        server = self.server
        options = server.options
        peer = transport.get_extra_info("peername") or self._peer or ("", 0)
        local = transport.get_extra_info("sockname") or self._local or ("", 0)
        session = Session(
            id=new_session_id(),
            local_address=_plain_address(str(local[0])) if isinstance(local, tuple) else str(local),
            local_port=int(local[1]) if isinstance(local, tuple) else 0,
            remote_address=_plain_address(str(peer[0])) if isinstance(peer, tuple) else str(peer),
            remote_port=int(peer[1]) if isinstance(peer, tuple) else 0,
        )
        proxy = self._proxy
        if proxy is not None and not proxy.local and proxy.source_address is not None:
            session.remote_address = _plain_address(proxy.source_address)
            session.remote_port = proxy.source_port or 0
        session.client_hostname = f"[{session.remote_address}]"
        session.proxy = proxy
        self.session = session
        self.log = _ConnectionLogger(logger, {"connection_id": session.id})
        self.core = ServerProtocol(server.protocol_config, session)
        self.core.xclient_allowed = session.remote_address in server.xclient_trust
        self.core.xforward_allowed = session.remote_address in server.xforward_trust
        if proxy is not None:
            self.log.debug("PROXY v%d: client %s:%s", proxy.version, session.remote_address, session.remote_port)
        refusal = None
        if server.closing:
            refusal = f"{options.name} Server shutting down"
        elif options.max_clients and len(server.connections) >= options.max_clients:
            self.log.info("refused %s: too many clients (%d)", session.remote_address, options.max_clients)
            refusal = f"{options.name} Too many connected clients, try again in a moment"
        if refusal is not None:
            self.core.close(421, refusal, "4.7.0" if server.closing is False else "4.3.2")
            transport.write(self.core.data_to_send())
            transport.close()
            self._lost = True
            return
        server.connections.add(self)
        server.connection_started(self)
        if options.secure:
            # The ClientHello should wait in the kernel for start_tls. Some loops (uvloop)
            # start reading after connection_made regardless: what arrives is kept for TLS.
            self._before_tls = []
            transport.pause_reading()
        self._last_activity = self.loop.time()
        self._timer = self.loop.call_at(self._last_activity + options.socket_timeout, self._on_timer)
        greeted = False
        if not options.secure and options.disable_reverse_lookup and server.handlers.on_connect is None:
            # Nothing to wait for: greet now, before any client byte can be read (the
            # early-talker check then holds on every event loop) and without a task hop.
            self._greet()
            greeted = self._opened = True
        self._task = self.loop.create_task(self._run(greeted))

    def data_received(self, data: bytes) -> None:
        core = self.core
        if core is None or self._lost:
            return
        before_tls = self._before_tls
        if before_tls is not None:
            before_tls.append(data)
            if sum(map(len, before_tls)) > MAX_PENDING_INPUT:
                self.log.info("closing: %d bytes before the TLS handshake", MAX_PENDING_INPUT)
                self._lost = True
                self.transport.abort()  # type: ignore[union-attr]
                self._wake()
            elif self.transport is not None:
                self.transport.pause_reading()
            return
        if self._tls_early_data is not None:
            # Decrypted bytes that arrive before start_tls() returned: keep them for after
            # the core has been told that TLS is up.
            self._tls_early_data.append(data)
            return
        if self._watch_for_proxy_header:
            # An untrusted peer sending a PROXY header (in one piece or several) is closed,
            # never read as SMTP. Bytes that may still become a header are held back.
            probe = self._proxy_probe + data
            if probe.startswith(b"PROXY ") or probe.startswith(V2_SIGNATURE):
                self.log.warning(
                    "closing: PROXY header from untrusted peer %s", self.session and self.session.remote_address
                )
                self._proxy_probe = b""
                self._lost = True
                if self.transport is not None:
                    self.transport.abort()
                self._wake()
                return
            if len(probe) < 6 and b"PROXY ".startswith(probe):
                self._proxy_probe = probe  # no complete line yet: no reply is withheld
                return
            if len(probe) < len(V2_SIGNATURE) and V2_SIGNATURE.startswith(probe):
                # Blank lines may begin a v2 signature: held back, but only for a moment,
                # so that a client's lone CRLF is still answered.
                if not self._proxy_probe:
                    self.loop.call_later(_PROXY_PROBE_HOLD, self._release_proxy_probe)
                self._proxy_probe = probe
                return
            self._watch_for_proxy_header = False
            self._proxy_probe = b""
            data = probe
        if core.in_body:
            # Progress in a body is a whole line or a fair amount of bytes: a client that
            # trickles a byte at a time is still cut by socket_timeout (slowloris).
            self._body_progress += len(data)
            if self._body_progress >= _BODY_PROGRESS_BYTES or b"\n" in data:
                self._body_progress = 0
                self._last_activity = self.loop.time()
        core.receive_data(data)
        if not self._reading_paused and core.buffered > MAX_PENDING_INPUT and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
        waiter = self._wakeup
        if waiter is not None and not waiter.done():
            try:
                run_task = self._pump()
            except Exception as error:  # a bug of ours: end this session only, as _run does
                self._pending_event = None
                self._session_failed(error)
                run_task = True
            if run_task:
                waiter.set_result(None)

    def _pump(self) -> bool:
        """Handle, right here, the events that need no handler (replies to plain commands,
        body chunks, MAIL/RCPT without handlers), sparing a task wake-up per command.

        Called only while the session task waits for input. True means the task must run:
        an event needs a handler or a wait, and it is left in ``_pending_event``.
        """
        core = self.core
        assert core is not None
        if self._writing_paused or self._shutting_down or self._lost:
            return True
        while True:
            event = core.next_event()
            if event is None:
                break
            if not self._handle_now(event):
                self._pending_event = event
                return True
            if self._must_wait_for_space:
                return True
        self._note_progress()
        self._flush()
        self._resume_reading_if_drained()
        return False

    def _handle_now(self, event: object) -> bool:
        """Handle an event that needs no handler and no wait; False leaves it to the task.

        A body chunk that fills the handler's stream sets ``_must_wait_for_space``."""
        kind = type(event)
        if kind is DataChunk:
            stream = self._stream
            if stream is not None and not stream.feed(event.data):  # type: ignore[attr-defined]
                self._must_wait_for_space = True
        elif kind is DataStart:
            self._begin_data()
            self.core.accept()  # type: ignore[union-attr]
        elif (kind is MailFrom and self.server.handlers.on_mail_from is None) or (
            kind is RcptTo and self.server.handlers.on_rcpt_to is None
        ):
            self.core.accept()  # type: ignore[union-attr]
        else:
            return False
        return True

    def _note_progress(self) -> None:
        """Completed commands count as activity for the idle timer."""
        core = self.core
        if core is not None and core.progress != self._seen_progress:
            self._seen_progress = core.progress
            self._last_activity = self.loop.time()

    def _resume_reading_if_drained(self) -> None:
        if self._reading_paused and self.core is not None and self.core.buffered <= MAX_PENDING_INPUT // 2:
            self._reading_paused = False
            if self.transport is not None and not self._lost:
                self.transport.resume_reading()

    def _release_proxy_probe(self) -> None:
        """Held-back blank lines did not become a PROXY v2 header: they are SMTP after all."""
        probe = self._proxy_probe
        if self._watch_for_proxy_header and probe and not self._lost:
            self._watch_for_proxy_header = False
            self._proxy_probe = b""
            self.data_received(probe)

    def eof_received(self) -> bool:
        if self.core is not None:
            self.core.receive_eof()
        self._wake()
        return not self._tls_active  # keep the write side open to answer (not possible over TLS)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._stream is not None:
            self._stream.abort(DataStreamError("connection closed before the message was received in full"))
        self._wake()
        writer = self._write_ready
        if writer is not None and not writer.done():
            writer.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        writer = self._write_ready
        if writer is not None and not writer.done():
            writer.set_result(None)

    # ----------------------------------------------------------------- plumbing

    def _wake(self) -> None:
        waiter = self._wakeup
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait_input(self) -> None:
        self._flush()
        self._resume_reading_if_drained()
        if self._lost:
            return
        self._wakeup = self.loop.create_future()
        try:
            await self._wakeup
        finally:
            self._wakeup = None

    def _flush(self) -> None:
        core = self.core
        transport = self.transport
        if core is None or transport is None:
            return
        data = core.data_to_send()
        if data and not self._lost:
            transport.write(data)

    async def _wait_writable(self) -> None:
        while self._writing_paused and not self._lost:
            self._write_ready = self.loop.create_future()
            await self._write_ready

    def _on_timer(self) -> None:
        self._timer = None
        if self._lost or self.core is None:
            return
        timeout = self.server.options.socket_timeout
        now = self.loop.time()
        if self._busy or self._stream_blocked or self._tls_early_data is not None:
            # Waiting on a handler, or in a TLS handshake (bounded by its own timeout,
            # socket_timeout, and reported as a handshake failure).
            self._last_activity = now
        elif now - self._last_activity >= timeout:
            self.log.info("idle for %.0f s: closing", timeout)
            self.core.close(421, f"{self.server.options.name} Error: timeout exceeded", "4.4.2")
            self._flush()
            self._close_transport()
            self._wake()
            return
        self._timer = self.loop.call_at(self._last_activity + timeout, self._on_timer)

    def _close_transport(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()
            if transport.get_write_buffer_size():
                # A client that does not read would hold the connection open forever
                # while close() waits to flush: give the last replies a moment, then abort.
                grace = min(_CLOSE_FLUSH_GRACE, self.server.options.socket_timeout)
                self.loop.call_later(grace, transport.abort)

    # ----------------------------------------------------------------- session

    async def _run(self, greeted: bool = False) -> None:
        core = self.core
        session = self.session
        assert core is not None and session is not None
        connected = False
        try:
            connected = greeted or await self._start()
            if connected:
                await self._serve()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug of ours: log it, end this session only
            self._session_failed(error)
        finally:
            await self._finish(connected)

    def _session_failed(self, error: Exception) -> None:
        """A bug of ours: log it with its traceback, report it, answer 421."""
        self.log.error("session failed: %s", error, exc_info=error)
        self.server.emit("error", error, self.session)
        if not self._lost and self.core is not None:
            try:
                self.core.close(421, f"{self.server.options.name} Error: internal server error", "4.3.0")
            except Exception:  # the core itself is broken: just close
                self.log.debug("could not say goodbye", exc_info=True)
            self._flush()
            self._close_transport()

    async def _start(self) -> bool:
        """Reverse DNS, implicit TLS, on_connect, then the greeting."""
        server = self.server
        options = server.options
        core = self.core
        session = self.session
        assert core is not None and session is not None
        self.log.debug("connection from %s:%s", session.remote_address, session.remote_port)
        if not options.disable_reverse_lookup:
            session.client_hostname = await self._reverse_lookup(session.remote_address)
            if self._lost:
                return False  # gone during the lookup: no session to open (nor to close)
        if options.secure:
            if not await self._handshake():
                return False
        handler = server.handlers.on_connect
        self._opened = True
        if handler is not None:
            error = await self._call_for_verdict(handler, session)
            if error is not None:
                error = self._as_closing_reply(error)
                self.log.info("on_connect refused: %s", error)
                core.refuse_connection(error)
                return True
        if options.secure and server.handlers.on_secure is not None:
            if not await self._on_secure():
                return True
        if self._lost:
            return False
        self._greet()
        self._replay_early_data()  # implicit TLS: what the client sent right after the handshake
        return True

    def _greet(self) -> None:
        """The session is accepted: the connect event, then the 220 greeting."""
        assert self.core is not None
        self.server.emit("connect", self.session)
        self.core.start()
        self._flush()

    async def _reverse_lookup(self, address: str) -> str:
        resolver = self.server.options.resolver
        try:
            if resolver is not None:
                result = resolver(address)
                if inspect.isawaitable(result):
                    result = await asyncio.wait_for(result, self.server.options.reverse_lookup_timeout)
                name = str(result or "")
            else:
                info = await asyncio.wait_for(
                    self.loop.getnameinfo((address, 0), socket.NI_NAMEREQD),
                    self.server.options.reverse_lookup_timeout,
                )
                name = info[0]
        except (OSError, asyncio.TimeoutError, UnicodeError, ValueError):
            return f"[{address}]"
        except Exception as error:  # a custom resolver failing must not end the session
            self.log.warning("reverse lookup failed: %r", error)
            return f"[{address}]"
        name = name.rstrip(".").lower()
        return name if _HOSTNAME.fullmatch(name) else f"[{address}]"

    async def _serve(self) -> None:
        core = self.core
        session = self.session
        handlers = self.server.handlers
        assert core is not None and session is not None
        while True:
            if self._writing_paused:
                self._flush()
                await self._wait_writable()
            if self._lost:
                return
            if self._must_wait_for_space:
                self._must_wait_for_space = False
                if self._stream is not None:
                    await self._wait_for_stream(self._stream)
                continue
            event = self._pending_event
            if event is not None:
                self._pending_event = None
            else:
                event = core.next_event()
            if event is None:
                self._note_progress()
                if self._shutting_down and core.idle:
                    core.close(421, f"{self.server.options.name} Server shutting down", "4.3.2")
                    continue
                await self._wait_input()
                continue
            if self._handle_now(event):
                continue
            kind = type(event)
            if kind is MailFrom:
                await self._decide(handlers.on_mail_from, event.address, session)  # type: ignore[attr-defined]
            elif kind is RcptTo:
                await self._decide(handlers.on_rcpt_to, event.address, session)  # type: ignore[attr-defined]
            elif kind is DataEnd:
                await self._end_data(event)  # type: ignore[arg-type]
            elif kind is StartTLS:
                await self._starttls()
            elif kind is AuthAttempt:
                await self._authenticate(event)  # type: ignore[arg-type]
            elif kind is XClient:
                await self._xclient()
            elif kind is BodyAborted:
                await self._abort_data(event.reason)  # type: ignore[attr-defined]
            elif kind is CloseConnection:
                self.log.debug("closing: %s", event.reason)  # type: ignore[attr-defined]
                return

    async def _wait_for_stream(self, stream: DataStream) -> None:
        """Backpressure: the handler has enough unread body; wait until it reads on."""
        self._start_data_task()
        self._flush()
        self._stream_blocked = True
        try:
            await stream.wait_for_space()
        finally:
            self._stream_blocked = False

    async def _finish(self, connected: bool) -> None:
        server = self.server
        session = self.session
        assert session is not None
        self._flush()
        self._close_transport()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._stream is not None:
            self._stream.abort(DataStreamError("connection closed before the message was received in full"))
            self._start_data_task()  # a deferred handler still sees the broken message
        task = self._data_task
        if task is not None and not task.done():
            # The handler sees DataStreamError on its next read; give it a moment to clean up.
            await asyncio.wait({task}, timeout=_HANDLER_CLEANUP_TIME)
            if not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=_HANDLER_CLEANUP_TIME)
        if task is not None and task.done() and not task.cancelled() and task.exception() is not None:
            self.log.debug("on_data ended with %r after the connection closed", task.exception())
        server.connections.discard(self)
        try:
            # on_close pairs with on_connect: once for every session that reached it,
            # however the session ended (refused, the client gone before the greeting...).
            if (connected or self._opened) and server.handlers.on_close is not None:
                await self._call(server.handlers.on_close, session)
        except Exception as error:
            self.log.exception("on_close failed: %s", error)
            server.emit("error", error, session)
        finally:
            server.connection_closed(self)

    # ----------------------------------------------------------------- handlers

    async def _call(self, handler: Callable[..., Any], *args: Any) -> Any:
        result = handler(*args)
        if inspect.isawaitable(result):
            self._flush()
            self._busy = True
            try:
                timeout = self.server.options.handler_timeout
                if timeout is None:
                    result = await result
                else:
                    result = await asyncio.wait_for(result, timeout)
            finally:
                self._busy = False
        return result

    async def _call_for_verdict(self, handler: Callable[..., Any], *args: Any) -> SMTPError | None:
        """Run a handler; None if it accepted, else the error to answer with (raised or
        returned: a returned SMTPError refuses too)."""
        try:
            result = await self._call(handler, *args)
        except SMTPError as error:
            return error
        except asyncio.TimeoutError:
            self.log.error("%s timed out", getattr(handler, "__name__", "handler"))
            return _HANDLER_TIMEOUT
        except Exception as error:
            self._handler_failed(handler, error)
            return _INTERNAL_ERROR
        return result if isinstance(result, SMTPError) else None

    def _as_closing_reply(self, error: SMTPError) -> SMTPError:
        """A handler failure that ends the connection is answered 421, not 451."""
        if error is _INTERNAL_ERROR or error is _HANDLER_TIMEOUT:
            return SMTPError(421, f"{self.server.options.name} {error.message}", enhanced="4.3.0")
        return error

    def _handler_failed(self, handler: Callable[..., Any], error: BaseException) -> None:
        name = getattr(handler, "__name__", "handler")
        self.log.error("%s raised %r", name, error, exc_info=error)
        self.server.emit("error", error, self.session)

    async def _decide(self, handler: Callable[..., Any] | None, *args: Any) -> None:
        core = self.core
        assert core is not None
        if handler is None:
            core.accept()
            return
        try:
            result = await self._call(handler, *args)
        except SMTPError as error:
            core.reject(error)
        except asyncio.TimeoutError:
            self.log.error("%s timed out", getattr(handler, "__name__", "handler"))
            core.reject(_HANDLER_TIMEOUT)
        except Exception as error:
            self._handler_failed(handler, error)
            core.reject(_INTERNAL_ERROR)
        else:
            if isinstance(result, SMTPError):
                core.reject(result)  # returned instead of raised: still a refusal
            else:
                core.accept(result if isinstance(result, str) else None)

    async def _xclient(self) -> None:
        """XCLIENT gave a new client identity: check it like a new connection."""
        core, session = self.core, self.session
        assert core is not None and session is not None
        self.log.info("XCLIENT: client is now %s (%s)", session.remote_address, session.client_hostname)
        handler = self.server.handlers.on_connect
        error = await self._call_for_verdict(handler, session) if handler is not None else None
        if error is not None:
            core.reject(error)
            return
        self.server.emit("connect", session)
        core.accept()

    async def _authenticate(self, event: AuthAttempt) -> None:
        core = self.core
        session = self.session
        handler = self.server.handlers.on_auth
        assert core is not None and session is not None and handler is not None
        auth = event.auth
        refusal: SMTPError
        try:
            result = await self._call(handler, auth, session)
        except SMTPError as error:
            refusal = error
        except asyncio.TimeoutError:
            self.log.error("on_auth timed out")
            core.reject(_HANDLER_TIMEOUT)
            return
        except Exception as error:
            self._handler_failed(handler, error)
            core.reject(_INTERNAL_ERROR)
            return
        else:
            if isinstance(result, AuthResult):
                session.user = result.user if result.user is not None else auth.username
                self.log.info("authenticated as %r with %s", auth.username, auth.method)
                core.accept(result.message)
                return
            if result not in (None, False):
                self.log.warning("on_auth returned %r; return AuthResult(user=...) to accept", result)
            refusal = _AUTH_FAILED
        self.log.info("authentication failed for %r with %s", auth.username, auth.method)
        delay = self.server.options.auth_failure_delay
        if delay:
            self._flush()
            self._busy = True
            try:
                await asyncio.sleep(delay)
            finally:
                self._busy = False
        if not self._lost:
            core.reject(refusal)

    # ----------------------------------------------------------------- DATA

    def _begin_data(self) -> None:
        handler = self.server.handlers.on_data
        if handler is None:
            self._stream = None
            return
        options = self.server.options
        is_async = self.server.handlers.on_data_is_async
        stream = DataStream(options.size, unbounded=not is_async, refuse_oversized=options.reject_oversized)
        self._stream = stream
        self._data_task = None
        # An async handler starts once the body outgrows the stream's buffer (it must read
        # while the rest arrives), else at the end of the message, in the session task:
        # most messages then cost no task of their own.
        self._data_deferred = is_async

    def _start_data_task(self) -> None:
        """Run the deferred on_data now, beside the session (big body, or an abort)."""
        stream = self._stream
        handler = self.server.handlers.on_data
        if self._data_deferred and stream is not None and handler is not None:
            self._data_deferred = False
            self._data_task = asyncio.ensure_future(self._run_on_data(handler, stream))

    async def _run_on_data(self, handler: Callable[..., Any], stream: DataStream) -> Any:
        try:
            result = handler(stream, self.session)
            if inspect.isawaitable(result):
                result = await result
            return result
        finally:
            stream.discard()  # whatever the handler left unread is drained

    async def _end_data(self, event: DataEnd) -> None:
        core = self.core
        assert core is not None
        stream = self._stream
        handler = self.server.handlers.on_data
        self._stream = None
        if handler is None or stream is None:
            core.accept()
            return
        if event.bare_lf and self.server.options.bare_lf == "reject":
            stream.abort(DataStreamError("message refused: bare LF in the body"))
        else:
            stream.finish()
        task = self._data_task
        self._data_task = None
        self._data_deferred = False
        self._flush()
        self._busy = True
        self._deciding_data = True
        try:
            if task is None:  # a plain handler, or an async one whose body all arrived
                result = await self._bounded(self._run_on_data(handler, stream))
            else:
                result = await self._bounded(task)
        except SMTPError as error:
            core.reject(error)
        except DataStreamError as error:
            if stream.error is not error:  # the handler's own, not the body's refusal
                self._handler_failed(handler, error)
                core.reject(_INTERNAL_ERROR)
            else:
                self.log.info("message refused while being received: %s", error)
                core.accept()  # the core turns a refused body into its 5xx reply
        except asyncio.TimeoutError:
            self.log.error("on_data timed out")
            if task is not None:
                task.cancel()
            core.reject(_HANDLER_TIMEOUT)
        except Exception as error:
            self._handler_failed(handler, error)
            core.reject(_INTERNAL_ERROR)
        else:
            if not isinstance(result, (str, list, SMTPError)):
                result = None  # a returned SMTPError refuses, like a raised one
            try:
                core.accept(result)
            except (ValueError, TypeError) as error:
                self._handler_failed(handler, error)
                core.reject(_INTERNAL_ERROR)
        finally:
            self._busy = False
            self._deciding_data = False

    async def _abort_data(self, reason: str) -> None:
        """The transaction was dropped mid-message (BDAT then RSET): end the handler's stream."""
        if self._stream is not None:
            self._stream.abort(DataStreamError(reason))
            self._start_data_task()
        stream, task = self._stream, self._data_task
        self._stream = None
        self._data_task = None
        if stream is not None:
            stream.abort(DataStreamError(reason))
        if task is not None:
            try:
                await self._bounded(task)
            except asyncio.TimeoutError:
                task.cancel()
            except BaseException as error:  # the handler saw the abort; nothing to answer
                if isinstance(error, asyncio.CancelledError) and not task.cancelled():
                    raise
                self.log.debug("on_data ended after abort: %r", error)

    async def _bounded(self, awaitable: Any) -> Any:
        timeout = self.server.options.handler_timeout
        if timeout is None:
            return await awaitable
        return await asyncio.wait_for(awaitable, timeout)

    # ----------------------------------------------------------------- TLS

    async def _starttls(self) -> None:
        core = self.core
        assert core is not None
        core.accept()  # 220 Ready to start TLS; pipelined plaintext is dropped
        self._flush()
        if not await self._handshake():
            core.close(421, "TLS handshake failed", "4.7.0")
            return
        core.tls_established()
        self._replay_early_data()
        if self.server.handlers.on_secure is not None:
            await self._on_secure()

    def _replay_early_data(self) -> None:
        early, self._tls_early_data = self._tls_early_data, None
        for data in early or ():
            self.data_received(data)

    async def _handshake(self) -> bool:
        transport = self.transport
        session = self.session
        assert transport is not None and session is not None
        context = self.server.tls.context
        self._tls_early_data = []
        try:
            handshake = start_tls(self.loop, transport, self, context, self.server.options.socket_timeout)
            before_tls, self._before_tls = self._before_tls, None
            if before_tls:
                # start_tls puts its TLS protocol on the transport before its first wait;
                # the bytes read too early go to that protocol.
                started = asyncio.ensure_future(handshake)
                await asyncio.sleep(0)
                _feed(transport.get_protocol(), b"".join(before_tls))
                new_transport = await started
            else:
                # Awaited at once: the protocol is swapped before any more bytes are read,
                # so a ClientHello right behind STARTTLS's 220 cannot reach the core.
                new_transport = await handshake
        except (ssl.SSLError, OSError, ConnectionError, asyncio.TimeoutError, RuntimeError) as error:
            self._tls_early_data = None
            reason = getattr(error, "reason", None) or type(error).__name__
            self.log.info("TLS handshake with %s failed: %s", session.remote_address, reason)
            self.server.emit("error", error, session)
            self._lost = True
            if not transport.is_closing():
                transport.abort()
            return False
        if new_transport is None or self._lost or new_transport.is_closing():
            # (uvloop can hand back a transport for a handshake cut short by a close.)
            self._tls_early_data = None
            self._lost = True
            if new_transport is not None:
                new_transport.abort()
            return False
        self.transport = new_transport
        self._tls_active = True
        self._reading_paused = False
        ssl_object = new_transport.get_extra_info("ssl_object")
        session.secure = True
        session.servername = getattr(ssl_object, "smtpgate_servername", None)
        if ssl_object is not None:
            session.tls_options = tls_info(ssl_object)
            session.tls = tls_details(ssl_object, session.servername)
        self._last_activity = self.loop.time()
        self.log.debug("TLS established: %s", session.tls_options)
        return True

    async def _on_secure(self) -> bool:
        """Run on_secure; False (and the connection answered and closing) if it refused."""
        core = self.core
        handler = self.server.handlers.on_secure
        assert core is not None and handler is not None
        ssl_object = self.transport.get_extra_info("ssl_object") if self.transport else None
        error = await self._call_for_verdict(handler, ssl_object, self.session)
        if error is None:
            return True
        if error.code not in (421, 554) and error.code // 100 == 5:
            error = SMTPError(554, error.message, enhanced=error.enhanced)
        error = self._as_closing_reply(error)
        self.log.info("on_secure refused: %s", error)
        core.refuse_connection(error)
        return False

    # ----------------------------------------------------------------- shutdown

    def shutdown(self) -> None:
        """Server closing: end the session as soon as no transaction is in progress."""
        self._shutting_down = True
        self._wake()

    def force_close(self) -> None:
        """close_timeout passed: answer 421 and close, whatever the session is doing."""
        core = self.core
        if core is None or self._lost:
            return
        if self._tls_early_data is not None or self._before_tls is not None:
            # Mid-handshake: a plaintext 421 would land in the TLS stream. Just close.
            self._lost = True
            if self.transport is not None:
                self.transport.abort()
            self._wake()
            return
        core.close(421, f"{self.server.options.name} Server shutting down", "4.3.2")
        self._flush()
        self._close_transport()
        # The client will not hear a 250 now, so on_data must not store the message: it is
        # cancelled (a handler that writes to a temporary file and renames it last is safe).
        task = self._data_task
        if task is not None and not task.done():
            task.cancel()
        if self._deciding_data and self._task is not None:
            self._task.cancel()
        self._wake()

"""One client connection: the asyncio shell around the protocol core.

It moves bytes between the socket and the core, calls the user's handlers for the events
that need a decision, feeds the ``on_data`` stream with backpressure, runs the idle timer
and the TLS handshakes, and guarantees exactly one ``on_close`` per session.

The transport talks to an `SMTPProtocol`, a buffered protocol that hands every call on to
the `SMTPConnection`: transports read into the loop's shared buffer (readbuffer.py)
instead of allocating one per read.

Its state is explicit: a `Stage` (opening, serving, ended), what the session task is
`Waiting` on (the idle timer only runs while it waits for the client), and the transport's
flow control. What it knows of the server is a `ConnectionContext`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, Final, cast

from .context import ConnectionContext
from .decisions import Decisions
from .lifecycle import Stage, Waiting, loop_clock
from .ondata import OnDataCall
from .opening import ConnectionLogger, new_session, opens_at_once, reverse_lookup
from .protocol.core import ServerProtocol
from .protocol.events import (
    AuthAttempt,
    BodyAborted,
    CloseConnection,
    DataChunk,
    DataEnd,
    DataStart,
    Event,
    MailFrom,
    RcptTo,
    StartTLS,
    XClient,
)
from .proxy import ProxyInfo, ProxySniffer, Sniffed
from .session import Session
from .sessiontask import SessionTask
from .smtpprotocol import SMTPProtocol
from .stream import DataStream, DataStreamError
from .tls import note_tls
from .tlslayer import upgrade

__all__ = ["SMTPConnection", "SMTPProtocol"]

logger = logging.getLogger("smtpgate")

_BODY_PROGRESS_BYTES: Final = 1024  # body bytes without a line end that count as activity
_CLOSE_FLUSH_GRACE: Final = 5.0  # seconds unread replies may take to drain once we close
_HANDLER_CLEANUP_TIME: Final = 5.0  # seconds an on_data handler gets to finish after a disconnect
MAX_PENDING_INPUT: Final = 64 * 1024  # unprocessed bytes before the socket stops being read
_GONE: Final = "connection closed before the message was received in full"
_ENDED: Final = Stage.ENDED
_INPUT: Final = Waiting.INPUT  # (a module name is read faster than an enum member)


class SMTPConnection:
    """One client's session: what `SMTPProtocol` hands on from the transport."""

    def __init__(
        self,
        context: ConnectionContext,
        proxy: ProxyInfo | None = None,
        proxy_trusted: bool = False,
        peer: Any = None,
        local: Any = None,
    ) -> None:
        self.ctx = context
        self._proxy = proxy
        self._peer = peer  # addresses known at accept time: a socket reset early has none
        self._local = local
        self._sniffer = ProxySniffer() if context.watch_for_proxy and not proxy_trusted else None
        self.loop = asyncio.get_running_loop()
        self._clock = loop_clock(self.loop)
        self.transport: asyncio.Transport | None = None
        self.core: ServerProtocol | None = None
        self.session: Session | None = None
        self.log: logging.LoggerAdapter[logging.Logger] | Any = None
        self._stage = Stage.OPENING
        self._waiting = Waiting.INPUT
        self._draining = False  # the server is closing: end the session when it is idle
        self._close_owed = False  # on_connect's turn came: on_close is owed
        self._reading_paused = False
        self._writing_paused = False
        self._stream_full = False  # a body chunk filled on_data's stream: wait before the next
        self._task: SessionTask | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._write_ready: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_activity = 0.0
        self._seen_progress = 0
        self._body_progress = 0  # body bytes since the idle timer was last refreshed
        self._message: OnDataCall | None = None
        self._before_tls: list[bytes] | None = None  # implicit TLS: bytes read before the TLS layer
        self._early: list[bytes] | None = None  # decrypted bytes held until the core may see them
        self._pending_event: Event | None = None  # taken by _pump, for the session task
        self._decisions: Decisions  # made with the session, in connection_made

    def _is_ended(self) -> bool:
        return self._stage is _ENDED

    def _end(self) -> None:
        """The transport is gone (or aborted): nothing more is read or written."""
        self._stage = Stage.ENDED

    # ----------------------------------------------------------------- asyncio callbacks

    def connection_made(self, base_transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, so no isinstance check.
        transport = cast(asyncio.Transport, base_transport)
        self.transport = transport
        ctx = self.ctx
        peer = transport.get_extra_info("peername") or self._peer or ("", 0)
        local = transport.get_extra_info("sockname") or self._local or ("", 0)
        self.session = session = new_session(peer, local, self._proxy)
        self.log = ConnectionLogger(logger, {"connection_id": session.id})
        self.core = core = ServerProtocol(ctx.protocol, session)
        self._decisions = Decisions(ctx, session, core, self.log, self._wait_on, self._is_ended)
        core.xclient_allowed = session.remote_address in ctx.xclient_trust
        core.xforward_allowed = session.remote_address in ctx.xforward_trust
        if self._proxy is not None:
            self.log.debug("PROXY v%d: client %s:%s", self._proxy.version, session.remote_address, session.remote_port)
        registry = ctx.registry
        refusal = None
        if registry.closing:
            refusal = f"{ctx.name} Server shutting down"
        elif ctx.max_clients and len(registry) >= ctx.max_clients:
            self.log.info("refused %s: too many clients (%d)", session.remote_address, ctx.max_clients)
            refusal = f"{ctx.name} Too many connected clients, try again in a moment"
        if refusal is not None:
            core.close(421, refusal, "4.3.2" if registry.closing else "4.7.0")
            transport.write(core.data_to_send())
            transport.close()
            self._end()
            return
        registry.add(self)
        if ctx.secure:
            # The ClientHello should wait in the kernel for the TLS layer. Some loops (uvloop)
            # start reading after connection_made regardless: what arrives is kept for TLS.
            self._before_tls = []
            transport.pause_reading()
        self._last_activity = self._clock()
        self._timer = self.loop.call_at(self._last_activity + ctx.socket_timeout, self._on_timer)
        greeted = False
        if opens_at_once(ctx, session):
            # Nothing to wait for: greet now, before any client byte can be read (the
            # early-talker check then holds on every event loop) and without a task hop.
            self._greet()
            greeted = self._close_owed = True
        self._task = SessionTask(self.loop, self._run(greeted))

    def data_received(self, data: bytes) -> None:
        """Bytes from the client (from `buffer_updated`, or fed by our own code)."""
        core = self.core
        if core is None or self._stage is _ENDED:
            return
        if self._before_tls is not None:
            self._hold_for_tls(self._before_tls, data)
            return
        if self._early is not None:
            # Decrypted bytes that arrive before the core was told that TLS is up.
            self._early.append(data)
            return
        if self._sniffer is not None:
            verdict, data = self._sniffer.feed(data)
            if verdict is Sniffed.HEADER:
                peer = self.session.remote_address if self.session is not None else ""
                self._abort("closing: PROXY header from untrusted peer %s", peer)
                return
            if verdict is Sniffed.HOLD_BRIEFLY:
                self.loop.call_later(ProxySniffer.HOLD_SECONDS, self._release_sniffed)
            if verdict is not Sniffed.SMTP:
                return
            self._sniffer = None
        if core.in_body:
            # Progress in a body is a whole line or a fair amount of bytes: a client that
            # trickles a byte at a time is still cut by socket_timeout (slowloris).
            self._body_progress += len(data)
            if self._body_progress >= _BODY_PROGRESS_BYTES or b"\n" in data:
                self._body_progress = 0
                self._last_activity = self._clock()
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

    def _hold_for_tls(self, held: list[bytes], data: bytes) -> None:
        held.append(data)
        if sum(map(len, held)) > MAX_PENDING_INPUT:
            self._abort("closing: %d bytes before the TLS handshake", MAX_PENDING_INPUT, level=logging.INFO)
        elif self.transport is not None:
            self.transport.pause_reading()

    def _abort(self, message: str, *args: Any, level: int = logging.WARNING) -> None:
        """Log ``message``, drop the connection without a word, end the session."""
        self.log.log(level, message, *args)
        self._end()
        if self.transport is not None:
            self.transport.abort()
        self._wake()

    def _release_sniffed(self) -> None:
        """Held-back blank lines did not become a PROXY v2 header: they are SMTP after all."""
        sniffer = self._sniffer
        if sniffer is not None and self._stage is not _ENDED:
            held = sniffer.release()
            if held:
                self._sniffer = None
                self.data_received(held)

    def _pump(self) -> bool:
        """Handle, right here, the events that need no handler (replies to plain commands,
        body chunks, MAIL/RCPT without handlers), sparing a task wake-up per command.

        Called only while the session task waits for input. True means the task must run:
        an event needs a handler or a wait, and it is left in ``_pending_event``.
        """
        core = self.core
        assert core is not None
        if self._writing_paused or self._draining or self._stage is _ENDED:
            return True
        while True:
            event = core.next_event()
            if event is None:
                break
            if not self._handle_now(event) and not (type(event) is DataEnd and self._end_data_now(event)):
                self._pending_event = event
                return True
            if self._stream_full:
                return True
        self._note_progress()
        self._flush()
        self._resume_reading_if_drained()
        return False

    def _handle_now(self, event: Event) -> bool:
        """Handle an event that needs no handler and no wait; False leaves it to the task.

        A body chunk that fills the handler's stream sets ``_stream_full``. (``type() is``
        rather than ``match``: this runs for every command and chunk, and it narrows too.)"""
        core = self.core
        assert core is not None
        kind = type(event)
        if type(event) is DataChunk:
            message = self._message
            if message is not None and not message.stream.feed(event.data):
                self._stream_full = True
        elif kind is DataStart:
            self._begin_data()
            core.accept()
        elif (kind is MailFrom and self.ctx.on_mail_from is None) or (kind is RcptTo and self.ctx.on_rcpt_to is None):
            core.accept()
        else:
            return False
        return True

    def _end_data_now(self, event: DataEnd) -> bool:
        """The end of a message, answered here in the read callback if on_data does not
        suspend: the 250 goes out one event-loop turn sooner and the session task sleeps on.

        The handler runs as the session task (``asyncio.current_task()``) and in its
        context, so it cannot tell; if it suspends, the task goes on with it (False)."""
        task = self._task
        if task is None or not task.step_in(self._decisions.end_data_now, self._message, event):
            return False
        self._message = None
        return True

    def _note_progress(self) -> None:
        """Completed commands count as activity for the idle timer."""
        core = self.core
        if core is not None and core.progress != self._seen_progress:
            self._seen_progress = core.progress
            self._last_activity = self._clock()

    def _resume_reading_if_drained(self) -> None:
        if self._reading_paused and self.core is not None and self.core.buffered <= MAX_PENDING_INPUT // 2:
            self._reading_paused = False
            if self.transport is not None and self._stage is not _ENDED:
                self.transport.resume_reading()

    def eof_received(self) -> bool:
        if self.core is not None:
            self.core.receive_eof()
        self._wake()
        # Keep the write side open to answer (not possible over TLS).
        return not (self.session is not None and self.session.secure)

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()
        if self._message is not None:
            self._message.stream.abort(DataStreamError(_GONE))
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
        if self._stage is _ENDED:
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
        if data and self._stage is not _ENDED:
            transport.write(data)

    async def _wait_writable(self) -> None:
        while self._writing_paused and self._stage is not _ENDED:
            self._write_ready = self.loop.create_future()
            await self._write_ready

    def _wait_on(self, waiting: Waiting) -> None:
        """The session task starts (or stops, with `Waiting.INPUT`) waiting on something."""
        if waiting is not _INPUT:
            self._flush()
        self._waiting = waiting

    def _on_timer(self) -> None:
        self._timer = None
        if self._stage is _ENDED or self.core is None:
            return
        timeout = self.ctx.socket_timeout
        now = self._clock()
        if self._waiting is not Waiting.INPUT:
            # Not the client's turn (a handler, backpressure, or a TLS handshake, which has
            # its own timeout and is reported as a handshake failure).
            self._last_activity = now
        elif now - self._last_activity >= timeout:
            self.log.info("idle for %.0f s: closing", timeout)
            self.core.close(421, f"{self.ctx.name} Error: timeout exceeded", "4.4.2")
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
                grace = min(_CLOSE_FLUSH_GRACE, self.ctx.socket_timeout)
                self.loop.call_later(grace, transport.abort)

    # ----------------------------------------------------------------- session

    async def _run(self, greeted: bool = False) -> None:
        connected = False
        try:
            connected = greeted or await self._start()
            if connected:
                if self._stage is not _ENDED:
                    self._stage = Stage.SERVING
                await self._serve()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug of ours: log it, end this session only
            self._session_failed(error)
        finally:
            try:
                await self._finish(connected)
            finally:
                self._let_go()

    def _let_go(self) -> None:
        """The session is over: drop the references that lead back to this object (the task
        that runs this coroutine, the decisions' callbacks), so that reference counting frees
        the connection and what it holds; a late transport callback still finds it whole."""
        self._task = None
        self._decisions.let_go()

    def _session_failed(self, error: Exception) -> None:
        """A bug of ours: log it with its traceback, report it, answer 421."""
        self.log.error("session failed: %s", error, exc_info=error)
        self.ctx.emit("error", error, self.session)
        if self._stage is not _ENDED and self.core is not None:
            try:
                self.core.close(421, f"{self.ctx.name} Error: internal server error", "4.3.0")
            except Exception:  # the core itself is broken: just close
                self.log.debug("could not say goodbye", exc_info=True)
            self._flush()
            self._close_transport()

    async def _start(self) -> bool:
        """Reverse DNS, implicit TLS, on_connect, then the greeting."""
        ctx = self.ctx
        core, session = self.core, self.session
        assert core is not None and session is not None
        self.log.debug("connection from %s:%s", session.remote_address, session.remote_port)
        if not ctx.disable_reverse_lookup:
            session.client_hostname = await reverse_lookup(ctx, session.remote_address, self.log)
            if self._stage is _ENDED:
                return False  # gone during the lookup: no session to open (nor to close)
        if ctx.secure and not await self._handshake():
            return False
        self._close_owed = True
        if ctx.on_connect is not None:
            error = await self._decisions.verdict(ctx.on_connect, session)
            if error is not None:
                error = self._decisions.closing_reply(error)
                self.log.info("on_connect refused: %s", error)
                core.refuse_connection(error)
                return True
        if ctx.secure and ctx.on_secure is not None and not await self._on_secure():
            return True
        if self._stage is _ENDED:
            return False
        self._greet()
        self._replay_early_data()  # implicit TLS: what the client sent right after the handshake
        return True

    def _greet(self) -> None:
        """The session is accepted: the connect event, then the 220 greeting."""
        assert self.core is not None
        self.ctx.emit("connect", self.session)
        self.core.start()
        self._flush()

    async def _serve(self) -> None:
        core, session, ctx = self.core, self.session, self.ctx
        assert core is not None and session is not None
        while True:
            if self._writing_paused:
                self._flush()
                await self._wait_writable()
            if self._stage is _ENDED:
                return
            if self._stream_full:
                self._stream_full = False
                if self._message is not None:
                    await self._wait_for_stream(self._message)
                continue
            event = self._pending_event
            if event is not None:
                self._pending_event = None
            else:
                event = core.next_event()
            if event is None:
                self._note_progress()
                if self._draining and core.idle:
                    core.close(421, f"{ctx.name} Server shutting down", "4.3.2")
                    continue
                await self._wait_input()
                continue
            if self._handle_now(event):
                continue
            match event:
                case MailFrom():
                    await self._decisions.decide(ctx.on_mail_from, event.address, session)
                case RcptTo():
                    await self._decisions.decide(ctx.on_rcpt_to, event.address, session)
                case DataEnd():
                    message, self._message = self._message, None
                    await self._decisions.end_data(message, event)
                case StartTLS():
                    await self._starttls()
                case AuthAttempt():
                    await self._decisions.authenticate(event)
                case XClient():
                    await self._decisions.xclient()
                case BodyAborted():
                    await self._decisions.abort_data(self._take_message(), event.reason)
                case CloseConnection():
                    self.log.debug("closing: %s", event.reason)
                    return

    async def _wait_for_stream(self, message: OnDataCall) -> None:
        """Backpressure: the handler has enough unread body; wait until it reads on."""
        message.start()
        self._wait_on(Waiting.STREAM)
        try:
            await message.stream.wait_for_space()
        finally:
            self._waiting = Waiting.INPUT

    async def _finish(self, connected: bool) -> None:
        ctx, session = self.ctx, self.session
        assert session is not None
        self._flush()
        self._close_transport()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        message, self._message = self._message, None
        if message is not None:
            error = await message.wind_down(_GONE, _HANDLER_CLEANUP_TIME)
            if error is not None:
                self.log.debug("on_data ended with %r after the connection closed", error)
        ctx.registry.session_over(self)
        try:
            # on_close pairs with on_connect: once for every session that reached it,
            # however the session ended (refused, the client gone before the greeting...).
            if (connected or self._close_owed) and ctx.on_close is not None:
                on_close = ctx.on_close
                await self._decisions.outcome(on_close, lambda: on_close(session))
        finally:
            ctx.registry.remove(self)

    # ----------------------------------------------------------------- DATA

    def _take_message(self) -> OnDataCall | None:
        message, self._message = self._message, None
        return message

    def _begin_data(self) -> None:
        ctx, session = self.ctx, self.session
        assert session is not None
        if ctx.on_data is None:
            self._message = None
            return
        stream = DataStream(ctx.size, unbounded=not ctx.on_data_is_async, refuse_oversized=ctx.reject_oversized)
        self._message = OnDataCall(ctx.on_data, ctx.on_data_is_async, session, stream)

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
        if self.ctx.on_secure is not None:
            await self._on_secure()

    def _replay_early_data(self) -> None:
        early, self._early = self._early, None
        for data in early or ():
            self.data_received(data)

    async def _handshake(self) -> bool:
        transport, session = self.transport, self.session
        assert transport is not None and session is not None
        self._early = []
        self._wait_on(Waiting.HANDSHAKE)
        try:
            before_tls, self._before_tls = self._before_tls, None
            context = self.ctx.tls_context()
            new_transport = await upgrade(self.loop, transport, self, context, self.ctx.socket_timeout, before_tls)
        except (ssl.SSLError, OSError, ConnectionError, asyncio.TimeoutError, RuntimeError) as error:
            self._early = None
            reason = getattr(error, "reason", None) or type(error).__name__
            self.log.info("TLS handshake with %s failed: %s", session.remote_address, reason)
            self.ctx.emit("error", error, session)
            self._end()
            if not transport.is_closing():
                transport.abort()
            return False
        finally:
            self._waiting = Waiting.INPUT
        if new_transport is None or self._stage is _ENDED or new_transport.is_closing():
            # (the connection ended while the handshake finished)
            self._early = None
            self._end()
            if new_transport is not None:
                new_transport.abort()
            return False
        self.transport = new_transport
        self._reading_paused = False
        note_tls(session, new_transport.get_extra_info("ssl_object"))
        self._last_activity = self._clock()
        self.log.debug("TLS established: %s", session.tls_options)
        return True

    async def _on_secure(self) -> bool:
        """Run on_secure; False (and the connection answered and closing) if it refused."""
        ssl_object = self.transport.get_extra_info("ssl_object") if self.transport else None
        return await self._decisions.on_secure(ssl_object)

    # ----------------------------------------------------------------- shutdown

    def shutdown(self) -> None:
        """Server closing: end the session as soon as no transaction is in progress."""
        self._draining = True
        self._wake()

    def force_close(self) -> None:
        """close_timeout passed: answer 421 and close, whatever the session is doing."""
        core = self.core
        if core is None or self._stage is _ENDED:
            return
        if self._waiting is Waiting.HANDSHAKE or self._early is not None or self._before_tls is not None:
            # Mid-handshake: a plaintext 421 would land in the TLS stream. Just close.
            self._end()
            if self.transport is not None:
                self.transport.abort()
            self._wake()
            return
        core.close(421, f"{self.ctx.name} Server shutting down", "4.3.2")
        self._flush()
        self._close_transport()
        # The client will not hear a 250 now, so on_data must not store the message: it is
        # cancelled (a handler that writes to a temporary file and renames it last is safe).
        task = self._message.task if self._message is not None else None
        if task is not None and not task.done():
            task.cancel()
        if self._waiting is Waiting.ON_DATA and self._task is not None:
            self._task.task.cancel()
        self._wake()

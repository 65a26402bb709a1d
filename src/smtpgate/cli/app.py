"""One serving process: the SMTPServer, its handlers (store in a sink, check passwords),
the line printed per message, signals, and the event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.parser
import email.policy
import email.utils
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from .. import AuthRequest, AuthResult, DataStream, DataStreamError, Session, SMTPError, SMTPServer
from ..inbox.chaos import Chaos
from ..sinks import Delivery, MessageInfo, Sink, SinkError, SinkFull, parse_sink
from .config import DEFAULT_INBOX_SINK, Settings
from .logs import utc_timestamp
from .passwords import AuthFileError, ScryptHash, load_auth_file, verify_password
from .scale import ScaleParts, configure_sinks

if TYPE_CHECKING:
    from .delivery import DeliveryService
from .verify import build_gate

__all__ = ["App", "StartupError", "new_event_loop"]

logger = logging.getLogger("smtpgate.cli")

_HEADER_LIMIT = 64 * 1024  # bytes of headers kept to find the Subject
DISK_THREADS = 32
"""Threads of the loop's default executor, where every commit waits on ``fsync`` and the
delivery worker reads and removes queue files. asyncio's default (CPU count + 4: six on
two cores) lets a few slow fsyncs hold every thread while the worker's quick file work
queues behind them. (On a quiet 2-core machine bench/queue_bench.py shows no difference
either way: there the CPU is the limit; on a busy one the larger pool did better.)"""


class StartupError(Exception):
    """The server cannot start; ``str()`` is the one line for stderr."""


def new_event_loop(use_uvloop: bool) -> tuple[asyncio.AbstractEventLoop, str]:
    """A new event loop: uvloop's when wanted and importable, else asyncio's."""
    loop: asyncio.AbstractEventLoop | None = None
    name = "asyncio"
    if use_uvloop:
        try:
            uvloop: Any = importlib.import_module("uvloop")
        except ImportError:
            pass
        else:
            loop, name = uvloop.new_event_loop(), "uvloop"
    if loop is None:
        loop = asyncio.new_event_loop()
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(DISK_THREADS, thread_name_prefix="smtpgate-disk"))
    return loop, name


class _Headers:
    """The header section, collected from the first chunks, for the Subject."""

    def __init__(self) -> None:
        self._data = bytearray()
        self.done = False

    def feed(self, chunk: bytes) -> None:
        if self.done:
            return
        self._data += chunk
        end = self._data.find(b"\r\n\r\n")
        if end >= 0 or len(self._data) >= _HEADER_LIMIT:
            self.done = True
            if end >= 0:
                del self._data[end + 4 :]

    def subject(self) -> str:
        parser = email.parser.BytesHeaderParser(policy=email.policy.default)
        try:
            value = parser.parsebytes(bytes(self._data[:_HEADER_LIMIT])).get("subject", "")
            text = str(value)
        except Exception:  # a header the email package cannot decode
            return ""
        return "".join(ch if ch.isprintable() else " " for ch in text)


def _trace_headers(session: Session, name: str) -> bytes:
    """``Return-Path`` and ``Received`` for the top of the stored message."""
    envelope = session.envelope
    sender = envelope.mail_from.address if envelope.mail_from else ""
    helo = session.host_name_appears_as or "unknown"
    client = f"[{session.remote_address}]"
    if session.client_hostname and not session.client_hostname.startswith("["):
        client = f"{session.client_hostname} {client}"
    recipients = envelope.rcpt_to
    target = f"\r\n\tfor <{recipients[0].address}>" if len(recipients) == 1 else ""
    date = email.utils.formatdate(usegmt=True)
    received = f"Received: from {helo} ({client})\r\n\tby {name} with {session.transmission_type} id {session.id}"
    text = f"Return-Path: <{sender}>\r\n{received}{target};\r\n\t{date}\r\n"
    return text.encode("utf-8", "replace")


class App:
    """The command's server: options from `Settings`, handlers, reloading."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.delivery: DeliveryService | None = None
        if settings.deliver is not None:
            from .delivery import DeliveryService

            self.delivery = DeliveryService(settings)
        self.sinks = self._open_sinks()
        self.users: Mapping[str, ScryptHash] | None = None
        if settings.auth_file is not None:
            try:
                self.users = load_auth_file(settings.auth_file)
            except AuthFileError as error:
                raise StartupError(str(error)) from None
        self.http_users: Mapping[str, ScryptHash] | None = None
        if settings.http_auth_file is not None:
            try:
                self.http_users = load_auth_file(settings.http_auth_file)
            except AuthFileError as error:
                raise StartupError(str(error)) from None
        self.chaos = Chaos()
        self.http: Any = None
        self.out: TextIO = sys.stderr if any(sink.uses_stdout for sink in self.sinks) else sys.stdout
        try:
            self.scale = ScaleParts(settings, self.sinks)
        except ValueError as error:
            raise StartupError(str(error)) from None
        if self.delivery is not None and self.scale.metrics is not None:  # delivery attempts in the metrics
            self.delivery.deliverer = self.scale.metrics.count_deliveries(self.delivery.deliverer)
        try:
            self.gate = build_gate(settings)  # --verify, --dnsbl: None when not asked for
        except ValueError as error:
            raise StartupError(str(error)) from None
        try:
            self.server = SMTPServer(**self.server_options())
        except (TypeError, ValueError, OSError) as error:
            message = str(error).replace("give the 'passphrase' option", "give --tls-passphrase-file")
            raise StartupError(message) from None
        if self.gate is not None and not self.gate.authserv_id:
            self.gate.authserv_id = self.gate.verifier.receiver = self.server.options.name
        self._stops = 0
        self._main: asyncio.Task[None] | None = None
        self._closing: asyncio.Future[None] | None = None

    @property
    def sink(self) -> Sink:
        """The main sink (``--sink``): the one named in the line printed per message."""
        return self.sinks[0]

    def _open_sinks(self) -> list[Sink]:
        """Every sink a message goes to, ``--sink`` first; all must store it before the 250."""
        try:
            sinks = [parse_sink(self.settings.sink)] if self.settings.sink else []
            if self.settings.http is not None and not any(sink.kind == "inbox" for sink in sinks):
                sinks.append(parse_sink(DEFAULT_INBOX_SINK))  # the HTTP API reads an inbox
        except SinkError as error:
            raise StartupError(str(error)) from None
        for sink in sinks:
            store = getattr(sink, "store", None) if sink.kind == "inbox" else None
            if store is not None:
                store.max_messages = self.settings.inbox_max_messages
                store.max_age = self.settings.inbox_max_age
        if self.delivery is not None:  # --deliver: the queue stores every message too
            sinks.append(self.delivery.open_queue())
        configure_sinks(self.settings, sinks)
        return sinks

    @property
    def inbox(self) -> Any:
        """The first inbox sink's store (what ``--http`` serves), or None."""
        for sink in self.sinks:
            if sink.kind == "inbox":
                return getattr(sink, "store", None)
        return None

    def describe_sinks(self) -> str:
        """Where messages go, for the start-up line."""
        return " and ".join(sink.describe() for sink in self.sinks)

    def server_options(self) -> dict[str, Any]:
        """The SMTPServer options the settings ask for."""
        s = self.settings
        options: dict[str, Any] = {"disable_reverse_lookup": True}
        options.update(s.server)
        options.update(on_data=self.on_data, size=s.max_size, lmtp=s.lmtp)
        if s.name is not None:
            options["name"] = s.name
        if s.tls_cert is not None:
            options.update(cert=s.tls_cert, key=s.tls_key, passphrase=self._passphrase())
        if s.implicit_tls:
            options["secure"] = True
        if s.require_tls:
            options["needs_upgrade"] = True
        if s.max_clients:
            options["max_clients"] = s.max_clients
        if s.timeout is not None:
            options["socket_timeout"] = s.timeout
        if s.close_timeout is not None:
            options["close_timeout"] = s.close_timeout
        if s.proxy_protocol:
            options["use_proxy"] = s.proxy_protocol
        if self.users is not None:
            options.setdefault("auth_methods", ["PLAIN", "LOGIN"])
            options.update(on_auth=self.on_auth, auth_optional=s.auth_optional)
        if s.allow_insecure_auth:
            options["allow_insecure_auth"] = True
        if s.http is not None:  # chaos triggers set over the API
            options.update(on_mail_from=self.on_mail_from, on_rcpt_to=self.on_rcpt_to)
        if self.gate is not None:  # the sender checks run before the chaos triggers
            inner = {name: options[name] for name in ("on_connect", "on_rcpt_to") if name in options}
            options.update(self.gate.session_handlers(**inner))
        return self.scale.wrap(options)  # the limits, then the metrics, around all of it

    # ------------------------------------------------------------- handlers

    async def on_data(self, stream: DataStream, session: Session) -> str:
        """Stream the message into every sink; 250 only once each has stored it."""
        auth_results = b""
        if self.gate is not None and self.settings.verify is not None:  # reads the message, may refuse it
            stream, auth_results = await self.gate.screen(stream, session)
        info = MessageInfo.from_session(session)
        deliveries: list[Delivery] = []
        headers = _Headers()
        try:
            for sink in self.sinks:
                deliveries.append(sink.open(info))
            trace = _trace_headers(session, self.server.options.name) + auth_results
            for delivery in deliveries:
                await delivery.write(trace)
            async for chunk in stream:
                headers.feed(chunk)
                for delivery in deliveries:
                    await delivery.write(chunk)
            if stream.size_exceeded:
                raise SMTPError(552, "Message exceeds fixed maximum message size", enhanced="5.3.4")
            self._check_room(len(trace) + stream.byte_length)
            stored = [await delivery.commit() for delivery in deliveries]
        except BaseException as error:
            for delivery in deliveries:
                delivery.abort()
            if isinstance(error, (SMTPError, asyncio.CancelledError)) or not isinstance(error, Exception):
                raise
            return self._refuse(session, error)
        self.print_message(session, stream.byte_length, headers.subject(), stored[0])
        return f"Stored as {session.id}.{session.transaction}"

    def _check_room(self, size: int) -> None:
        """`SinkFull` before any sink commits when one has no room (the queue of
        ``--deliver``): a 452 must leave the message in no other sink either, or each retry
        of the client would add a copy there."""
        for sink in self.sinks:
            if not sink.has_room(size):
                raise SinkFull(f"{sink.describe()} is full")

    def _refuse(self, session: Session, error: Exception) -> NoReturn:
        """A sink could not store the message: 452 when it is full, else 451 (and a log line)."""
        if isinstance(error, SinkFull):
            logger.warning("[%s] no room for the message: %s", session.id, error)
            raise SMTPError(452, "Insufficient system storage, try again later", enhanced="4.3.1") from None
        if isinstance(error, DataStreamError):
            raise error
        logger.error("[%s] could not store the message in %s: %s", session.id, self.describe_sinks(), error)
        raise SMTPError(451, "Could not store the message, try again later", enhanced="4.3.0") from None

    def _chaos(self, trigger: str) -> None:
        code = self.chaos.check(trigger)
        if code is not None:
            raise SMTPError(code, f"Chaos triggered: {trigger.lower()} refused")

    async def on_mail_from(self, address: Any, session: Session) -> None:
        """Chaos: refuse the sender when its trigger fires."""
        self._chaos("Sender")

    async def on_rcpt_to(self, address: Any, session: Session) -> None:
        """Chaos: refuse the recipient when its trigger fires."""
        self._chaos("Recipient")

    async def on_auth(self, auth: AuthRequest, session: Session) -> AuthResult | None:
        """PLAIN/LOGIN against the auth file's scrypt hashes."""
        self._chaos("Authentication")
        users = self.users or {}
        if auth.password is None:
            return None
        stored = users.get(auth.username)
        if await asyncio.to_thread(verify_password, auth.password, stored):
            return AuthResult(user=auth.username)
        return None

    def print_message(self, session: Session, size: int, subject: str, where: str) -> None:
        """The one line per stored message."""
        envelope = session.envelope
        sender = envelope.mail_from.address if envelope.mail_from else ""
        recipients = [r.address for r in envelope.rcpt_to]
        if self.settings.log_format == "json":
            record = {
                "time": utc_timestamp(),
                "event": "message",
                "session": session.id,
                "client": session.remote_address,
                "from": sender,
                "to": recipients,
                "size": size,
                "subject": subject,
                "stored": where,
            }
            line = json.dumps(record, ensure_ascii=False)
        else:
            to = ",".join(f"<{r}>" for r in recipients)
            subject_text = json.dumps(subject, ensure_ascii=False)
            line = f"{utc_timestamp()} from=<{sender}> to={to} size={size} subject={subject_text} stored={where}"
        try:
            print(line, file=self.out, flush=True)
        except (OSError, ValueError):  # stdout closed: the message is stored all the same
            pass

    def _passphrase(self) -> str | None:
        """The key's pass phrase from --tls-passphrase-file (first line), if given."""
        path = self.settings.tls_passphrase_file
        if path is None:
            return None
        try:
            with open(path, encoding="utf-8") as file:
                return file.readline().rstrip("\r\n")
        except (OSError, UnicodeError) as error:
            reason = getattr(error, "strerror", None) or str(error)
            raise ValueError(f"--tls-passphrase-file {path!r}: cannot read it: {reason}") from None

    # ------------------------------------------------------------- lifecycle

    def reload(self) -> None:
        """SIGHUP: re-read the certificate and the auth files; on error keep the old ones."""
        s = self.settings
        if s.tls_cert is not None:
            try:
                self.server.update_secure_context(cert=s.tls_cert, key=s.tls_key, passphrase=self._passphrase())
            except (TypeError, ValueError, OSError) as error:
                logger.error("certificate not reloaded, keeping the old one: %s", error)
            else:
                logger.info("certificate reloaded from %s", s.tls_cert)
        if s.auth_file is not None:
            try:
                self.users = load_auth_file(s.auth_file)
            except AuthFileError as error:
                logger.error("auth file not reloaded, keeping the old one: %s", error)
            else:
                logger.info("auth file reloaded: %d users", len(self.users))
        if s.http_auth_file is not None:
            try:
                self.http_users = load_auth_file(s.http_auth_file)
            except AuthFileError as error:
                logger.error("HTTP auth file not reloaded, keeping the old one: %s", error)
            else:
                logger.info("HTTP auth file reloaded: %d users", len(self.http_users))

    def reopen_sink(self) -> None:
        """Open the sinks again (a forked worker must not share the parent's files)."""
        self.sinks = self._open_sinks()

    def stop(self) -> None:
        """SIGTERM/SIGINT: close gracefully; a second one ends at once."""
        self._stops += 1
        if self._stops == 1:
            logger.info("shutting down (waiting up to %.0f s for sessions)", self.server.options.close_timeout)
            self._closing = asyncio.ensure_future(self.server.close())
        elif self._main is not None:
            logger.warning("second signal: exiting now")
            self._main.cancel()

    async def start(self, *, reuse_port: bool = False) -> None:
        """Start the sinks and listen on every address; raises `StartupError`."""
        started: list[Sink] = []
        try:
            for sink in self.sinks:
                await sink.start()
                started.append(sink)
        except (SinkError, OSError) as error:
            for sink in reversed(started):
                await sink.close()
            raise StartupError(str(error)) from None
        if self.delivery is not None:
            await self.delivery.start()
        for host, port in self.settings.addresses():
            try:
                await self.server.listen(port, host=host, reuse_port=reuse_port)
            except (OSError, ValueError) as error:
                await self.server.close()
                if self.delivery is not None:
                    await self.delivery.stop()
                await self.close_sinks()
                reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
                raise StartupError(reason) from None
        if self.settings.http is not None:
            try:
                await self._start_http(*self.settings.http)
            except StartupError:
                await self.server.close()
                if self.delivery is not None:
                    await self.delivery.stop()
                await self.close_sinks()
                raise
        try:
            await self.scale.start(self.server, self.sinks)
        except OSError as error:
            await self.server.close()
            if self.http is not None:
                await self.http.close()
            if self.delivery is not None:
                await self.delivery.stop()
            await self.close_sinks()
            await self.scale.close()
            raise StartupError(f"--metrics: {error.strerror or error}") from None

    async def _start_http(self, host: str, port: int) -> None:
        """The inbox API (and UI) on ``--http``."""
        try:
            from ..http import HTTPServer
            from ..inbox.api import inbox_middlewares, inbox_routes, is_loopback_host
        except ImportError as error:
            raise StartupError(f"--http needs aiohttp (pip install 'smtpgate[inbox]'): {error}") from None
        routes = [*inbox_routes(self.inbox, self.chaos), *self.scale.http_routes(self.server, self.sinks)]
        users = None if self.http_users is None else (lambda: self.http_users or {})
        middlewares = inbox_middlewares(users, loopback_only=is_loopback_host(host))
        self.http = HTTPServer(host, port, routes, middlewares)
        try:
            await self.http.start()
        except OSError as error:
            self.http = None
            reason = os.strerror(error.errno) if error.errno else str(error)
            raise StartupError(f"--http {host}:{port}: {reason}") from None

    async def run(self, *, handle_sigint: bool = True, parent: int | None = None) -> None:
        """Serve until closed by a signal (or the parent process going away)."""
        loop = asyncio.get_running_loop()
        self._main = asyncio.current_task()
        signals: dict[int, Callable[[], None]] = {signal.SIGTERM: self.stop}
        if handle_sigint:
            signals[signal.SIGINT] = self.stop
        if hasattr(signal, "SIGHUP"):
            signals[signal.SIGHUP] = self.reload
        for signum, callback in signals.items():
            loop.add_signal_handler(signum, callback)
        watchdog = asyncio.ensure_future(self._watch_parent(parent)) if parent is not None else None
        try:
            await self.server.serve_forever()
        finally:
            if self.http is not None:
                await self.http.close()
            if self.delivery is not None:
                await self.delivery.stop()
            await self.scale.close()
            await self.close_sinks()
            if watchdog is not None:
                watchdog.cancel()
            for signum in signals:
                loop.remove_signal_handler(signum)

    async def close_sinks(self) -> None:
        """Close every sink (after the server closed: no message is on its way any more)."""
        for sink in reversed(self.sinks):
            try:
                await sink.close()
            except Exception:
                logger.exception("closing %s failed", sink.describe())

    async def _watch_parent(self, parent: int) -> None:
        while os.getppid() == parent:
            await asyncio.sleep(1.0)
        logger.warning("the parent process is gone: shutting down")
        self.stop()

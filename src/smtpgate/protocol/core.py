"""The sans-I/O SMTP server state machine.

Feed it bytes with `ServerProtocol.receive_data`, pull events with
`ServerProtocol.next_event`, answer the events that need a decision with
`ServerProtocol.accept` or `ServerProtocol.reject`, and write whatever
`ServerProtocol.data_to_send` returns. No sockets, no clock, no asyncio: everything
that does not need the application (syntax, sequencing, limits, EHLO, NOOP, RSET...) is
answered here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import SMTPError, default_enhanced_code
from ..sasl import Mechanism
from ..session import Envelope, Session
from . import body
from .auth import AUTH_PHASE, COMMAND_PHASE, AuthCommands
from .body import BodyCommands, BodyResult
from .data import DataDecoder
from .events import (
    AuthAttempt,
    CloseConnection,
    DataEnd,
    DataStart,
    Event,
    MailFrom,
    RcptTo,
    StartTLS,
    XClient,
)
from .forwarding import ForwardingCommands
from .mail import Refusal, parse_mail, parse_rcpt
from .replies import format_reply

__all__ = ["ProtocolConfig", "ServerProtocol"]

_HTTP_REQUEST = re.compile(r"^(?:OPTIONS|GET|HEAD|POST|PUT|DELETE|TRACE|CONNECT|PATCH) \S* HTTP/\d(?:\.\d)?$", re.I)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _text(message: object) -> str | None:
    return message if isinstance(message, str) else None


# Phases of a connection.
_GREETING, _COMMAND, _AWAITING, _DATA, _TLS, _AUTH, _CLOSED, _BDAT = range(8)
assert (_COMMAND, _AUTH) == (COMMAND_PHASE, AUTH_PHASE)
assert (_COMMAND, _AWAITING, _DATA, _BDAT, _CLOSED) == body.PHASES


@functools.lru_cache(maxsize=512)
def _rendered(code: int, text: str, enhanced: str | None) -> bytes:
    """One-line replies, rendered once: most are the same few texts."""
    return format_reply(code, [text], enhanced)


class _KeepUnknown(dict[str, str]):
    """str.format_map values: unknown ``{placeholders}`` stay as they are."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@dataclass(frozen=True)
class ProtocolConfig:
    """What the core needs to know of the server options (the configuration reference has each)."""

    name: str = "localhost"
    banner: str = ""
    lmtp: bool = False
    size: int = 0
    hide_size: bool = False
    hide_pipelining: bool = False
    hide_8bitmime: bool = False
    hide_smtputf8: bool = False
    hide_enhancedstatuscodes: bool = False
    hide_dsn: bool = False
    hide_requiretls: bool = False
    chunking: bool = True
    starttls: bool = False
    hide_starttls: bool = False
    needs_upgrade: bool = False
    disabled_commands: frozenset[str] = frozenset()
    helo_response: str = "%s Nice to meet you, %s"
    max_recipients: int = 0
    max_command_length: int = 16384
    max_unrecognized_commands: int = 10
    bare_lf: str = "normalize"
    reject_oversized: bool = True
    accept_unknown_params: bool = False
    auth_methods: tuple[str, ...] = ()  # empty: AUTH is not offered
    auth_optional: bool = False
    allow_insecure_auth: bool = False
    auth_required_message: str = "Authentication required"
    max_unauthenticated_commands: int = 10  # 0: no limit
    max_auth_failures: int = 3


class ServerProtocol(AuthCommands, BodyCommands, ForwardingCommands):
    """One SMTP server-side connection, as a pure state machine."""

    def __init__(self, config: ProtocolConfig, session: Session) -> None:
        self.config = config
        self.session = session
        self._phase = _GREETING
        self._buf = bytearray()
        self._rpos = 0
        self._out: list[bytes] = []
        self._eof = False
        self._discarding = False  # inside an over-long line, dropping bytes up to its LF
        self._bad_commands = 0
        self._awaiting: Event | None = None
        self._decoder: DataDecoder | None = None
        self.xclient_allowed = False  # set by the driver from its trust list
        self.xforward_allowed = False
        self._xclient_used = False
        self._bdat_active = False
        self._bdat_next: tuple[int, bool] | None = None
        self._bdat_remaining = 0
        self._bdat_last = False
        self._bdat_total = 0
        self._bdat_refusal: Refusal | None = None
        self._close_reason = ""
        self.progress = 0  # lines handled so far: the driver's idle timer watches it
        self._sasl: Mechanism | None = None
        self._sasl_failure: SMTPError | None = None  # XOAUTH2: final reply after the JSON challenge
        self._auth_failures = 0
        self._unauthenticated = 0
        self._use_enhanced = not config.hide_enhancedstatuscodes

    # ----------------------------------------------------------------- state

    @property
    def closed(self) -> bool:
        """True once the core has nothing more to say: flush and close the connection."""
        return self._phase == _CLOSED

    @property
    def awaiting(self) -> Event | None:
        """The event waiting for ``accept()``/``reject()``, if any."""
        return self._awaiting

    @property
    def in_data(self) -> bool:
        """True while a DATA body is being received."""
        return self._phase == _DATA

    @property
    def in_body(self) -> bool:
        """True while message bytes (a DATA body or a BDAT chunk) are being received."""
        return self._phase == _DATA or self._phase == _BDAT

    @property
    def in_handshake(self) -> bool:
        """True between the STARTTLS 220 reply and `tls_established`."""
        return self._phase == _TLS

    @property
    def idle(self) -> bool:
        """True between transactions, waiting for a command (safe to close for shutdown)."""
        return self._phase == _COMMAND and self.session.envelope.mail_from is None

    @property
    def buffered(self) -> int:
        """Bytes received but not processed yet (the driver pauses reading above a bound)."""
        return len(self._buf) - self._rpos

    # ----------------------------------------------------------------- input/output

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the client."""
        if self._phase == _CLOSED or self._phase == _TLS:
            return  # plaintext after STARTTLS is dropped (CVE-2011-0411)
        if self._phase == _GREETING:
            self._close_with(421, f"{self.config.name} You talk too soon", "4.7.0", "early talker")
            return
        if self._discarding:
            idx = data.find(b"\n")
            if idx < 0:
                return
            data = data[idx + 1 :]
            self._discarding = False
            self._line_too_long()
            if self._phase == _CLOSED:
                return
        if self._rpos and self._rpos == len(self._buf):
            self._buf.clear()
            self._rpos = 0
        self._buf += data
        if self._phase in (_COMMAND, _AWAITING, _AUTH):
            self._check_line_length()

    def receive_eof(self) -> None:
        """The client will send nothing more (it may still read our replies)."""
        self._eof = True

    def data_to_send(self) -> bytes:
        """Replies written since the last call, ready for the socket."""
        if not self._out:
            return b""
        out = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        self._out.clear()
        return out

    # ----------------------------------------------------------------- driving

    def start(self) -> None:
        """Send the greeting: call once the connection is accepted (after on_connect)."""
        if self._phase != _GREETING:
            return
        self._out.append(format_reply(220, [self._greeting()], None))
        self._phase = _COMMAND
        self._check_line_length()

    def _greeting(self) -> str:
        text = f"{self.config.name} {'LMTP' if self.config.lmtp else 'ESMTP'}"
        return f"{text} {self.config.banner}" if self.config.banner else text

    def refuse_connection(self, error: SMTPError) -> None:
        """Answer the connection with ``error`` instead of a greeting, then close."""
        self._close_with(error.code, error.message, self._enhanced(error.code, error.enhanced), "refused")

    def close(self, code: int, text: str, enhanced: str | None = None) -> None:
        """Say a final word (timeouts, shutdown, too many clients) and close."""
        if self._phase == _CLOSED:
            return
        if self._phase == _TLS:
            self._phase = _CLOSED  # nothing can be written mid-handshake
            self._close_reason = text
            return
        self._close_with(code, text, enhanced, text)

    def tls_established(self) -> None:
        """The TLS handshake finished: forget everything learnt in plaintext (RFC 3207)."""
        session = self.session
        session.secure = True
        session.user = None  # an AUTH over plaintext does not carry into TLS
        session.host_name_appears_as = None
        session.envelope = Envelope()
        session.opening_command = None
        self._buf.clear()
        self._rpos = 0
        if self._phase != _CLOSED:
            self._phase = _COMMAND

    def next_event(self) -> Event | None:
        """The next event, or None when more input (or a decision) is needed first."""
        while True:
            phase = self._phase
            if phase == _COMMAND:
                line = self._next_line()
                if line is None:
                    if self._eof:
                        self._phase = _CLOSED
                        self._close_reason = "client closed the connection"
                        continue
                    return None
                event = self._handle_line(line)
                if event is not None:
                    if event.needs_decision:
                        self._awaiting = event
                        self._phase = _AWAITING
                    return event
            elif phase == _DATA:
                return self._next_data_event()
            elif phase == _BDAT:
                event = self._next_bdat_event()
                if event is not None or self._phase == _BDAT:
                    return event
            elif phase == _AUTH:
                line = self._next_line()
                if line is None:
                    if self._eof:
                        self._phase = _CLOSED
                        self._close_reason = "client closed the connection during AUTH"
                        continue
                    return None
                if len(line.rstrip(b"\r\n")) > self.config.max_command_length:
                    self._line_too_long()  # the same reply however the line was split
                    continue
                event = self._sasl_line(line)
                if event is not None:
                    self._awaiting = event
                    self._phase = _AWAITING
                    return event
            elif phase == _CLOSED:
                return CloseConnection(self._close_reason)
            else:
                return None

    def accept(self, message: BodyResult | list[BodyResult] = None) -> None:
        """Accept the awaited event; ``message`` replaces the default 250 text.

        For DataEnd it may be an SMTPError, and in LMTP a list with one result per
        recipient (a text, None for the default text, or an SMTPError).
        """
        results = self.body_results(message) if isinstance(self._awaiting, DataEnd) else None
        event = self._take_awaiting()  # a bad result list raised above: the event still waits
        if event is None:
            return
        session = self.session
        if isinstance(event, MailFrom):
            session.envelope.mail_from = event.address
            self._reply(250, _text(message) or "Accepted", "2.1.0")
        elif isinstance(event, RcptTo):
            rcpts = session.envelope.rcpt_to
            key = event.address.address.lower()
            for i, existing in enumerate(rcpts):
                if existing.address.lower() == key:
                    rcpts[i] = event.address
                    break
            else:
                rcpts.append(event.address)
            self._reply(250, _text(message) or "Accepted", "2.1.5")
        elif isinstance(event, DataStart):
            self._start_body()
            return
        elif isinstance(event, DataEnd):
            self._phase = _COMMAND
            assert results is not None
            self._finish_body(event, results)
            return
        elif isinstance(event, AuthAttempt):
            if session.user is None:
                session.user = event.auth.username
            self._update_transmission_type(session.opening_command or "EHLO")
            self._reply(235, _text(message) or "Authentication successful", "2.7.0")
        elif isinstance(event, XClient):
            self._out.append(format_reply(220, [self._greeting()], None))
        elif isinstance(event, StartTLS):
            self._out.append(format_reply(220, [self._enhanced_text("2.0.0", "Ready to start TLS")], None))
            self._buf.clear()  # anything pipelined behind STARTTLS is discarded
            self._rpos = 0
            self._phase = _TLS
            return
        self._phase = _COMMAND

    def reject(self, error: SMTPError) -> None:
        """Refuse the awaited event with ``error``'s reply."""
        event = self._take_awaiting()
        if event is None:
            return
        if isinstance(event, AuthAttempt):
            self._auth_failed(event, error)
            return
        if isinstance(event, DataEnd):
            self._phase = _COMMAND
            self._finish_body(event, self.body_results(error))
            self._close_on_421(error)
            return
        if isinstance(event, XClient):
            self.refuse_connection(error)
            return
        if isinstance(event, DataStart) and self._bdat_next is not None:
            size, _ = self._bdat_next
            self._reset_body_state()
            self._skip_chunk(size, Refusal(error.code, error.message, error.enhanced))
            return
        code = error.code
        self._reply(code, error.message, error.enhanced or self._context_code(event, code))
        if isinstance(event, MailFrom):
            self.session.envelope = Envelope()
        self._phase = _COMMAND
        self._close_on_421(error)

    def _close_on_421(self, error: SMTPError) -> None:
        if error.code == 421 and self._phase != _CLOSED:
            self._phase = _CLOSED
            self._close_reason = "handler answered 421"

    # ----------------------------------------------------------------- internals

    def _take_awaiting(self) -> Event | None:
        """The event being decided; None when the session was closed meanwhile (e.g. the
        server's close_timeout ran out while a handler was deciding)."""
        if self._phase == _CLOSED:
            self._awaiting = None
            return None
        event = self._awaiting
        if event is None or self._phase != _AWAITING:
            raise RuntimeError("no event is waiting for a decision")
        self._awaiting = None
        return event

    def _enhanced(self, code: int, enhanced: str | None) -> str | None:
        if not self._use_enhanced:
            return None
        return enhanced or default_enhanced_code(code)

    def _enhanced_text(self, enhanced: str, text: str) -> str:
        return f"{enhanced} {text}" if self._use_enhanced else text

    def _reply(self, code: int, text: str, enhanced: str | None = None) -> None:
        self._out.append(_rendered(code, text, self._enhanced(code, enhanced)))

    def _close_with(self, code: int, text: str, enhanced: str | None, reason: str) -> None:
        self._reply(code, text, enhanced)
        self._phase = _CLOSED
        self._close_reason = reason
        self._awaiting = None

    @staticmethod
    def _context_code(event: Event, code: int) -> str | None:
        if code // 100 != 5:
            return None
        if isinstance(event, MailFrom) and code in (550, 553):
            return "5.1.8" if code == 553 else "5.7.1"
        if isinstance(event, RcptTo) and code == 553:
            return "5.1.3"
        if isinstance(event, DataEnd) and code == 552:
            return "5.3.4"
        return None

    def _end_transaction(self) -> None:
        self._reset_body_state()
        self.session.transaction += 1
        self._bad_commands = 0

    def _update_transmission_type(self, command: str) -> None:
        session = self.session
        if command == "LHLO":
            base = "LMTP"
        elif command == "HELO":
            base = "SMTP"
        else:
            base = "ESMTP"
        if base != "SMTP":
            base += "S" if session.secure else ""
            base += "A" if session.user is not None else ""
        session.transmission_type = base

    def _check_line_length(self) -> None:
        """Drop an unterminated line that is already too long, without buffering it."""
        limit = self.config.max_command_length
        pending = len(self._buf) - self._rpos
        if pending and self._buf[-1] == 0x0D:
            pending -= 1  # the CR of a CRLF split between two reads is not part of the line
        if pending <= limit or self._phase not in (_COMMAND, _AWAITING, _AUTH):
            return
        if self._buf.find(b"\n", self._rpos) >= 0:
            return  # a complete line is waiting; it is checked when it is read
        if self._phase == _AWAITING:
            return  # checked again once the decision is made
        del self._buf[self._rpos :]
        self._discarding = True

    def _line_too_long(self) -> None:
        if self._phase == _AUTH:  # an over-long SASL response ends the exchange
            self._sasl = None
            self._sasl_failure = None
            self._phase = _COMMAND
        self._bad_command("Error: line too long", "5.5.6")

    def _bad_command(self, text: str, enhanced: str) -> None:
        """A 500 reply; the one that reaches ``max_unrecognized_commands`` is a 421 instead."""
        self._bad_commands += 1
        if self._bad_commands >= self.config.max_unrecognized_commands:
            self._close_with(
                421, f"{self.config.name} Error: too many unrecognized commands", "4.7.0", "too many bad commands"
            )
        else:
            self._reply(500, text, enhanced)

    def _next_line(self) -> bytes | None:
        buf = self._buf
        idx = buf.find(b"\n", self._rpos)
        if idx < 0:
            if self._rpos:
                del buf[: self._rpos]
                self._rpos = 0
            self._check_line_length()
            return None
        line = bytes(buf[self._rpos : idx + 1])
        self._rpos = idx + 1
        if self._rpos == len(buf):
            buf.clear()
            self._rpos = 0
        return line

    def _handle_line(self, raw: bytes) -> Event | None:
        self.progress += 1
        bare_lf = not raw.endswith(b"\r\n")
        raw = raw[:-1] if bare_lf else raw[:-2]
        # Length first: an over-long line gets the same reply however the reads were cut.
        if len(raw) > self.config.max_command_length:
            self._line_too_long()
            return None
        if bare_lf and self.config.bare_lf == "reject":
            self._bad_command("Error: bare <LF> received, commands must end with CRLF", "5.5.2")
            return None
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._bad_command("Error: command is not valid UTF-8", "5.5.2")
            return None
        if _CONTROL.search(line):
            self._bad_command("Error: control characters are not allowed in commands", "5.5.2")
            return None
        verb, _, argument = line.partition(" ")
        verb = verb.upper()
        handler = _COMMANDS.get(verb)
        if handler is None or verb in self.config.disabled_commands:
            if _HTTP_REQUEST.match(line):
                self._close_with(421, f"{self.config.name} HTTP requests not allowed", "4.7.0", "HTTP request")
                return None
            self._bad_command("Error: command not recognized", "5.5.2")
            return None
        limit = self.config.max_unauthenticated_commands
        if limit and verb != "AUTH" and self._auth_required():
            self._unauthenticated += 1
            if self._unauthenticated > limit:
                self._close_with(
                    421, f"{self.config.name} Error: too many unauthenticated commands", "4.7.0", "unauthenticated"
                )
                return None
        return handler(self, verb, argument.strip())

    # ----------------------------------------------------------------- commands

    def _cmd_helo(self, verb: str, argument: str) -> Event | None:
        args = argument.split()
        session = self.session
        command = verb
        if self.config.lmtp and command != "LHLO":
            self._reply(500, f"Error: {command} not allowed in LMTP server", "5.5.1")
            return None
        if not self.config.lmtp and command == "LHLO":
            self._bad_command("Error: command not recognized", "5.5.2")
            return None
        if len(args) != 1:
            self._reply(501, f"Error: syntax: {command} hostname", "5.5.4")
            return None
        hostname = args[0]
        if len(hostname) > 255:
            self._reply(501, "Error: bad hostname syntax", "5.5.4")
            return None
        aborted = self._abort_bdat()
        self._reset_body_state()
        session.host_name_appears_as = hostname.lower()
        session.opening_command = command
        self._update_transmission_type(command)
        greeting = self._helo_text()
        if command == "HELO":
            self._out.append(format_reply(250, [greeting], None))
        else:
            self._out.append(format_reply(250, [greeting, *self._extensions()], None))
        return aborted

    def _helo_text(self) -> str:
        template = self.config.helo_response
        values = [self.config.name, self.session.client_hostname or "[unknown]"]
        if "%s" in template:
            parts = template.split("%s")
            out = [parts[0]]
            for i, part in enumerate(parts[1:]):
                out.append(values[i] if i < len(values) else "")
                out.append(part)
            return "".join(out)
        try:
            return template.format_map(_KeepUnknown(name=values[0], client_hostname=values[1]))
        except (ValueError, IndexError):  # SMTPServer checks the option; a bare config may not
            return template

    def _extensions(self) -> list[str]:
        config = self.config
        session = self.session
        ext = []
        if not config.hide_pipelining:
            ext.append("PIPELINING")
        if not config.hide_8bitmime:
            ext.append("8BITMIME")
        if not config.hide_smtputf8:
            ext.append("SMTPUTF8")
        if not config.hide_enhancedstatuscodes:
            ext.append("ENHANCEDSTATUSCODES")
        if not config.hide_dsn:
            ext.append("DSN")
        ext.extend(self._forwarding_extensions())
        if self._auth_enabled and session.user is None and self._auth_usable():
            ext.append("AUTH " + " ".join(config.auth_methods))
        if (
            config.starttls
            and not session.secure
            and not config.hide_starttls
            and "STARTTLS" not in config.disabled_commands
        ):
            ext.append("STARTTLS")
        if session.secure and not config.hide_requiretls:
            ext.append("REQUIRETLS")
        if config.size:
            ext.append("SIZE" if config.hide_size else f"SIZE {config.size}")
        if config.chunking and "BDAT" not in config.disabled_commands:
            ext.append("CHUNKING")
            ext.append("BINARYMIME")
        return ext

    def _require_helo(self) -> bool:
        if self.session.host_name_appears_as is None:
            self._reply(503, f"Error: send {'LHLO' if self.config.lmtp else 'HELO/EHLO'} first", "5.5.1")
            return False
        return True

    def _transaction_refusal(self) -> Refusal | None:
        """HELO first, then STARTTLS if required, then AUTH if required (MAIL/RCPT/DATA/BDAT)."""
        if self.session.host_name_appears_as is None:
            return Refusal(503, f"Error: send {'LHLO' if self.config.lmtp else 'HELO/EHLO'} first", "5.5.1")
        if self.config.needs_upgrade and not self.session.secure:
            return Refusal(530, "Must issue a STARTTLS command first", "5.7.0")
        if self._auth_required():
            return Refusal(530, self.config.auth_required_message, "5.7.0")
        return None

    def _require_transaction_rights(self) -> bool:
        refusal = self._transaction_refusal()
        if refusal is not None:
            self._reply(refusal.code, refusal.text, refusal.enhanced)
            return False
        return True

    def _cmd_mail(self, verb: str, argument: str) -> Event | None:
        if not self._require_transaction_rights():
            return None
        envelope = self.session.envelope
        if envelope.mail_from is not None:
            self._reply(503, "Error: nested MAIL command", "5.5.1")
            return None
        try:
            request = parse_mail(argument, self.config, secure=self.session.secure)
        except Refusal as refusal:
            self._reply(refusal.code, refusal.text, refusal.enhanced)
            return None
        envelope.body_type = request.body_type
        envelope.smtp_utf8 = request.smtp_utf8
        envelope.require_tls = request.require_tls
        envelope.dsn = request.dsn
        return MailFrom(request.address)

    def _cmd_rcpt(self, verb: str, argument: str) -> Event | None:
        if not self._require_transaction_rights():
            return None
        envelope = self.session.envelope
        if envelope.mail_from is None:
            self._reply(503, "Error: need MAIL command", "5.5.1")
            return None
        if self._bdat_active:
            self._reply(503, "Error: RCPT not allowed after BDAT", "5.5.1")
            return None
        try:
            address = parse_rcpt(argument, self.config, envelope)
        except Refusal as refusal:
            self._reply(refusal.code, refusal.text, refusal.enhanced)
            return None
        return RcptTo(address)

    def _cmd_rset(self, verb: str, argument: str) -> Event | None:
        if argument:
            self._reply(501, "Error: syntax: RSET", "5.5.4")
            return None
        aborted = self._abort_bdat()
        self._reset_body_state()
        self._reply(250, "Flushed", "2.0.0")
        return aborted

    def _cmd_noop(self, verb: str, argument: str) -> Event | None:
        self._reply(250, "OK", "2.0.0")
        return None

    def _cmd_quit(self, verb: str, argument: str) -> Event | None:
        self._close_with(221, "Bye", "2.0.0", "client sent QUIT")
        return None

    def _cmd_vrfy(self, verb: str, argument: str) -> Event | None:
        if not argument:
            self._reply(501, "Error: syntax: VRFY address", "5.5.4")
            return None
        self._reply(252, "Cannot VRFY user, but will accept message and attempt delivery", "2.1.5")
        return None

    def _cmd_help(self, verb: str, argument: str) -> Event | None:
        self._reply(214, "See https://www.rfc-editor.org/rfc/rfc5321 for details", "2.0.0")
        return None

    def _cmd_expn(self, verb: str, argument: str) -> Event | None:
        self._reply(502, "Error: EXPN not implemented", "5.5.1")
        return None

    def _cmd_starttls(self, verb: str, argument: str) -> Event | None:
        if not self.config.starttls:
            self._bad_command("Error: command not recognized", "5.5.2")
            return None
        if argument:
            self._reply(501, "Error: syntax: STARTTLS", "5.5.4")
            return None
        if self.session.secure:
            self._reply(503, "Error: TLS already active", "5.5.1")
            return None
        return StartTLS()


# Verb -> method; one table for all connections.
_COMMANDS: dict[str, Callable[[ServerProtocol, str, str], Event | None]] = {
    "HELO": ServerProtocol._cmd_helo,
    "EHLO": ServerProtocol._cmd_helo,
    "LHLO": ServerProtocol._cmd_helo,
    "MAIL": ServerProtocol._cmd_mail,
    "RCPT": ServerProtocol._cmd_rcpt,
    "DATA": ServerProtocol._cmd_data,
    "BDAT": ServerProtocol._cmd_bdat,
    "RSET": ServerProtocol._cmd_rset,
    "NOOP": ServerProtocol._cmd_noop,
    "QUIT": ServerProtocol._cmd_quit,
    "VRFY": ServerProtocol._cmd_vrfy,
    "HELP": ServerProtocol._cmd_help,
    "EXPN": ServerProtocol._cmd_expn,
    "STARTTLS": ServerProtocol._cmd_starttls,
    "AUTH": ServerProtocol._cmd_auth,
    "XCLIENT": ServerProtocol._cmd_xclient,
    "XFORWARD": ServerProtocol._cmd_xforward,
}

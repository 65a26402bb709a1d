"""The sans-I/O SMTP server state machine.

Feed it bytes with `ServerProtocol.receive_data`, pull events with
`ServerProtocol.next_event`, answer the events that need a decision with
`ServerProtocol.accept` or `ServerProtocol.reject`, and write whatever
`ServerProtocol.data_to_send` returns. No sockets, no clock, no asyncio: everything
that does not need the application (syntax, sequencing, limits, EHLO, NOOP, RSET...) is
answered here.

The phases and every move between them are in :mod:`smtpgate.protocol.state`; the body
(`BodyReceiver`), AUTH (`AuthExchange`) and XCLIENT/XFORWARD (`Forwarding`) are parts
this class owns and drives.
"""

from __future__ import annotations

import re
from typing import Final

from ..errors import SMTPError
from ..session import Envelope, Session
from .auth import AuthExchange
from .body import BodyReceiver, BodyResult
from .buffer import InputBuffer
from .commands import COMMANDS
from .config import ProtocolConfig
from .ehlo import greeting
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
from .forwarding import Forwarding
from .mail import Refusal
from .replies import ReplyWriter
from .state import STEP, Phase, PhaseError, Trigger

__all__ = ["ProtocolConfig", "ServerProtocol"]

_HTTP_REQUEST: Final = re.compile(
    r"^(?:OPTIONS|GET|HEAD|POST|PUT|DELETE|TRACE|CONNECT|PATCH) \S* HTTP/\d(?:\.\d)?$", re.I
)
_CONTROL: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

# Enum members read as module names (compiled, a Final module name is a C static, not a
# lookup in the module's dict).
_GREETING: Final = Phase.GREETING
_COMMAND: Final = Phase.COMMAND
_AWAITING: Final = Phase.AWAITING
_DATA: Final = Phase.DATA
_BDAT: Final = Phase.BDAT
_AUTH: Final = Phase.AUTH
_TLS: Final = Phase.TLS
_CLOSED: Final = Phase.CLOSED
_GREET: Final = Trigger.GREET
_DECIDED: Final = Trigger.DECIDED
_CHUNK_STARTED: Final = Trigger.CHUNK_STARTED
_CHUNK_DONE: Final = Trigger.CHUNK_DONE
_CHALLENGE: Final = Trigger.CHALLENGE
_SASL_ENDED: Final = Trigger.SASL_ENDED
_CLOSE: Final = Trigger.CLOSE
_TLS_ACCEPTED: Final = Trigger.TLS_ACCEPTED
_TLS_DONE: Final = Trigger.TLS_DONE
# The hottest moves (a decision needed, a decision made, the body started) read the table
# directly, without `ServerProtocol.fire`'s method call and its arithmetic on enum members:
# the table cut by trigger. A move missing from it is a KeyError there rather than a
# PhaseError; the table is the same.


def _moves_on(trigger: Trigger) -> dict[Phase, Phase]:
    return {phase: STEP[phase << 4 | trigger] for phase in Phase if phase << 4 | trigger in STEP}


_AFTER_DECISION_NEEDED: Final = _moves_on(Trigger.DECISION_NEEDED)
_AFTER_DECIDED: Final = _moves_on(Trigger.DECIDED)
_AFTER_BODY_STARTED: Final = _moves_on(Trigger.BODY_STARTED)


def _text(message: object) -> str | None:
    return message if isinstance(message, str) else None


class ServerProtocol:
    """One SMTP server-side connection, as a pure state machine.

    Its parts, used by the command functions (:mod:`smtpgate.protocol.commands`):
    ``input`` (the bytes received), ``replies`` (the replies written), ``body`` (DATA and
    BDAT), ``auth`` (the SASL exchange) and ``forwarding`` (XCLIENT/XFORWARD).
    """

    def __init__(self, config: ProtocolConfig, session: Session) -> None:
        self.config = config
        self.session = session
        self._phase = _GREETING
        self.input = InputBuffer()
        self.replies = writer = ReplyWriter(not config.hide_enhancedstatuscodes)
        self.body = BodyReceiver(config, session, self.input, writer)
        self.auth = AuthExchange(config, session, writer)
        self.forwarding = Forwarding(session, writer)
        self._awaiting: Event | None = None
        self._close_reason = ""
        self._bad_commands = 0
        self._unauthenticated = 0
        self.progress = 0  # lines handled so far: the driver's idle timer watches it

    # ----------------------------------------------------------------- state

    @property
    def phase(self) -> Phase:
        """Where the session is (see :mod:`smtpgate.protocol.state`)."""
        return self._phase

    @property
    def closed(self) -> bool:
        """True once the core has nothing more to say: flush and close the connection."""
        return self._phase is _CLOSED

    @property
    def awaiting(self) -> Event | None:
        """The event waiting for ``accept()``/``reject()``, if any."""
        return self._awaiting

    @property
    def in_data(self) -> bool:
        """True while a DATA body is being received."""
        return self._phase is _DATA

    @property
    def in_body(self) -> bool:
        """True while message bytes (a DATA body or a BDAT chunk) are being received."""
        phase = self._phase
        return phase is _DATA or phase is _BDAT

    @property
    def in_handshake(self) -> bool:
        """True between the STARTTLS 220 reply and `tls_established`."""
        return self._phase is _TLS

    @property
    def idle(self) -> bool:
        """True between transactions, waiting for a command (safe to close for shutdown)."""
        return self._phase is _COMMAND and self.session.envelope.mail_from is None

    @property
    def buffered(self) -> int:
        """Bytes received but not processed yet (the driver pauses reading above a bound)."""
        return self.input.pending

    @property
    def xclient_allowed(self) -> bool:
        """May this peer use XCLIENT? Set by the driver from its trust list."""
        return self.forwarding.xclient_allowed

    @xclient_allowed.setter
    def xclient_allowed(self, value: bool) -> None:
        self.forwarding.xclient_allowed = value

    @property
    def xforward_allowed(self) -> bool:
        """May this peer use XFORWARD? Set by the driver from its trust list."""
        return self.forwarding.xforward_allowed

    @xforward_allowed.setter
    def xforward_allowed(self, value: bool) -> None:
        self.forwarding.xforward_allowed = value

    # ----------------------------------------------------------------- input/output

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the client."""
        phase = self._phase
        if phase is _CLOSED or phase is _TLS:
            return  # plaintext after STARTTLS is dropped (CVE-2011-0411)
        if phase is _GREETING:
            self.close_with(421, f"{self.config.name} You talk too soon", "4.7.0", "early talker")
            return
        if self.input.feed(data):  # the end of an over-long line that was being dropped
            self._line_too_long()
            phase = self._phase
        if phase is _COMMAND or phase is _AUTH:
            self.input.drop_overlong(self.config.max_command_length)

    def receive_eof(self) -> None:
        """The client will send nothing more (it may still read our replies)."""
        self.input.eof = True

    def data_to_send(self) -> bytes:
        """Replies written since the last call, ready for the socket."""
        return self.replies.take()

    # ----------------------------------------------------------------- driving

    def start(self) -> None:
        """Send the greeting: call once the connection is accepted (after on_connect)."""
        if self._phase is not _GREETING:
            return
        self.replies.lines(220, [greeting(self.config)])
        self.fire(_GREET)
        self.input.drop_overlong(self.config.max_command_length)

    def refuse_connection(self, error: SMTPError) -> None:
        """Answer the connection with ``error`` instead of a greeting, then close."""
        self.close_with(error.code, error.message, error.enhanced, "refused")

    def close(self, code: int, text: str, enhanced: str | None = None) -> None:
        """Say a final word (timeouts, shutdown, too many clients) and close."""
        phase = self._phase
        if phase is _CLOSED:
            return
        if phase is _TLS:
            self.fire(_CLOSE)  # nothing can be written mid-handshake
            self._close_reason = text
            return
        self.close_with(code, text, enhanced, text)

    def tls_established(self) -> None:
        """The TLS handshake finished: forget everything learnt in plaintext (RFC 3207)."""
        session = self.session
        session.secure = True
        session.user = None  # an AUTH over plaintext does not carry into TLS
        session.host_name_appears_as = None
        session.envelope = Envelope()
        session.opening_command = None
        self.input.clear()
        if self._phase is _TLS:
            self.fire(_TLS_DONE)

    def next_event(self) -> Event | None:
        """The next event, or None when more input (or a decision) is needed first."""
        while True:
            phase = self._phase
            if phase is _COMMAND:
                line = self._next_line()
                if line is None:
                    if self.input.eof:
                        self._end("client closed the connection")
                        continue
                    return None
                event = self._handle_line(line)
                if event is not None:
                    if event.needs_decision:
                        return self._await(event)
                    return event
            elif phase is _DATA:
                data_event = self.body.next_data_event()
                if type(data_event) is DataEnd:
                    return self._await(data_event)
                if data_event is not None:
                    return data_event
                if self.input.eof:
                    self._end("client closed the connection during DATA")
                    continue
                return None
            elif phase is _BDAT:
                body = self.body
                chunk_event = body.next_bdat_event()
                if type(chunk_event) is DataEnd:
                    return self._await(chunk_event)
                if chunk_event is not None:
                    return chunk_event
                if body.chunk_remaining:
                    if self.input.eof:
                        self._end("client closed the connection during BDAT")
                        continue
                    return None
                self.fire(_CHUNK_DONE)
            elif phase is _AUTH:
                line = self._next_line()
                if line is None:
                    if self.input.eof:
                        self._end("client closed the connection during AUTH")
                        continue
                    return None
                if len(line.rstrip(b"\r\n")) > self.config.max_command_length:
                    self._line_too_long()  # the same reply however the line was split
                    continue
                attempt = self.auth.line(line)
                if attempt is not None:
                    return self._await(attempt)
                self._after_auth_step()
            elif phase is _CLOSED:
                return CloseConnection(self._close_reason)
            else:  # GREETING, AWAITING, TLS: waiting for the driver
                return None

    def accept(self, message: BodyResult | list[BodyResult] = None) -> None:
        """Accept the awaited event; ``message`` replaces the default 250 text.

        For DataEnd it may be an SMTPError, and in LMTP a list with one result per
        recipient (a text, None for the default text, or an SMTPError).
        """
        results = self.body.results(message) if type(self._awaiting) is DataEnd else None
        event = self._take_awaiting()  # a bad result list raised above: the event still waits
        if event is None:
            return
        session = self.session
        reply = self.replies.reply
        # ``type() is`` rather than ``match``: the hot path, and it narrows as well.
        if type(event) is MailFrom:
            session.envelope.mail_from = event.address
            reply(250, _text(message) or "Accepted", "2.1.0")
        elif type(event) is RcptTo:
            rcpts = session.envelope.rcpt_to
            key = event.address.address.lower()
            for i, existing in enumerate(rcpts):
                if existing.address.lower() == key:
                    rcpts[i] = event.address
                    break
            else:
                rcpts.append(event.address)
            reply(250, _text(message) or "Accepted", "2.1.5")
        elif type(event) is DataStart:
            first = self.body.take_first_chunk()
            if first is not None:
                self.body.begin_chunk(*first)
                self.fire(_CHUNK_STARTED)
            else:
                self.body.start_data()
                self._phase = _AFTER_BODY_STARTED[self._phase]
            return
        elif type(event) is DataEnd:
            assert results is not None
            self._phase = _AFTER_DECIDED[self._phase]
            self.body.finish(event, results)
            self._end_transaction()
            return
        elif type(event) is AuthAttempt:
            if session.user is None:
                session.user = event.auth.username
            self.update_transmission_type(session.opening_command or "EHLO")
            reply(235, _text(message) or "Authentication successful", "2.7.0")
        elif type(event) is XClient:
            self.replies.lines(220, [greeting(self.config)])
        elif type(event) is StartTLS:
            self.replies.lines(220, [self.replies.with_code("2.0.0", "Ready to start TLS")])
            self.input.clear()  # anything pipelined behind STARTTLS is discarded
            self.fire(_TLS_ACCEPTED)
            return
        self._phase = _AFTER_DECIDED[self._phase]

    def reject(self, error: SMTPError) -> None:
        """Refuse the awaited event with ``error``'s reply."""
        event = self._take_awaiting()
        if event is None:
            return
        match event:
            case AuthAttempt():
                self.auth.refused(event, error)
                self._after_auth_step(decided=True)
                return
            case DataEnd():
                self.fire(_DECIDED)
                self.body.finish(event, self.body.results(error))
                self._end_transaction()
            case XClient():
                self.refuse_connection(error)
                return
            case DataStart() if (first := self.body.take_first_chunk()) is not None:
                self.body.reset()
                self.body.skip_chunk(first[0], Refusal(error.code, error.message, error.enhanced))
                self.fire(_CHUNK_STARTED)
                return
            case _:
                code = error.code
                self.replies.reply(code, error.message, error.enhanced or _context_code(event, code))
                if type(event) is MailFrom:
                    self.session.envelope = Envelope()
                self.fire(_DECIDED)
        if error.code == 421 and self._phase is not _CLOSED:
            self._end("handler answered 421")

    # ----------------------------------------------------------------- internals

    def fire(self, trigger: Trigger) -> None:
        """Move along the phase table (:mod:`smtpgate.protocol.state`)."""
        try:
            self._phase = STEP[self._phase << 4 | trigger]
        except KeyError:
            raise PhaseError(f"{trigger.name} is not allowed in {self._phase.name}") from None

    def _await(self, event: Event) -> Event:
        self._phase = _AFTER_DECISION_NEEDED[self._phase]
        self._awaiting = event
        return event

    def _take_awaiting(self) -> Event | None:
        """The event being decided; None when the session was closed meanwhile (e.g. the
        server's close_timeout ran out while a handler was deciding)."""
        if self._phase is _CLOSED:
            self._awaiting = None
            return None
        event = self._awaiting
        if event is None or self._phase is not _AWAITING:
            raise RuntimeError("no event is waiting for a decision")
        self._awaiting = None
        return event

    def _end(self, reason: str) -> None:
        """Close without a word (the client went away, or a reply was already written)."""
        self.fire(_CLOSE)
        self._close_reason = reason

    def close_with(self, code: int, text: str, enhanced: str | None, reason: str) -> None:
        self.replies.reply(code, text, enhanced)
        self._end(reason)
        self._awaiting = None

    def _after_auth_step(self, *, decided: bool = False) -> None:
        """After an AUTH line or a refusal: close, challenge again, or back to commands."""
        auth = self.auth
        if auth.exhausted:
            self.close_with(
                421, f"{self.config.name} Error: too many authentication failures", "4.7.0", "AUTH failures"
            )
        elif auth.in_exchange:
            self.fire(_CHALLENGE)
        else:
            self.fire(_DECIDED if decided else _SASL_ENDED)

    def _end_transaction(self) -> None:
        self.body.reset()
        self.session.transaction += 1
        self._bad_commands = 0

    def update_transmission_type(self, command: str) -> None:
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

    def _line_too_long(self) -> None:
        if self._phase is _AUTH:  # an over-long SASL response ends the exchange
            self.auth.cancel()
            self.fire(_SASL_ENDED)
        self.bad_command("Error: line too long", "5.5.6")

    def bad_command(self, text: str, enhanced: str) -> None:
        """A 500 reply; the one that reaches ``max_unrecognized_commands`` is a 421 instead."""
        self._bad_commands += 1
        if self._bad_commands >= self.config.max_unrecognized_commands:
            self.close_with(
                421, f"{self.config.name} Error: too many unrecognized commands", "4.7.0", "too many bad commands"
            )
        else:
            self.replies.reply(500, text, enhanced)

    def _next_line(self) -> bytes | None:
        return self.input.next_line(self.config.max_command_length)

    def _handle_line(self, raw: bytes) -> Event | None:
        self.progress += 1
        bare_lf = not raw.endswith(b"\r\n")
        raw = raw[:-1] if bare_lf else raw[:-2]
        # Length first: an over-long line gets the same reply however the reads were cut.
        if len(raw) > self.config.max_command_length:
            self._line_too_long()
            return None
        if bare_lf and self.config.bare_lf == "reject":
            self.bad_command("Error: bare <LF> received, commands must end with CRLF", "5.5.2")
            return None
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.bad_command("Error: command is not valid UTF-8", "5.5.2")
            return None
        # (printable ASCII, the usual command, has no control character: spare the search)
        if not (line.isascii() and line.isprintable()) and _CONTROL.search(line):
            self.bad_command("Error: control characters are not allowed in commands", "5.5.2")
            return None
        verb, _, argument = line.partition(" ")
        verb = verb.upper()
        handler = _COMMANDS.get(verb)
        if handler is None or verb in self.config.disabled_commands:
            if _HTTP_REQUEST.match(line):
                self.close_with(421, f"{self.config.name} HTTP requests not allowed", "4.7.0", "HTTP request")
                return None
            self.bad_command("Error: command not recognized", "5.5.2")
            return None
        limit = self.config.max_unauthenticated_commands
        if limit and verb != "AUTH" and self.auth.enabled and self.auth.required():
            self._unauthenticated += 1
            if self._unauthenticated > limit:
                self.close_with(
                    421, f"{self.config.name} Error: too many unauthenticated commands", "4.7.0", "unauthenticated"
                )
                return None
        return handler(self, verb, argument.strip())


def _context_code(event: Event, code: int) -> str | None:
    """The enhanced code a refusal of MAIL or RCPT means when the handler gave none."""
    if code // 100 != 5:
        return None
    if type(event) is MailFrom and code in (550, 553):
        return "5.1.8" if code == 553 else "5.7.1"
    if type(event) is RcptTo and code == 553:
        return "5.1.3"
    return None


# Verb -> command function (:mod:`smtpgate.protocol.commands`); one table for all connections.
_COMMANDS: Final = COMMANDS

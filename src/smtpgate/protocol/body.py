"""The message body inside the protocol core: DATA, BDAT (RFC 3030) and the final replies,
one per recipient in LMTP (RFC 2033).

Mixed into `smtpgate.protocol.core.ServerProtocol`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import SMTPError
from ..session import Envelope, Session
from .data import DataDecoder
from .events import BodyAborted, CloseConnection, DataChunk, DataEnd, DataStart, Event
from .mail import Refusal
from .replies import format_reply

if TYPE_CHECKING:
    from .core import ProtocolConfig

__all__ = ["BodyCommands", "BodyResult"]

# What the driver may answer for a message: a 250 text (None: the default), an error,
# or, in LMTP, one of those per accepted recipient.
BodyResult = str | SMTPError | None

# Phases shared with core.py.
PHASES = (COMMAND_PHASE, AWAITING_PHASE, DATA_PHASE, BDAT_PHASE, CLOSED_PHASE) = (1, 2, 3, 7, 6)
_MAX_CHUNK_DIGITS = 15


class BodyCommands:
    """DATA and BDAT handling; expects the attributes and helpers of ServerProtocol."""

    config: ProtocolConfig
    session: Session
    _phase: int
    _out: list[bytes]
    _buf: bytearray
    _rpos: int
    _eof: bool
    _awaiting: Event | None
    _close_reason: str
    _decoder: DataDecoder | None
    _bdat_active: bool  # a BDAT transaction is under way
    _bdat_next: tuple[int, bool] | None  # the first chunk, until DataStart is accepted
    _bdat_remaining: int
    _bdat_last: bool
    _bdat_total: int
    _bdat_refusal: Refusal | None  # the reply owed once a refused chunk is skipped

    if TYPE_CHECKING:

        def _reply(self, code: int, text: str, enhanced: str | None = None) -> None: ...

        def _close_with(self, code: int, text: str, enhanced: str | None, reason: str) -> None: ...

        def _transaction_refusal(self) -> Refusal | None: ...

        def _end_transaction(self) -> None: ...

        def _bad_command(self, text: str, enhanced: str) -> None: ...

        def _enhanced(self, code: int, enhanced: str | None) -> str | None: ...

    # ----------------------------------------------------------------- DATA

    def _cmd_data(self, verb: str, argument: str) -> Event | None:
        if argument:
            self._reply(501, "Error: syntax: DATA", "5.5.4")
            return None
        refusal = self._body_refusal()
        if refusal is None and self._bdat_active:
            refusal = Refusal(503, "Error: DATA not allowed after BDAT", "5.5.1")
        if refusal is None and self.session.envelope.body_type == "binarymime":
            refusal = Refusal(503, "Error: BODY=BINARYMIME requires BDAT", "5.5.1")
        if refusal is not None:
            self._reply(refusal.code, refusal.text, refusal.enhanced)
            return None
        return DataStart()

    def _body_refusal(self) -> Refusal | None:
        refusal = self._transaction_refusal()
        if refusal is not None:
            return refusal
        envelope = self.session.envelope
        if envelope.mail_from is None:
            return Refusal(503, "Error: need MAIL command", "5.5.1")
        if not envelope.rcpt_to:
            return Refusal(503, "Error: need RCPT command", "5.5.1")
        return None

    def _start_body(self) -> None:
        """DataStart was accepted: 354 for DATA, or straight into the first BDAT chunk."""
        if self._bdat_next is not None:
            size, last = self._bdat_next
            self._bdat_next = None
            self._begin_chunk(size, last)
            return
        self._out.append(format_reply(354, ["End data with <CR><LF>.<CR><LF>"], None))
        self._decoder = DataDecoder(self.config.bare_lf)
        self._phase = DATA_PHASE

    def _next_data_event(self) -> Event | None:
        decoder = self._decoder
        assert decoder is not None
        if not decoder.ended:
            if self._rpos:
                del self._buf[: self._rpos]
                self._rpos = 0
            chunk, used = decoder.decode(self._buf)
            if used:
                if used == len(self._buf):
                    self._buf.clear()
                else:
                    del self._buf[:used]
            if chunk and not (decoder.bare_lf_seen and self.config.bare_lf == "reject"):
                return DataChunk(chunk)
        if decoder.ended:
            size = self.config.size
            return self._await(
                DataEnd(decoder.byte_length, bool(size) and decoder.byte_length > size, decoder.bare_lf_seen)
            )
        if self._eof:
            self._phase = CLOSED_PHASE
            self._close_reason = "client closed the connection during DATA"
            return CloseConnection(self._close_reason)
        return None

    def _await(self, event: Event) -> Event:
        self._awaiting = event
        self._phase = AWAITING_PHASE
        return event

    # ----------------------------------------------------------------- BDAT

    def _cmd_bdat(self, verb: str, argument: str) -> Event | None:
        args = argument.split()
        if (
            not 1 <= len(args) <= 2
            or not args[0].isdigit()
            or not args[0].isascii()
            or len(args[0]) > _MAX_CHUNK_DIGITS
            or (len(args) == 2 and args[1].upper() != "LAST")
        ):
            # The chunk's length is unknown, so its bytes cannot be told from commands.
            self._close_with(421, f"{self.config.name} Error: bad BDAT syntax, closing", "4.5.4", "bad BDAT")
            return None
        size, last = int(args[0]), len(args) == 2
        refusal = self._body_refusal()
        if refusal is not None:
            self._skip_chunk(size, refusal)
            return None
        if not self._bdat_active:
            self._bdat_active = True
            self._bdat_total = 0
            self._bdat_next = (size, last)
            return DataStart()
        self._begin_chunk(size, last)
        return None

    def _begin_chunk(self, size: int, last: bool) -> None:
        self._bdat_remaining = size
        self._bdat_last = last
        self._bdat_refusal = None
        self._phase = BDAT_PHASE

    def _skip_chunk(self, size: int, refusal: Refusal) -> None:
        self._bdat_remaining = size
        self._bdat_last = False
        self._bdat_refusal = refusal
        self._phase = BDAT_PHASE

    def _next_bdat_event(self) -> Event | None:
        """Bytes of the current chunk; at its end a 250 (or DataEnd after LAST)."""
        remaining = self._bdat_remaining
        available = len(self._buf) - self._rpos
        if remaining and available:
            take = min(remaining, available)
            start = self._rpos
            chunk = bytes(self._buf[start : start + take])
            self._rpos = start + take
            if self._rpos == len(self._buf):
                self._buf.clear()
                self._rpos = 0
            self._bdat_remaining = remaining = remaining - take
            if self._bdat_refusal is None:
                self._bdat_total += take
                return DataChunk(chunk)
        if remaining:
            if self._eof:
                self._phase = CLOSED_PHASE
                self._close_reason = "client closed the connection during BDAT"
                return CloseConnection(self._close_reason)
            return None
        refusal = self._bdat_refusal
        self._phase = COMMAND_PHASE
        if refusal is not None:
            self._bdat_refusal = None
            self._reply(refusal.code, refusal.text, refusal.enhanced)
            return None
        if self._bdat_last:
            size = self.config.size
            return self._await(DataEnd(self._bdat_total, bool(size) and self._bdat_total > size, False))
        self._reply(250, f"{self._bdat_total} octets received", "2.0.0")
        return None

    def _abort_bdat(self) -> Event | None:
        """RSET or a new EHLO in the middle of a BDAT transaction drops the message."""
        if not self._bdat_active:
            return None
        self._bdat_active = False
        self._bdat_total = 0
        return BodyAborted("transaction reset during BDAT")

    # ----------------------------------------------------------------- final replies

    def _finish_body(self, event: DataEnd, results: list[BodyResult]) -> None:
        """Write the reply for the message, or one per recipient in LMTP."""
        config = self.config
        for address, result in zip(self._reply_targets(), results, strict=True):
            if event.bare_lf and config.bare_lf == "reject":
                self._reply(550, "Error: bare <LF> received in message, use CRLF line endings", "5.6.0")
            elif isinstance(result, SMTPError):
                enhanced = result.enhanced or ("5.3.4" if result.code == 552 else None)
                self._reply(result.code, result.message, enhanced)
            elif event.size_exceeded and config.reject_oversized:
                self._reply(552, f"Error: message exceeds fixed maximum message size {config.size}", "5.3.4")
            elif config.lmtp:
                self._reply(250, result or f"<{address}> OK: message accepted", "2.6.0")
            else:
                self._reply(250, result or "OK: message queued", "2.6.0")
        self._end_transaction()

    def _reply_targets(self) -> list[str]:
        rcpts = self.session.envelope.rcpt_to
        if self.config.lmtp:
            return [r.address for r in rcpts]
        return [rcpts[0].address if rcpts else ""]

    def body_results(self, result: BodyResult | list[BodyResult]) -> list[BodyResult]:
        """Spread the driver's answer over the replies owed (one, or one per recipient)."""
        count = len(self._reply_targets())
        if not isinstance(result, list):
            return [result] * count
        for entry in result:
            if entry is not None and not isinstance(entry, (str, SMTPError)):
                raise TypeError(f"on_data results must be str, None or SMTPError, not {type(entry).__name__}")
        if self.config.lmtp:
            if len(result) != count:
                raise ValueError(f"on_data returned {len(result)} results for {count} recipients")
            return list(result)
        # SMTP has one reply per message: the first failure, else the first text.
        errors = [r for r in result if isinstance(r, SMTPError)]
        if errors:
            return [errors[0]]
        texts = [r for r in result if isinstance(r, str)]
        return [texts[0] if texts else None]

    def _reset_body_state(self) -> None:
        self._decoder = None
        self._bdat_active = False
        self._bdat_next = None
        self._bdat_total = 0
        self.session.envelope = Envelope()

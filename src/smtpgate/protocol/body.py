"""The message body inside the protocol core: DATA, BDAT (RFC 3030) and the final replies,
one per recipient in LMTP (RFC 2033).

`BodyReceiver` reads the body out of the core's input buffer and writes the replies
that belong to it; the core decides when (its phase table) and what the commands mean.
"""

from __future__ import annotations

from typing import Final

from ..errors import SMTPError
from ..session import Envelope, Session
from .buffer import InputBuffer
from .config import ProtocolConfig
from .data import DataDecoder
from .events import BodyAborted, DataChunk, DataEnd
from .mail import Refusal
from .replies import SIZE_EXCEEDED_CODE, ReplyWriter, format_reply, size_exceeded_text

__all__ = ["BodyReceiver", "BodyResult", "parse_bdat"]

# What the driver may answer for a message: a 250 text (None: the default), an error,
# or, in LMTP, one of those per accepted recipient.
BodyResult = str | SMTPError | None

_MAX_CHUNK_DIGITS: Final = 15
_GO_AHEAD: Final = format_reply(354, ["End data with <CR><LF>.<CR><LF>"], None)


def parse_bdat(argument: str) -> tuple[int, bool] | None:
    """``size [LAST]`` as (size, last), or None if malformed."""
    args = argument.split()
    if (
        not 1 <= len(args) <= 2
        or not args[0].isdigit()
        or not args[0].isascii()
        or len(args[0]) > _MAX_CHUNK_DIGITS
        or (len(args) == 2 and args[1].upper() != "LAST")
    ):
        return None
    return int(args[0]), len(args) == 2


class BodyReceiver:
    """One transaction's body: the DATA decoder or the BDAT chunk being read."""

    __slots__ = (
        "_config",
        "_session",
        "_input",
        "_writer",
        "_decoder",
        "bdat_active",
        "_first_chunk",
        "chunk_remaining",
        "_chunk_last",
        "_bdat_total",
        "_chunk_refusal",
    )

    def __init__(self, config: ProtocolConfig, session: Session, input: InputBuffer, writer: ReplyWriter) -> None:
        self._config = config
        self._session = session
        self._input = input
        self._writer = writer
        self._decoder: DataDecoder | None = None
        self.bdat_active = False  # a BDAT transaction is under way
        self._first_chunk: tuple[int, bool] | None = None  # until DataStart is decided
        self.chunk_remaining = 0
        self._chunk_last = False
        self._bdat_total = 0
        self._chunk_refusal: Refusal | None = None  # the reply owed once a refused chunk is read

    # ----------------------------------------------------------------- DATA

    def start_data(self) -> None:
        """DATA was accepted: 354, then the body up to ``CRLF.CRLF``."""
        self._writer.out.append(_GO_AHEAD)
        self._decoder = DataDecoder(self._config.bare_lf)

    def next_data_event(self) -> DataChunk | DataEnd | None:
        """Body bytes, then DataEnd; None when more input is needed."""
        decoder = self._decoder
        assert decoder is not None
        if not decoder.ended:
            input = self._input
            held = input.held
            if held is not None:  # the bytes came in one piece: decoded as they came
                chunk, used = decoder.decode(held)
                if used:
                    input.held = held[used:] or None
            else:
                input.compact()
                buf = input.data
                chunk, used = decoder.decode(buf)
                if used:
                    if used == len(buf):
                        buf.clear()
                    else:
                        del buf[:used]
            if chunk and not (decoder.bare_lf_seen and self._config.bare_lf == "reject"):
                return DataChunk(chunk)
        if decoder.ended:
            size = self._config.size
            return DataEnd(decoder.byte_length, bool(size) and decoder.byte_length > size, decoder.bare_lf_seen)
        return None

    # ----------------------------------------------------------------- BDAT

    def open_bdat(self, size: int, last: bool) -> bool:
        """A BDAT chunk in a transaction. True if it is the first (DataStart must be
        decided first), False if its bytes follow now (`begin_chunk` was done)."""
        if self.bdat_active:
            self.begin_chunk(size, last)
            return False
        self.bdat_active = True
        self._bdat_total = 0
        self._first_chunk = (size, last)
        return True

    def take_first_chunk(self) -> tuple[int, bool] | None:
        """The first chunk, once its DataStart is decided (None for DATA)."""
        first, self._first_chunk = self._first_chunk, None
        return first

    def begin_chunk(self, size: int, last: bool) -> None:
        self.chunk_remaining = size
        self._chunk_last = last
        self._chunk_refusal = None

    def skip_chunk(self, size: int, refusal: Refusal) -> None:
        """Read and drop a chunk, then answer ``refusal``."""
        self.chunk_remaining = size
        self._chunk_last = False
        self._chunk_refusal = refusal

    def next_bdat_event(self) -> DataChunk | DataEnd | None:
        """Bytes of the current chunk; at its end DataEnd after LAST, else a reply.

        None with ``chunk_remaining`` zero: the chunk is done and answered."""
        remaining = self.chunk_remaining
        if remaining:
            input = self._input
            if input.pending:
                chunk = input.take(remaining)
                self.chunk_remaining = remaining = remaining - len(chunk)
                if self._chunk_refusal is None:
                    self._bdat_total += len(chunk)
                    return DataChunk(chunk)
            if remaining:
                return None
        refusal = self._chunk_refusal
        if refusal is not None:
            self._chunk_refusal = None
            self._writer.reply(refusal.code, refusal.text, refusal.enhanced)
            return None
        if self._chunk_last:
            size = self._config.size
            return DataEnd(self._bdat_total, bool(size) and self._bdat_total > size, False)
        self._writer.reply(250, f"{self._bdat_total} octets received", "2.0.0")
        return None

    def abort_bdat(self) -> BodyAborted | None:
        """RSET or a new EHLO in the middle of a BDAT transaction drops the message."""
        if not self.bdat_active:
            return None
        self.bdat_active = False
        self._bdat_total = 0
        return BodyAborted("transaction reset during BDAT")

    # ----------------------------------------------------------------- final replies

    def finish(self, event: DataEnd, results: list[BodyResult]) -> None:
        """Write the reply for the message, or one per recipient in LMTP."""
        if not self._config.lmtp:  # one reply, whatever the recipients
            (result,) = results
            self._finish_one(event, result, "")
            return
        for address, result in zip(self._reply_targets(), results, strict=True):
            self._finish_one(event, result, address)

    def _finish_one(self, event: DataEnd, result: BodyResult, address: str) -> None:
        config = self._config
        reply = self._writer.reply
        if event.bare_lf and config.bare_lf == "reject":
            reply(550, "Error: bare <LF> received in message, use CRLF line endings", "5.6.0")
        elif isinstance(result, SMTPError):
            reply(result.code, result.message, result.enhanced or (SIZE_EXCEEDED_CODE if result.code == 552 else None))
        elif event.size_exceeded and config.reject_oversized:
            reply(552, size_exceeded_text(config.size), SIZE_EXCEEDED_CODE)
        elif config.lmtp:
            reply(250, result or f"<{address}> OK: message accepted", "2.6.0")
        else:
            reply(250, result or "OK: message queued", "2.6.0")

    def _reply_targets(self) -> list[str]:
        rcpts = self._session.envelope.rcpt_to
        if self._config.lmtp:
            return [r.address for r in rcpts]
        return [rcpts[0].address if rcpts else ""]

    def results(self, result: BodyResult | list[BodyResult]) -> list[BodyResult]:
        """Spread the driver's answer over the replies owed (one, or one per recipient)."""
        count = len(self._reply_targets()) if self._config.lmtp else 1
        if not isinstance(result, list):
            return [result] * count
        for entry in result:
            if entry is not None and not isinstance(entry, (str, SMTPError)):
                raise TypeError(f"on_data results must be str, None or SMTPError, not {type(entry).__name__}")
        if self._config.lmtp:
            if len(result) != count:
                raise ValueError(f"on_data returned {len(result)} results for {count} recipients")
            return list(result)
        # SMTP has one reply per message: the first failure, else the first text.
        errors = [r for r in result if isinstance(r, SMTPError)]
        if errors:
            return [errors[0]]
        texts = [r for r in result if isinstance(r, str)]
        return [texts[0] if texts else None]

    def reset(self) -> None:
        """A new transaction: no body, no BDAT, an empty envelope."""
        self._decoder = None
        self.bdat_active = False
        self._first_chunk = None
        self._bdat_total = 0
        self._session.envelope = Envelope()

"""Events the protocol core hands to its driver (the server shell or a test).

Events that need a decision (``needs_decision``) pause the core until the driver calls
``accept()`` or ``reject()`` on it; the others are informational.
"""

from __future__ import annotations

from ..sasl import AuthRequest
from ..session import Address

__all__ = [
    "Event",
    "MailFrom",
    "RcptTo",
    "DataStart",
    "DataChunk",
    "DataEnd",
    "StartTLS",
    "AuthAttempt",
    "BodyAborted",
    "XClient",
    "CloseConnection",
]


class Event:
    """Base class of every core event."""

    __slots__ = ()
    needs_decision = False

    def __repr__(self) -> str:
        names: tuple[str, ...] = self.__slots__
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in names)
        return f"{type(self).__name__}({fields})"


class MailFrom(Event):
    """A syntactically valid MAIL FROM; accept to start the transaction."""

    __slots__ = ("address",)
    needs_decision = True

    def __init__(self, address: Address) -> None:
        self.address = address


class RcptTo(Event):
    """A syntactically valid RCPT TO; accept to add the recipient."""

    __slots__ = ("address",)
    needs_decision = True

    def __init__(self, address: Address) -> None:
        self.address = address


class DataStart(Event):
    """DATA with a sender and recipients; accept to send 354 and receive the body."""

    __slots__ = ()
    needs_decision = True


class DataChunk(Event):
    """Unstuffed message bytes, in order, never empty."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class DataEnd(Event):
    """The end-of-data marker arrived; accept or reject to send the final reply."""

    __slots__ = ("byte_length", "size_exceeded", "bare_lf")
    needs_decision = True

    def __init__(self, byte_length: int, size_exceeded: bool, bare_lf: bool) -> None:
        self.byte_length = byte_length
        self.size_exceeded = size_exceeded
        self.bare_lf = bare_lf


class StartTLS(Event):
    """STARTTLS was asked for; accept to send 220 and then do the handshake."""

    __slots__ = ()
    needs_decision = True


class AuthAttempt(Event):
    """Credentials from a finished SASL exchange; accept (after setting ``session.user``)
    to answer 235, reject to answer the failure."""

    __slots__ = ("auth",)
    needs_decision = True

    def __init__(self, auth: AuthRequest) -> None:
        self.auth = auth


class BodyAborted(Event):
    """A message being received with BDAT was dropped (RSET, EHLO): end its stream."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class XClient(Event):
    """XCLIENT changed who the client is (the session is already updated); accept to
    greet again with 220, reject to refuse the new identity and close."""

    __slots__ = ("attributes",)
    needs_decision = True

    def __init__(self, attributes: dict[str, str]) -> None:
        self.attributes = attributes


class CloseConnection(Event):
    """The core is done: flush what it wrote, then close the connection."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

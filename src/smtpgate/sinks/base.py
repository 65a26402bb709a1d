"""The sink contract: where a whole message goes before the ``250``.

A `Sink` opens one `Delivery` per message. The delivery receives the message in
chunks (`Delivery.write`, wire format with CRLF line endings) and makes it durable in
`Delivery.commit`: when ``commit`` returns, the message survives a crash. A delivery that
is refused or whose client goes away is dropped with `Delivery.abort`; nothing of it
remains. A sink never half-stores.

Errors: a sink that cannot work at all (a folder it cannot create, a database it cannot
open) raises `SinkError` with one line when it is made or started; a commit refused for
lack of room raises `SinkFull` (the command answers ``452 4.3.1``); any other exception
from ``write`` or ``commit`` is a temporary failure (``451 4.3.0``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..session import Session

__all__ = ["MessageInfo", "Delivery", "Sink", "SinkError", "SinkFull"]


class SinkError(ValueError):
    """A sink cannot be used (bad spec, a folder it cannot make or write): one clear line."""


class SinkFull(Exception):
    """The sink has no room for this message now; the client should try again later."""


@dataclass(frozen=True)
class MessageInfo:
    """What a sink knows of a message besides its bytes: the envelope and the client."""

    sender: str
    """The envelope sender (``""`` for the null sender of bounces)."""
    recipients: tuple[str, ...] = ()
    session_id: str = ""
    client_address: str = ""
    """The client's IP address (after PROXY/XCLIENT)."""
    client_name: str = ""
    """The name the client gave in HELO/EHLO/LHLO."""
    user: str | None = None
    """The AUTH identity, if the client authenticated."""
    secure: bool = False
    """The message came over TLS."""
    lmtp: bool = False
    received: float = field(default_factory=time.time)
    """When the message arrived (seconds since the epoch)."""

    @classmethod
    def from_session(cls, session: Session) -> MessageInfo:
        """The envelope and client of the session's current transaction."""
        envelope = session.envelope
        user = session.user
        return cls(
            sender=envelope.mail_from.address if envelope.mail_from else "",
            recipients=tuple(r.address for r in envelope.rcpt_to),
            session_id=session.id,
            client_address=session.remote_address,
            client_name=session.client_hostname or (session.host_name_appears_as or ""),
            user=None if user is None else str(user),
            secure=session.secure,
            lmtp=session.transmission_type.upper().startswith("LMTP"),
        )


class Delivery:
    """One message on its way into a sink."""

    async def write(self, chunk: bytes) -> None:
        """Add the next chunk of the message (wire format, CRLF line endings)."""
        raise NotImplementedError

    async def commit(self) -> str:
        """Store the message durably; returns its ID or where it went (for the log line)."""
        raise NotImplementedError

    def abort(self) -> None:
        """Drop the message (refused, or the client went away); never raises."""


class Sink:
    """Base class of the places a message can be stored: ``open(info)`` starts a `Delivery`."""

    kind = ""
    """The scheme of the sink's spec (``maildir``, ``inbox``, ...)."""
    uses_stdout = False
    """The sink writes messages to standard output (the command logs to stderr then)."""

    def __init__(self, path: str = "") -> None:
        self.path = path

    def describe(self) -> str:
        """A short text for logs: the spec of the sink."""
        return f"{self.kind}:{self.path}" if self.path else self.kind

    async def start(self) -> None:
        """Acquire what needs the event loop (connections, worker tasks); raise `SinkError`."""

    def open(self, info: MessageInfo) -> Delivery:
        """Start storing one message."""
        raise NotImplementedError

    def has_room(self, size: int) -> bool:
        """Whether a message of ``size`` bytes fits now. A sink with bounds (the queue)
        answers it, so that a message refused for lack of room (``452``) is stored in no
        other sink either: its commit would raise `SinkFull` all the same."""
        return True

    async def close(self) -> None:
        """Release what `start` acquired; messages already committed stay stored."""

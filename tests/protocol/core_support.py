"""A driver for the sans-I/O core: feed bytes, decide events, read replies. No sockets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from smtpgate import ProtocolConfig, ServerProtocol, SMTPError
from smtpgate.protocol.events import CloseConnection, DataChunk, DataEnd, DataStart, Event
from smtpgate.session import Session


def parse_replies(data: bytes) -> list[tuple[int, list[str]]]:
    """Split server output into replies: (code, [text of each line])."""
    replies: list[tuple[int, list[str]]] = []
    lines: list[str] = []
    assert data == b"" or data.endswith(b"\r\n"), f"output does not end in CRLF: {data!r}"
    for raw in data.split(b"\r\n")[:-1]:
        line = raw.decode("utf-8")
        assert len(line) >= 3 and line[:3].isdigit(), f"malformed reply line {line!r}"
        assert len(line) == 3 or line[3] in " -", f"malformed reply line {line!r}"
        lines.append(line[4:])
        if len(line) == 3 or line[3] == " ":
            replies.append((int(line[:3]), lines))
            lines = []
    assert not lines, f"unterminated multi-line reply {lines!r}"
    return replies


Decider = Callable[[Event], "SMTPError | str | None"]


class CoreClient:
    """Drives one ServerProtocol like the asyncio shell does, accepting every event unless
    ``decide`` returns an SMTPError (or a text for the 250)."""

    def __init__(self, decide: Decider | None = None, *, start: bool = True, **config: Any) -> None:
        config.setdefault("name", "mx.test")
        self.config = ProtocolConfig(**config)
        self.session = Session(id="core-test")
        self.core = ServerProtocol(self.config, self.session)
        self.decide = decide
        self.events: list[Event] = []
        self.messages: list[tuple[Any, bytes, DataEnd]] = []  # (envelope at DataEnd, body, event)
        self._body = bytearray()
        self.closed_reason: str | None = None
        self.greeting = b""
        if start:
            self.core.start()
            self.greeting = self.core.data_to_send()

    def pump(self) -> bytes:
        """Run events until the core needs more input; return what it wrote."""
        core = self.core
        while True:
            event = core.next_event()
            if event is None:
                break
            if isinstance(event, CloseConnection):
                self.closed_reason = event.reason
                break
            self.events.append(event)
            if isinstance(event, DataChunk):
                assert event.data, "DataChunk must never be empty"
                self._body += event.data
                continue
            if isinstance(event, DataStart):
                self._body = bytearray()
            if not event.needs_decision:
                continue
            verdict = self.decide(event) if self.decide is not None else None
            if isinstance(event, DataEnd):
                self.messages.append((self.session.envelope, bytes(self._body), event))
            if isinstance(verdict, SMTPError):
                core.reject(verdict)
            else:
                core.accept(verdict)
        return core.data_to_send()

    def send(self, data: bytes | str) -> bytes:
        if isinstance(data, str):
            data = data.encode()
        self.core.receive_data(data)
        return self.pump()

    def replies(self, data: bytes | str) -> list[tuple[int, list[str]]]:
        return parse_replies(self.send(data))

    def reply(self, line: str) -> tuple[int, str]:
        """Send one command line; return the single reply's code and joined text."""
        got = self.replies(line + "\r\n")
        assert len(got) == 1, f"expected one reply to {line!r}, got {got!r}"
        code, lines = got[0]
        return code, "\n".join(lines)

    def codes(self, data: bytes | str) -> list[int]:
        return [code for code, _ in self.replies(data)]

    def eof(self) -> bytes:
        self.core.receive_eof()
        return self.pump()

    @property
    def closed(self) -> bool:
        return self.core.closed

    def transaction(self, *rcpts: str, sender: str = "a@example.com") -> None:
        """EHLO (once), MAIL, RCPT...; asserts every reply is a 250."""
        if self.session.host_name_appears_as is None:
            assert self.codes("EHLO client.test\r\n") == [250]
        assert self.reply(f"MAIL FROM:<{sender}>")[0] == 250
        for rcpt in rcpts or ("b@example.com",):
            assert self.reply(f"RCPT TO:<{rcpt}>")[0] == 250

"""Helpers for the extension and LMTP tests: a recorder of messages, raw-client steps."""

from __future__ import annotations

import time
from typing import Any

from smtpgate import MessageTooLarge

GREETING_LINE = "mx.test Nice to meet you, [127.0.0.1]"


class Mailbox:
    """on_data that keeps each message's envelope (the object itself), body and session
    facts; ``answer`` (a value or a callable(envelope)) is what on_data returns."""

    def __init__(self, answer: Any = None) -> None:
        self.messages: list[dict[str, Any]] = []
        self.answer = answer

    async def on_data(self, stream: Any, session: Any) -> Any:
        chunks: list[bytes] = []
        refused: MessageTooLarge | None = None
        try:
            async for chunk in stream:
                chunks.append(chunk)
        except MessageTooLarge as error:  # past `size`: the first `size` bytes were read
            refused = error
        envelope = session.envelope
        self.messages.append(
            {
                "envelope": envelope,
                "body": b"".join(chunks),
                "size_exceeded": stream.size_exceeded,
                "byte_length": stream.byte_length,
                "transmission_type": session.transmission_type,
                "refused": refused,
            }
        )
        if refused is not None:
            raise refused
        answer = self.answer
        return answer(envelope) if callable(answer) else answer

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} messages, got {len(self.messages)}")
            time.sleep(0.01)
        return self.messages


def transaction(client: Any, mail: str = "MAIL FROM:<a@example.com>", *rcpts: str) -> None:
    assert client.command(mail) == (250, "2.1.0 Accepted")
    for rcpt in rcpts or ("RCPT TO:<b@example.com>",):
        assert client.command(rcpt) == (250, "2.1.5 Accepted")


def send_data(client: Any, body: bytes = b"Subject: x\r\n\r\nbody\r\n") -> tuple[int, str]:
    assert client.command("DATA") == (354, "End data with <CR><LF>.<CR><LF>")
    client.send(body + b".\r\n")
    return client.reply()

"""A small SMTP and LMTP client for the relay and LMTP deliverers.

It does what a queue needs and no more: connect over TCP (optionally TLS from the
start) or a unix socket, EHLO/LHLO, STARTTLS, AUTH PLAIN/LOGIN, the envelope pipelined
when the server offers PIPELINING, the body streamed with dot-stuffing, and one reply per
recipient: for SMTP the RCPT reply and then the one reply to the data, for LMTP one reply
per accepted recipient after the data (RFC 2033).
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from ..queue.base import Delivered, DeliveryResult, Failed, Outcome, QueuedMessage, Retry

__all__ = ["Reply", "MailClient", "MailClientError", "outcome_of", "hand_over"]

_MAX_LINE = 8192
_MAX_LINES = 200


@dataclass(frozen=True)
class Reply:
    """One server reply (a multi-line reply's lines joined by spaces)."""

    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()


class MailClientError(Exception):
    """The conversation failed (connection, timeout, protocol, a refused command)."""

    def __init__(self, message: str, reply: Reply | None = None) -> None:
        super().__init__(message)
        self.reply = reply

    @property
    def permanent(self) -> bool:
        """A 5xx reply refused the whole transaction."""
        return self.reply is not None and 500 <= self.reply.code < 600


def outcome_of(reply: Reply) -> Outcome:
    """2xx: delivered; 5xx: failed; anything else: retry."""
    if 200 <= reply.code < 300:
        return Delivered(str(reply))
    if 500 <= reply.code < 600:
        return Failed(str(reply))
    return Retry(str(reply))


class _DotStuffer:
    """Dot-stuffing across chunk boundaries (a line starting with ``.`` gets another)."""

    def __init__(self) -> None:
        self._line_start = True
        self.ends_with_newline = True

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return chunk
        if self._line_start and chunk.startswith(b"."):
            chunk = b"." + chunk
        chunk = chunk.replace(b"\n.", b"\n..")
        self._line_start = self.ends_with_newline = chunk.endswith(b"\n")
        return chunk


class MailClient:
    """One SMTP or LMTP connection. Use `connect`, then `hello`, maybe `starttls` and
    `auth`, then `send` (as often as needed) and `quit`."""

    stream_start_tls = True
    """Use ``StreamWriter.start_tls`` where Python has it (3.11+); the other way (a new
    stream pair on ``loop.start_tls``) is what Python 3.10 gets."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, lmtp: bool, timeout: float):
        self.reader = reader
        self.writer = writer
        self.lmtp = lmtp
        self.timeout = timeout
        self.extensions: dict[str, str] = {}
        self.secure = writer.get_extra_info("ssl_object") is not None
        self._plain_writer: asyncio.StreamWriter | None = None

    @classmethod
    async def connect(
        cls,
        host: str = "",
        port: int = 0,
        *,
        path: str | None = None,
        tls: ssl.SSLContext | None = None,
        lmtp: bool = False,
        timeout: float = 60.0,
    ) -> MailClient:
        """Connect (to ``path``, a unix socket, when given) and read the greeting."""
        try:
            if path is not None:
                opening = asyncio.open_unix_connection(path, limit=_MAX_LINE * 2)
            else:
                server_name = host if tls is not None else None
                opening = asyncio.open_connection(host, port, ssl=tls, server_hostname=server_name, limit=_MAX_LINE * 2)
            reader, writer = await asyncio.wait_for(opening, timeout)
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as error:
            where = path or f"{host}:{port}"
            raise MailClientError(f"cannot connect to {where}: {_reason(error)}") from None
        client = cls(reader, writer, lmtp=lmtp, timeout=timeout)
        try:
            greeting = await client.read_reply()
        except MailClientError:
            client.close()
            raise
        if greeting.code != 220:
            client.close()
            raise MailClientError(f"greeting: {greeting}", greeting)
        return client

    async def read_reply(self) -> Reply:
        """Read one reply, however many lines."""
        code, lines = await self._read_lines()
        return Reply(code, " ".join(part for part in lines if part))

    async def _read_lines(self) -> tuple[int, list[str]]:
        lines: list[str] = []
        for _ in range(_MAX_LINES):
            line = await self._read_line()
            lines.append(line[4:])
            if len(line) == 3 or line[3] == " ":
                return int(line[:3]), lines
        raise MailClientError("reply too long")

    async def _send(self, data: bytes) -> None:
        try:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), self.timeout)
        except asyncio.TimeoutError:
            raise MailClientError(f"could not send within {self.timeout:g} seconds") from None
        except (OSError, ssl.SSLError) as error:
            raise MailClientError(f"connection lost: {_reason(error)}") from None

    async def command(self, line: str) -> Reply:
        """Send one command line and read its reply."""
        await self._send(line.encode("utf-8") + b"\r\n")
        return await self.read_reply()

    async def hello(self, name: str) -> Reply:
        """EHLO (LHLO for LMTP); remembers the extensions the server offers."""
        verb = "LHLO" if self.lmtp else "EHLO"
        await self._send(f"{verb} {name}\r\n".encode())
        code, lines = await self._read_lines()
        reply = Reply(code, " ".join(lines))
        if code != 250:
            raise MailClientError(f"{verb}: {reply}", reply)
        self.extensions = {}
        for extension in lines[1:]:
            keyword, _, params = extension.partition(" ")
            self.extensions[keyword.upper()] = params
        return reply

    async def _read_line(self) -> str:
        try:
            raw = await asyncio.wait_for(self.reader.readline(), self.timeout)
        except asyncio.TimeoutError:
            raise MailClientError(f"no reply within {self.timeout:g} seconds") from None
        except (OSError, ssl.SSLError, ValueError) as error:
            raise MailClientError(f"connection lost: {_reason(error)}") from None
        if not raw:
            raise MailClientError("the server closed the connection")
        line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
        if len(line) < 3 or not line[:3].isdigit() or (len(line) > 3 and line[3] not in " -"):
            raise MailClientError(f"malformed reply line {line[:100]!r}")
        return line

    async def starttls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        """STARTTLS and the TLS handshake (the certificate checked as ``context`` says)."""
        reply = await self.command("STARTTLS")
        if reply.code != 220:
            raise MailClientError(f"STARTTLS: {reply}", reply)
        try:
            await asyncio.wait_for(self._upgrade(context, server_hostname), self.timeout)
        except (OSError, ssl.SSLError, asyncio.TimeoutError, ConnectionError) as error:
            self.close()
            raise MailClientError(f"TLS handshake failed: {_reason(error)}") from None
        self.secure = True
        self.extensions = {}

    async def _upgrade(self, context: ssl.SSLContext, server_hostname: str) -> None:
        if self.stream_start_tls and hasattr(self.writer, "start_tls"):  # Python 3.11+
            await self.writer.start_tls(context, server_hostname=server_hostname)
            return
        # Python 3.10: a new stream pair on the TLS transport. The plain writer is kept:
        # dropping it would close the socket underneath.
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_MAX_LINE * 2)
        protocol = asyncio.StreamReaderProtocol(reader)
        transport = await loop.start_tls(self.writer.transport, protocol, context, server_hostname=server_hostname)
        if transport is None:  # pragma: no cover - the connection closed during the handshake
            raise ConnectionError("the server closed the connection during the TLS handshake")
        protocol.connection_made(transport)
        self._plain_writer = self.writer
        self.reader = reader
        self.writer = asyncio.StreamWriter(transport, protocol, reader, loop)

    async def auth(self, username: str, password: str) -> None:
        """AUTH PLAIN, or LOGIN when the server offers only that."""
        mechanisms = self.extensions.get("AUTH", "").upper().split()
        if "PLAIN" in mechanisms or not mechanisms:
            token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
            reply = await self.command(f"AUTH PLAIN {token}")
        elif "LOGIN" in mechanisms:
            reply = await self.command("AUTH LOGIN")
            for secret in (username, password):
                if reply.code != 334:
                    break
                reply = await self.command(base64.b64encode(secret.encode()).decode())
        else:
            raise MailClientError(f"no AUTH mechanism in common (the server offers {' '.join(mechanisms)})")
        if reply.code != 235:
            raise MailClientError(f"AUTH: {reply}", reply)

    async def send(
        self, sender: str, recipients: Sequence[str], body: AsyncIterator[bytes], *, size: int
    ) -> dict[str, Outcome]:
        """One transaction; returns an outcome per recipient. The envelope is pipelined
        when the server offers PIPELINING. Raises `MailClientError` when the whole
        transaction fails (MAIL refused, the connection lost)."""
        utf8 = not (sender.isascii() and all(r.isascii() for r in recipients))
        if utf8 and "SMTPUTF8" not in self.extensions:
            reason = "a non-ASCII address and the server does not offer SMTPUTF8"
            return dict.fromkeys(recipients, Failed(reason))
        params = []
        if "SIZE" in self.extensions:
            params.append(f"SIZE={size}")
        if "8BITMIME" in self.extensions:
            params.append("BODY=8BITMIME")
        if utf8:
            params.append("SMTPUTF8")
        mail = " ".join([f"MAIL FROM:<{sender}>", *params])
        rcpts = [f"RCPT TO:<{address}>" for address in recipients]
        if "PIPELINING" in self.extensions:
            await self._send("".join(line + "\r\n" for line in [mail, *rcpts]).encode())
            mail_reply = await self.read_reply()
            rcpt_replies = [await self.read_reply() for _ in rcpts]
        else:
            mail_reply = await self.command(mail)
            rcpt_replies = [await self.command(line) for line in rcpts] if mail_reply.code == 250 else []
        if mail_reply.code != 250:
            await self._reset()
            raise MailClientError(f"MAIL FROM: {mail_reply}", mail_reply)
        outcomes: dict[str, Outcome] = {}
        accepted: list[str] = []
        for address, reply in zip(recipients, rcpt_replies, strict=True):
            if reply.code in (250, 251):
                accepted.append(address)
            else:
                outcomes[address] = outcome_of(reply)
        if not accepted:
            await self._reset()
            return outcomes
        reply = await self.command("DATA")
        if reply.code != 354:
            await self._reset()
            outcomes.update(dict.fromkeys(accepted, outcome_of(reply)))
            return outcomes
        stuffer = _DotStuffer()
        async for chunk in body:
            await self._send(stuffer.feed(chunk))
        await self._send(b".\r\n" if stuffer.ends_with_newline else b"\r\n.\r\n")
        if self.lmtp:
            for index, address in enumerate(accepted):
                try:
                    outcomes[address] = outcome_of(await self.read_reply())
                except MailClientError as error:  # the replies so far stand; the rest are retried
                    outcomes.update(dict.fromkeys(accepted[index:], Retry(str(error))))
                    break
        else:
            outcomes.update(dict.fromkeys(accepted, outcome_of(await self.read_reply())))
        return outcomes

    async def _reset(self) -> None:
        try:
            await self.command("RSET")
        except MailClientError:
            pass

    async def quit(self) -> None:
        """QUIT (its reply is not waited for long) and close."""
        try:
            await self._send(b"QUIT\r\n")
            await asyncio.wait_for(self.reader.read(1024), min(self.timeout, 2.0))
        except (MailClientError, asyncio.TimeoutError, OSError, ssl.SSLError):
            pass
        finally:
            self.close()

    def close(self) -> None:
        """Close the connection at once."""
        try:
            self.writer.close()
        except (OSError, RuntimeError):
            pass


async def hand_over(
    client: MailClient, prepare: Callable[[MailClient], Awaitable[None]], message: QueuedMessage
) -> DeliveryResult:
    """The shared end of an SMTP or LMTP delivery on a connected ``client``: ``prepare``
    (greeting, TLS, AUTH; a failure there is temporary: the mail is fine), then the
    envelope and body, one outcome per recipient; the connection is always closed."""
    try:
        await prepare(client)
    except MailClientError as error:
        client.close()
        return Retry(str(error))
    try:
        outcomes = await client.send(message.info.sender, message.pending, message.iter_body(), size=message.size)
    except MailClientError as error:
        client.close()
        return outcome_of(error.reply) if error.permanent and error.reply else Retry(str(error))
    await client.quit()
    return outcomes


def _reason(error: BaseException) -> str:
    if isinstance(error, asyncio.TimeoutError):
        return "timed out"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {error.verify_message}"
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return str(text)

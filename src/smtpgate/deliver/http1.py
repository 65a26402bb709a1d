"""A small HTTP/1.1 client for the webhook deliverer: POST, kept-alive connections.

It does what a queue's deliveries need and no more: one request at a time per
connection, at most ``limit`` connections to one origin, kept alive and reused, TLS with
the given context, a response's status and headers and the first bytes of its body.
A general client (aiohttp) spends about four times the CPU per request; at a thousand
deliveries a second that is most of a core.

A kept-alive connection the server closed meanwhile fails at once; the request is then
sent again on a new connection (no response byte came; should the server have acted on it
anyway, the receiver sees the same ``webhook-id`` twice, which at-least-once allows). A
connection is reused only after a 2xx whose body was read to its end, with nothing more
waiting on it: after a refusal the server may not have read the whole request.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

__all__ = ["HTTPClient", "HTTPResponse", "HTTPError", "CertificateError"]

_MAX_HEAD = 64 * 1024  # bytes of a response's status line and headers
_MAX_DRAIN = 1024 * 1024  # bytes of a response body read (and dropped) to keep the connection
_MAX_INTERIM = 10  # 1xx responses skipped before the final one
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")

Body = bytes | Callable[[], AsyncIterator[bytes]]
"""The request body: bytes, or a function giving a fresh iterator of its chunks (called
again when the request must be sent again)."""


class HTTPError(Exception):
    """The request failed: no connection, a connection lost, a malformed response."""


class CertificateError(HTTPError):
    """The server's TLS certificate was not accepted."""


@dataclass(frozen=True)
class HTTPResponse:
    """A response: status, reason, headers (names in lower case) and the body's first
    ``keep`` bytes (the rest is read and dropped)."""

    status: int
    reason: str
    headers: dict[str, str]
    body: bytes


class _Stale(Exception):
    """A reused connection failed before any response byte arrived."""


class HTTPClient:
    """POSTs to one ``http://`` or ``https://`` URL. ``tls`` is the context for
    ``https`` (default: system CAs, verified); ``limit`` bounds the connections;
    ``timeout`` bounds each request, connecting included. Credentials in the URL become
    HTTP Basic authentication. Call `close` when done."""

    def __init__(self, url: str, *, tls: ssl.SSLContext | None = None, limit: int = 10, timeout: float = 30.0):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"invalid URL {url!r}: expected http(s)://HOST/PATH")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = (tls or ssl.create_default_context()) if parts.scheme == "https" else None
        self.timeout = timeout
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = 443 if parts.scheme == "https" else 80
        authority = host if self.port == default_port else f"{host}:{self.port}"
        path = quote(parts.path or "/", safe="/%!$&'()*+,;=:@~-._")
        target = path + (f"?{quote(parts.query, safe='/%!$&()*+,;=:@~-._?')}" if parts.query else "")
        lines = [f"POST {target} HTTP/1.1", f"Host: {authority}", "User-Agent: smtpgate"]
        if parts.username:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            lines.append("Authorization: Basic " + base64.b64encode(credentials.encode()).decode("ascii"))
        self._head = "\r\n".join(lines) + "\r\n"
        self._slots = asyncio.Semaphore(limit)
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._closed = False

    async def close(self) -> None:
        """Close the idle connections (those in use close when their request ends)."""
        self._closed = True
        idle, self._idle = self._idle, []
        for _, writer in idle:
            writer.close()

    async def post(self, headers: dict[str, str], body: Body, length: int, *, keep: int = 300) -> HTTPResponse:
        """Send one POST of ``length`` bytes; raises `HTTPError` or ``TimeoutError``."""
        head = self._head + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        head += f"Content-Length: {length}\r\n\r\n"
        async with self._slots:
            if sys.version_info >= (3, 11):
                async with asyncio.timeout(self.timeout):
                    return await self._post(head.encode("latin-1"), body, length, keep)
            return await asyncio.wait_for(self._post(head.encode("latin-1"), body, length, keep), self.timeout)

    async def _post(self, head: bytes, body: Body, length: int, keep: int) -> HTTPResponse:
        while self._idle:
            connection = self._idle.pop()
            if connection[0].at_eof() or connection[1].is_closing() or _buffered(connection[0]):
                connection[1].close()
                continue
            try:
                return await self._exchange(connection, head, body, length, keep, reused=True)
            except _Stale:
                continue
        return await self._exchange(await self._connect(), head, body, length, keep, reused=False)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.open_connection(
                self.host,
                self.port,
                ssl=self.tls,
                server_hostname=self.host if self.tls is not None else None,
                limit=_MAX_HEAD,
            )
        except ssl.SSLCertVerificationError as error:
            raise CertificateError(error.verify_message or str(error)) from None
        except (OSError, ssl.SSLError) as error:
            raise HTTPError(f"cannot connect to {self.host}:{self.port}: {error.strerror or error}") from None

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, head: bytes, body: Body, length: int) -> None:
        if isinstance(body, bytes):
            writer.write(head + body)
        else:
            writer.write(head)
            sent = 0
            chunks = body()
            try:
                async for chunk in chunks:
                    sent += len(chunk)
                    if sent > length:
                        break
                    writer.write(chunk)
                    await writer.drain()
            finally:
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:
                    await aclose()
            if sent != length:
                raise HTTPError(f"the body changed while sent: {sent} bytes where {length} were announced")
        await writer.drain()

    async def _exchange(
        self,
        connection: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        head: bytes,
        body: Body,
        length: int,
        keep: int,
        *,
        reused: bool,
    ) -> HTTPResponse:
        reader, writer = connection
        reusable = False
        answered = False
        try:
            try:
                await self._send(writer, head, body, length)
            except OSError:
                # A server that refuses early (a 413, a 401) may close before reading it
                # all: its reply, if it came, still counts.
                if reused or not _buffered(reader):
                    raise
            for _ in range(_MAX_INTERIM):
                status, reason, headers = await self._read_head(reader, reused and not answered)
                answered = True
                if status >= 200:
                    break
            else:
                raise HTTPError("too many interim responses")
            data, complete = await self._read_body(reader, status, headers, keep)
            reusable = complete and 200 <= status < 300 and "close" not in _tokens(headers.get("connection"))
            reusable = reusable and not self._closed and not _buffered(reader)
            return HTTPResponse(status, reason, headers, data)
        except (OSError, asyncio.IncompleteReadError) as error:
            if reused and not answered and not _buffered(reader) and not isinstance(error, ssl.SSLError):
                raise _Stale() from None
            raise HTTPError(f"connection lost: {_describe(error)}") from None
        except (asyncio.LimitOverrunError, ValueError) as error:
            raise HTTPError(f"malformed response: {error}") from None
        finally:
            if reusable:
                self._idle.append(connection)
            else:
                writer.close()

    @staticmethod
    async def _read_head(reader: asyncio.StreamReader, stale_if_empty: bool) -> tuple[int, str, dict[str, str]]:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            if stale_if_empty and not error.partial:
                raise
            raise HTTPError("the server closed the connection without a complete response") from None
        lines = raw.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise ValueError(f"bad status line {lines[0][:100]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, colon, value = line.partition(":")
            if not colon:
                raise ValueError(f"bad header line {line[:100]!r}")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        if version == "HTTP/1.0" and "keep-alive" not in _tokens(headers.get("connection")):
            headers["connection"] = "close"
        return int(code), reason, headers

    @staticmethod
    async def _read_body(
        reader: asyncio.StreamReader, status: int, headers: dict[str, str], keep: int
    ) -> tuple[bytes, bool]:
        """The body's first ``keep`` bytes, and whether it was read to its end (else the
        connection is not reused)."""
        if status in (204, 304):
            return b"", True
        kept = bytearray()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            total = 0
            while True:
                size_line = (await reader.readuntil(b"\r\n")).split(b";")[0].strip()
                if not _CHUNK_SIZE.fullmatch(size_line):
                    raise ValueError(f"bad chunk size {size_line[:20]!r}")
                size = int(size_line, 16)
                if size == 0:
                    for _ in range(_MAX_INTERIM * 10):  # trailer lines, then an empty one
                        if await reader.readuntil(b"\r\n") == b"\r\n":
                            return bytes(kept), True
                    return bytes(kept), False
                total += size
                if total > _MAX_DRAIN:
                    return bytes(kept), False
                chunk = await reader.readexactly(size + 2)
                if chunk[size:] != b"\r\n":
                    raise ValueError("a chunk does not end with CRLF")
                kept += chunk[:size][: max(0, keep - len(kept))]
        if "content-length" in headers:
            values = set(_tokens(headers["content-length"]))
            if len(values) != 1 or not next(iter(values)).isdigit():
                raise ValueError(f"bad Content-Length {headers['content-length'][:40]!r}")
            length = int(values.pop())
            if length > _MAX_DRAIN:
                kept += await reader.readexactly(min(keep, length))
                return bytes(kept), False
            data = await reader.readexactly(length)
            return data[:keep], True
        # Neither: the body runs to the end of the connection.
        data = await reader.read(keep)
        return data, False


def _tokens(value: str | None) -> list[str]:
    """A comma-separated header value's items, in lower case."""
    return [item.strip().lower() for item in value.split(",")] if value else []


def _buffered(reader: asyncio.StreamReader) -> bool:
    """Bytes the server sent that nobody asked for yet (a stray reply)."""
    return bool(getattr(reader, "_buffer", b""))


def _describe(error: BaseException) -> str:
    if isinstance(error, asyncio.IncompleteReadError):
        return "the server closed the connection"
    return str(error) or type(error).__name__

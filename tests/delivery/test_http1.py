"""The webhook's HTTP/1.1 client against a hand-written server on loopback: responses
with a length, chunked and to the end of the connection, kept-alive connections the
server closed, interim replies, bad responses and the timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from smtpgate.deliver.http1 import HTTPClient, HTTPError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request's head and body (by its Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head, await reader.readexactly(length)


async def serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/hook?x=1"


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 30))


def talk(
    handler: Handler, use: Callable[[HTTPClient], Awaitable[None]], make: Callable[[str], HTTPClient] = HTTPClient
) -> None:
    """Serve ``handler`` on loopback, ``use`` a client made by ``make(url)``, stop both."""

    async def main() -> None:
        server, url = await serve(handler)
        client = make(url)
        try:
            await use(client)
        finally:
            await client.close()
            server.close()

    run(main())


def test_keep_alive_reuses_one_connection_and_sends_the_request_whole() -> None:
    connections = 0
    requests: list[tuple[bytes, bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while not reader.at_eof():
            try:
                requests.append(await read_request(reader))
            except asyncio.IncompleteReadError:
                break
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
        writer.close()

    async def use(client: HTTPClient) -> None:
        for number in range(5):
            response = await client.post({"webhook-id": str(number)}, b"body", 4)
            assert (response.status, response.body) == (200, b"ok")

    talk(handler, use, lambda url: HTTPClient(url.replace("127.0.0.1", "user:p%40ss@127.0.0.1"), limit=1))
    assert connections == 1
    head, body = requests[0]
    assert head.startswith(b"POST /hook?x=1 HTTP/1.1\r\n")
    assert b"\r\nwebhook-id: 0\r\n" in head and b"\r\nContent-Length: 4\r\n" in head
    assert b"\r\nAuthorization: Basic dXNlcjpwQHNz\r\n" in head  # user:p@ss
    assert body == b"body"


def test_chunked_interim_and_close_delimited_responses() -> None:
    replies = [
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\nRetry-After: 7\r\n\r\n"
        b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n",
        b"HTTP/1.0 500 Oops\r\n\r\nthe rest of the connection",
    ]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(replies.pop(0))
        await writer.drain()
        writer.close()

    async def use(client: HTTPClient) -> None:
        first = await client.post({}, b"x", 1, keep=8)
        assert (first.status, first.reason, first.body) == (503, "Busy", b"hello wo")
        assert first.headers["retry-after"] == "7"
        second = await client.post({}, b"x", 1)
        assert (second.status, second.body) == (500, b"the rest of the connection")

    talk(handler, use, lambda url: HTTPClient(url))


def test_a_kept_alive_connection_closed_by_the_server_is_replaced() -> None:
    bodies: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, body = await read_request(reader)
        bodies.append(body)
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")  # keep-alive offered, then closed
        await writer.drain()
        writer.close()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"stre"
        yield b"amed"

    async def use(client: HTTPClient) -> None:
        assert (await client.post({}, b"one", 3)).status == 204
        await asyncio.sleep(0.2)  # the server's close reaches the idle connection
        assert (await client.post({}, chunks, 8)).status == 204

    talk(handler, use, lambda url: HTTPClient(url, limit=1))
    assert bodies == [b"one", b"streamed"]


@pytest.mark.parametrize(
    "reply",
    [b"garbage\r\n\r\n", b"HTTP/1.1 2x0 Bad\r\n\r\n", b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", b"HTTP/1.1 200 OK\r\n"],
)
def test_malformed_or_cut_responses_are_errors(reply: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()
        writer.close()

    async def use(client: HTTPClient) -> None:
        with pytest.raises(HTTPError):
            await client.post({}, b"x", 1)

    talk(handler, use, lambda url: HTTPClient(url))


def test_the_timeout_bounds_a_silent_server_and_the_connection_is_dropped() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)
        writer.close()

    async def use(client: HTTPClient) -> None:
        with pytest.raises(asyncio.TimeoutError):
            await client.post({}, b"x", 1)
        assert client._idle == []

    talk(handler, use, lambda url: HTTPClient(url, timeout=0.3))


def test_refused_connection_and_bad_urls() -> None:
    async def main() -> None:
        server, url = await serve(lambda r, w: asyncio.sleep(0))
        server.close()
        await server.wait_closed()
        client = HTTPClient(url)
        with pytest.raises(HTTPError, match="cannot connect"):
            await client.post({}, b"x", 1)

    run(main())
    for bad in ("ftp://host/x", "http:///nohost"):
        with pytest.raises(ValueError):
            HTTPClient(bad)


def test_a_connection_is_not_reused_after_a_refusal_or_a_close_in_a_list() -> None:
    """A server that refuses early and leaves the body unread (or says close among other
    tokens) must not have its next bytes taken for the next request's reply."""
    connections = 0
    replies = [b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n", b"HTTP/1.1 200 OK\r\n"]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        number = connections
        await reader.readuntil(b"\r\n\r\n")  # the head only: the body stays unread
        if number == 1:
            writer.write(replies[0])
            await writer.drain()
            await reader.read(100)  # the unread body, taken as a new request...
            writer.write(b"HTTP/1.1 400 Bad\r\nContent-Length: 0\r\n\r\n")  # ...and refused
        elif number == 2:
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)
        writer.close()

    async def use(client: HTTPClient) -> None:
        assert (await client.post({}, b"x" * 50, 50)).status == 413
        assert (await client.post({}, b"y", 1)).status == 200
        assert (await client.post({}, b"z", 1)).status == 503

    talk(handler, use, lambda url: HTTPClient(url, limit=1))
    assert connections == 3


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-2\r\nxx\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nxxyy0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello",
    ],
)
def test_bad_framing_is_an_error(reply: bytes) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()
        await asyncio.sleep(1)
        writer.close()

    async def use(client: HTTPClient) -> None:
        with pytest.raises(HTTPError):
            await client.post({}, b"x", 1)

    talk(handler, use, lambda url: HTTPClient(url))


def test_a_streamed_body_that_changed_length_is_not_sent_short() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(1)
        writer.close()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"abc"

    async def use(client: HTTPClient) -> None:
        with pytest.raises(HTTPError, match="changed"):
            await client.post({}, chunks, 10)

    talk(handler, use, lambda url: HTTPClient(url))

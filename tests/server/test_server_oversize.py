"""Past `size`, a truncated message cannot pass for a whole one (MessageTooLarge)."""

from __future__ import annotations

import asyncio

import pytest
from server_support import envelope

from smtpgate import DataStream, MessageTooLarge
from support import Recorder

TOO_BIG = (552, "5.3.4 Error: message exceeds fixed maximum message size 1000")


def _fed(refuse: bool) -> DataStream:
    stream = DataStream(10, refuse_oversized=refuse)
    stream.feed(b"abcdef")
    stream.feed(b"ghijkl")
    stream.finish()
    return stream


def test_reads_end_with_message_too_large_after_the_first_size_bytes():
    async def main() -> None:
        stream = _fed(refuse=True)
        chunks = []
        with pytest.raises(MessageTooLarge, match="maximum message size 10"):
            async for chunk in stream:
                chunks.append(chunk)
        assert chunks == [b"abcdef", b"ghij"]
        assert (stream.size_exceeded, stream.byte_length) == (True, 12)
        assert isinstance(stream.error, MessageTooLarge)
        with pytest.raises(MessageTooLarge):
            await _fed(refuse=True).read()
        with pytest.raises(MessageTooLarge):
            _fed(refuse=True).getvalue()

    asyncio.run(main())


def test_without_refusal_reads_end_with_the_truncated_body():
    async def main() -> None:
        stream = _fed(refuse=False)
        assert await stream.read() == b"abcdefghij"
        assert (stream.size_exceeded, stream.error) == (True, None)

    asyncio.run(main())


def test_a_message_of_exactly_size_bytes_reads_whole():
    async def main() -> None:
        stream = DataStream(10, refuse_oversized=True)
        stream.feed(b"0123456789")
        stream.finish()
        assert await stream.read() == b"0123456789"
        assert stream.size_exceeded is False

    asyncio.run(main())


@pytest.mark.parametrize("kind", ["async", "plain"])
def test_a_handler_that_forgets_size_exceeded_stores_nothing(start_server, raw_client, kind):
    stored = Recorder()

    async def async_handler(stream, session):
        stored.add(await stream.read())  # no size_exceeded check

    def plain_handler(stream, session):
        stored.add(stream.getvalue())

    running = start_server(size=1000, on_data=async_handler if kind == "async" else plain_handler)
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    client.send(b"z" * 3000 + b"\r\n.\r\n")
    assert client.reply() == TOO_BIG
    assert client.command("MAIL FROM:<a@example.com>")[0] == 250  # the session goes on
    assert client.command("RCPT TO:<b@example.com>")[0] == 250
    assert client.command("DATA")[0] == 354
    client.send(b"fits\r\n.\r\n")
    assert client.reply()[0] == 250
    assert stored.wait_for(1) == [b"fits\r\n"]


def test_a_big_message_keeps_only_size_bytes_and_fails_the_read(start_server, raw_client):
    seen = Recorder()

    async def on_data(stream, session):
        got = b""
        try:
            async for chunk in stream:
                got += chunk
        except MessageTooLarge:
            seen.add((len(got), stream.byte_length))

    running = start_server(size=1000, on_data=on_data)
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    client.send((b"y" * 1022 + b"\r\n") * 600 + b".\r\n")  # 600 KiB, past the stream's buffer
    assert client.reply() == TOO_BIG
    assert seen.wait_for(1) == [(1000, 600 * 1024)]

"""Connections read into one buffer shared by the loop's connections: bytes must never
leak from one session to another, however the reads are cut."""

from __future__ import annotations

import asyncio
import socket
import ssl

import pytest

from smtpgate.connection import SMTPConnection
from smtpgate.readbuffer import READ_BUFFER_SIZE, read_buffer

SESSIONS = 24
MESSAGES_PER_SESSION = 2


def message_body(session: int, message: int) -> bytes:
    """A body only this session and message could have sent (with lines to dot-stuff and a
    line longer than a typical read, so that the buffer's whole length is used)."""
    tag = f"s{session:02d}m{message}"
    lines = [f"Subject: {tag}", "", *(f"{tag} line {n} " + "x" * (n * 7 % 61) for n in range(40))]
    lines += [f".{tag} leading dot", f"{tag} long " + tag * (READ_BUFFER_SIZE // len(tag) // 4 * (session % 3))]
    return "\r\n".join(lines).encode() + b"\r\n"


def transcript(session: int, starttls: bool) -> tuple[bytes, bytes, int]:
    """What the client pipelines before and after STARTTLS, and how many replies it expects."""
    before = b"EHLO client.test\r\n" + (b"STARTTLS\r\n" if starttls else b"")
    after = b"EHLO client.test\r\n" if starttls else b""
    for message in range(MESSAGES_PER_SESSION):
        lines = message_body(session, message).split(b"\r\n")
        stuffed = b"\r\n".join(b"." + line if line.startswith(b".") else line for line in lines)
        after += f"MAIL FROM:<s{session}@example.com>\r\nRCPT TO:<r{message}@example.com>\r\nDATA\r\n".encode()
        after += stuffed + b".\r\n"
    after += b"QUIT\r\n"
    replies = (2 if starttls else 1) + 4 * MESSAGES_PER_SESSION + 1
    return before, after, replies


async def send_in_pieces(writer: asyncio.StreamWriter, data: bytes, size: int) -> None:
    """Write ``data`` in pieces of ``size`` bytes, each its own segment (no Nagle)."""
    for start in range(0, len(data), size):
        writer.write(data[start : start + size])
        await writer.drain()
        await asyncio.sleep(0)


async def read_replies(reader: asyncio.StreamReader, count: int) -> list[int]:
    codes: list[int] = []
    while len(codes) < count:
        line = await reader.readline()
        if not line:
            break
        if line[3:4] != b"-":
            codes.append(int(line[:3]))
    return codes


async def session(port: int, index: int, tls: ssl.SSLContext | None) -> list[int]:
    before, after, count = transcript(index, tls is not None)
    # Piece sizes 1, 2, 3 ... cover every cut point between them; some sessions send whole.
    size = len(after) if index % 8 == 7 else index % 8 + 1 + (index // 8) * 97
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        codes = await read_replies(reader, 1)
        await send_in_pieces(writer, before, size)
        if tls is not None:
            codes += await read_replies(reader, 2)
            await writer.start_tls(tls, server_hostname="mx.test")
        await send_in_pieces(writer, after, size)
        codes += await read_replies(reader, count)
    finally:
        writer.close()
    return codes


async def many_sessions(port: int, tls: ssl.SSLContext | None) -> list[list[int]]:
    return await asyncio.wait_for(asyncio.gather(*(session(port, i, tls) for i in range(SESSIONS))), 120)


def test_a_connection_reads_into_the_shared_buffer(start_server, raw_client):
    running = start_server()
    client = raw_client(running.port)
    assert client.reply()[0] == 220
    (connection,) = running.server.connections.everyone()
    assert isinstance(connection, SMTPConnection)
    assert isinstance(connection, asyncio.BufferedProtocol)
    buffer = connection.get_buffer(-1)
    assert len(buffer) == READ_BUFFER_SIZE and not buffer.readonly
    assert buffer.obj is not read_buffer().obj  # another thread (the server's) has its own
    assert client.command("QUIT")[0] == 221


@pytest.mark.parametrize("starttls", [False, True], ids=["plain", "starttls"])
def test_concurrent_pipelined_sessions_cut_anywhere_deliver_exact_bytes(
    start_server, received, mx_pair, tls_client, starttls
):
    options = mx_pair if starttls else {}
    running = start_server(on_data=received.on_data, **options)
    results = asyncio.run(many_sessions(running.port, tls_client if starttls else None))
    expected_codes = [220, 250, *([220, 250] if starttls else []), *[250, 250, 354, 250] * MESSAGES_PER_SESSION, 221]
    assert results == [expected_codes] * SESSIONS
    received.wait_for(SESSIONS * MESSAGES_PER_SESSION, timeout=60)
    got = {(sender, tuple(rcpts)): body for sender, rcpts, body, _ in received.messages}
    assert len(got) == SESSIONS * MESSAGES_PER_SESSION
    for index in range(SESSIONS):
        for message in range(MESSAGES_PER_SESSION):
            assert got[(f"s{index}@example.com", (f"r{message}@example.com",))] == message_body(index, message)
    secure = {session.secure for _, _, _, session in received.messages}
    assert secure == {starttls}

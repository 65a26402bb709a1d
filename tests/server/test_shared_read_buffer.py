"""Connections read into one buffer shared by the loop's connections: bytes must never
leak from one session to another, however the reads are cut."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct

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


async def session(port: int, index: int, tls: ssl.SSLContext | None, proxy: bool, implicit: bool) -> list[int]:
    starttls = tls is not None and not implicit
    before, after, count = transcript(index, starttls)
    # Piece sizes 1, 2, 3 ... cover every cut point between them; some sessions send whole.
    size = len(after) if index % 8 == 7 else index % 8 + 1 + (index // 8) * 97
    if implicit:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls, server_hostname="mx.test")
    else:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        if proxy:  # read by the listener itself, before the connection gets the socket
            writer.write(f"PROXY TCP4 192.0.2.{index + 1} 198.51.100.1 {40000 + index} 25\r\n".encode())
        codes = await read_replies(reader, 1)
        await send_in_pieces(writer, before, size)
        if starttls:
            assert tls is not None
            codes += await read_replies(reader, 2)
            await writer.start_tls(tls, server_hostname="mx.test")
        await send_in_pieces(writer, after, size)
        codes += await read_replies(reader, count)
    finally:
        writer.close()
    return codes


async def many_sessions(
    port: int, tls: ssl.SSLContext | None = None, proxy: bool = False, implicit: bool = False
) -> list[list[int]]:
    sessions = (session(port, i, tls, proxy, implicit) for i in range(SESSIONS))
    return await asyncio.wait_for(asyncio.gather(*sessions), 120)


def test_a_connection_reads_into_the_shared_buffer(start_server, raw_client):
    running = start_server()
    client = raw_client(running.port)
    assert client.reply()[0] == 220
    (connection,) = running.server.connections.everyone()
    assert isinstance(connection, SMTPConnection)
    protocol = connection.transport.get_protocol()  # what the transport calls
    assert isinstance(protocol, asyncio.BufferedProtocol)
    buffer = protocol.get_buffer(-1)
    assert len(buffer) == READ_BUFFER_SIZE and not buffer.readonly
    assert buffer.obj is not read_buffer().obj  # another thread (the server's) has its own
    assert client.command("QUIT")[0] == 221


@pytest.mark.parametrize("mode", ["plain", "starttls", "implicit-tls", "proxy-starttls"])
def test_concurrent_pipelined_sessions_cut_anywhere_deliver_exact_bytes(
    start_server, received, mx_pair, tls_client, mode
):
    starttls, implicit, proxy = mode.endswith("starttls"), mode == "implicit-tls", mode.startswith("proxy")
    options = {**(mx_pair if starttls or implicit else {}), "use_proxy": proxy, "secure": implicit}
    running = start_server(on_data=received.on_data, **options)
    tls = tls_client if starttls or implicit else None
    results = asyncio.run(many_sessions(running.port, tls, proxy, implicit))
    expected_codes = [220, 250, *([220, 250] if starttls else []), *[250, 250, 354, 250] * MESSAGES_PER_SESSION, 221]
    assert results == [expected_codes] * SESSIONS
    received.wait_for(SESSIONS * MESSAGES_PER_SESSION, timeout=60)
    got = {(sender, tuple(rcpts)): body for sender, rcpts, body, _ in received.messages}
    assert len(got) == SESSIONS * MESSAGES_PER_SESSION
    for index in range(SESSIONS):
        for message in range(MESSAGES_PER_SESSION):
            assert got[(f"s{index}@example.com", (f"r{message}@example.com",))] == message_body(index, message)
    secure = {session.secure for _, _, _, session in received.messages}
    assert secure == {tls is not None}
    if proxy:
        for sender, _, _, session in received.messages:
            assert session.remote_address == f"192.0.2.{int(sender[1:].split('@')[0]) + 1}"


def test_a_connection_reset_mid_message_leaves_the_others_intact(smtpgate_server, raw_client):
    gone = raw_client(smtpgate_server.port)
    assert gone.reply()[0] == 220
    gone.send(b"EHLO gone.test\r\nMAIL FROM:<gone@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
    assert [code for code, _ in gone.replies(1)] == [250]
    gone.send(b"half a body that must go nowhere\r\n" * 500)
    # An RST: the transport may be holding the shared buffer when the connection is lost.
    gone.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    gone.close()
    results = asyncio.run(many_sessions(smtpgate_server.port))
    assert all(codes[-1] == 221 for codes in results)
    messages = smtpgate_server.wait_for(SESSIONS * MESSAGES_PER_SESSION, timeout=60)
    assert all(message.mail_from != "gone@example.com" for message in messages)
    bodies = {message.raw for message in messages}
    assert bodies == {message_body(i, m) for i in range(SESSIONS) for m in range(MESSAGES_PER_SESSION)}

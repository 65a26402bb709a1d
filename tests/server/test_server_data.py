"""DATA over a real connection: exact bytes, dot-unstuffing, SMTP smuggling, bare LF policy,
size limit, reply timing relative to on_data, disconnects."""

from __future__ import annotations

import asyncio
import hashlib
import smtplib
import socket
import threading

import aiosmtplib
import pytest
from server_support import envelope

from smtpgate import DataStreamError, MessageTooLarge, SMTPError
from support import Recorder, wait_until


def all_replies(client) -> list[int]:
    """Read until the server closes; the reply codes of every final reply line."""
    assert client.is_closed(timeout=10), "server did not close the connection"
    codes = []
    for line in client.buffer.split(b"\r\n"):
        if len(line) >= 4 and line[3:4] == b" ":
            codes.append(int(line[:3]))
    client.buffer = b""
    return codes


def test_dot_stuffed_lines_arrive_unstuffed(smtpgate_server):
    body = b".\r\n..\r\n.leading dot\r\n..two dots\r\nmiddle . dot\r\n.\r\n\r\n. \r\nend\r\n"
    with smtplib.SMTP(*smtpgate_server.address, timeout=10) as client:
        client.sendmail("a@example.com", ["b@example.com"], body)
    [message] = smtpgate_server.wait_for(1)
    assert message.raw == body


def test_empty_message(smtpgate_server, raw_client):
    client = raw_client(smtpgate_server.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    assert client.command(".") == (250, "2.6.0 OK: message queued")
    [message] = smtpgate_server.wait_for(1)
    assert message.raw == b""


SEPARATORS = [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r", b"\n\r.\r\n"]
SMUGGLED = b"MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nsmuggled\r\n"


@pytest.mark.parametrize("mode", ["normalize", "allow"])
@pytest.mark.parametrize("separator", SEPARATORS, ids=repr)
def test_smuggling_cannot_inject_a_second_message(smtpgate_server_factory, raw_client, separator, mode):
    server = smtpgate_server_factory(bare_lf=mode)
    client = raw_client(server.port)
    envelope(client)
    client.send(b"DATA\r\nSubject: real\r\n\r\nbody" + separator + SMUGGLED + b".\r\nQUIT\r\n")
    assert all_replies(client) == [354, 250, 221]
    [message] = server.wait_for(1)
    assert (message.mail_from, message.rcpt_to) == ("a@example.com", ["b@example.com"])
    assert b"evil@attacker.test" in message.raw
    assert message.raw.endswith(b"smuggled\r\n")


@pytest.mark.parametrize("separator", SEPARATORS, ids=repr)
@pytest.mark.smtpgate(bare_lf="reject")
def test_smuggling_with_bare_lf_reject(smtpgate_server, raw_client, separator):
    client = raw_client(smtpgate_server.port)
    envelope(client)
    client.send(b"DATA\r\nSubject: real\r\n\r\nbody" + separator + SMUGGLED + b".\r\nQUIT\r\n")
    codes = all_replies(client)
    bare_lf = b"\n" in separator.replace(b"\r\n", b"")
    assert codes == [354, 550 if bare_lf else 250, 221]
    if bare_lf:
        assert smtpgate_server.messages == []
    else:
        assert len(smtpgate_server.wait_for(1)) == 1


def test_smuggling_split_across_packets(smtpgate_server, raw_client):
    """The terminator candidates arrive one byte per write."""
    client = raw_client(smtpgate_server.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    for byte in b"one\n.\ntwo\r.\rthree\r\n..\r\n":
        client.send(bytes([byte]))
    client.send(b".\r\n")
    assert client.reply()[0] == 250
    [message] = smtpgate_server.wait_for(1)
    assert message.raw == b"one\r\n.\r\ntwo\r.\rthree\r\n.\r\n"


def test_bare_lf_normalize_is_the_default(smtpgate_server, raw_client):
    client = raw_client(smtpgate_server.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    client.send(b"line one\nline two\r\nthree\n\r\n.\r\n")
    assert client.reply()[0] == 250
    [message] = smtpgate_server.wait_for(1)
    assert message.raw == b"line one\r\nline two\r\nthree\r\n\r\n"


def test_bare_lf_reject_refuses_and_the_handler_sees_it(start_server, raw_client):
    seen = Recorder()

    async def on_data(stream, session):
        try:
            await stream.read()
        except DataStreamError as error:
            seen.add(error)
            raise
        seen.add("read the whole body")

    running = start_server(on_data=on_data, bare_lf="reject")
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    client.send(b"line one\nline two\r\n.\r\n")
    code, text = client.reply()
    assert code == 550
    assert text == "5.6.0 Error: bare <LF> received in message, use CRLF line endings"
    [error] = seen.wait_for(1)
    assert isinstance(error, DataStreamError)
    # The session goes on and a clean message is accepted.
    assert client.command("MAIL FROM:<a@example.com>")[0] == 250


def test_bare_lf_reject_refuses_even_if_the_handler_accepts(start_server, raw_client):
    def on_data(stream, session):
        return "accepted anyway"

    running = start_server(on_data=on_data, bare_lf="reject")
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    client.send(b"a\nb\r\n.\r\n")
    assert client.reply()[0] == 550


@pytest.mark.smtpgate(bare_lf="allow")
def test_bare_lf_allow_is_byte_for_byte(smtpgate_server, raw_client):
    client = raw_client(smtpgate_server.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    body = b"unix\nmac\rmixed\r\n\n\r\rend\r\n"
    client.send(body + b".\r\n")
    assert client.reply()[0] == 250
    [message] = smtpgate_server.wait_for(1)
    assert message.raw == body


EXACT_BODY = (
    b"Subject: bytes\r\n\r\n"
    + bytes(b for b in range(256) if b not in (10, 13)) * 3
    + b"\r\n\x00\x00\x00\r\n"
    + "é 漢字 \U0001f600".encode()
    + b"\r\n"
    + b"L" * 100_000
    + b"\r\n"
    + b"\xff" * 1000
    + b"\r\n"
)


def test_body_byte_exact_with_smtplib(smtpgate_server):
    with smtplib.SMTP(*smtpgate_server.address, timeout=10) as client:
        client.sendmail("a@example.com", ["b@example.com"], EXACT_BODY, mail_options=["BODY=8BITMIME"])
    [message] = smtpgate_server.wait_for(1)
    assert message.raw == EXACT_BODY


def test_body_byte_exact_with_aiosmtplib(smtpgate_server):
    asyncio.run(
        aiosmtplib.send(
            EXACT_BODY,
            sender="a@example.com",
            recipients=["b@example.com"],
            hostname=smtpgate_server.host,
            port=smtpgate_server.port,
            start_tls=False,
            timeout=10,
        )
    )
    [message] = smtpgate_server.wait_for(1)
    assert message.raw == EXACT_BODY


def test_oversized_message_is_read_to_the_end_then_552(start_server, raw_client):
    seen = Recorder()

    async def on_data(stream, session):
        body, refused = b"", None
        try:
            async for chunk in stream:
                body += chunk
        except MessageTooLarge as error:  # reading past `size` raises: no truncated message
            refused = error
        seen.add((len(body), stream.byte_length, stream.size_exceeded, type(refused).__name__))

    running = start_server(size=1000, on_data=on_data)
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    body = (b"x" * 98 + b"\r\n") * 50  # 5000 bytes
    client.send(body + b".\r\nNOOP\r\n")
    assert client.reply() == (552, "5.3.4 Error: message exceeds fixed maximum message size 1000")
    assert client.reply() == (250, "2.0.0 OK")  # the rest of the body was not taken as commands
    assert seen.wait_for(1) == [(1000, 5000, True, "MessageTooLarge")]


def test_oversized_message_when_reject_oversized_is_off(start_server, raw_client):
    seen = Recorder()

    async def on_data(stream, session):
        await stream.read()
        seen.add(stream.size_exceeded)
        if stream.size_exceeded:
            return "kept the first kilobyte"

    running = start_server(size=1000, reject_oversized=False, on_data=on_data)
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    client.send(b"y" * 3000 + b"\r\n.\r\n")
    assert client.reply() == (250, "2.6.0 kept the first kilobyte")
    assert seen.items == [True]


def test_250_only_after_on_data_returned(start_server, raw_client):
    state = {"returned": False}

    async def on_data(stream, session):
        await stream.read()
        await asyncio.sleep(0.3)
        state["returned"] = True
        return "Queued as ABC"

    running = start_server(on_data=on_data)
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    client.send(b"body\r\n.\r\n")
    assert client.reply() == (250, "2.6.0 Queued as ABC")
    assert state["returned"] is True


def test_on_data_may_return_before_reading(start_server, raw_client):
    """A handler that ignores the stream: the body is drained, then the reply is sent."""

    def on_data(stream, session):
        return None

    running = start_server(on_data=on_data)
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    client.send(b"z" * 500_000 + b"\r\n.\r\nNOOP\r\n")
    assert client.reply()[0] == 250
    assert client.reply() == (250, "2.0.0 OK")


def test_stream_iterates_in_chunks(start_server, raw_client):
    seen = Recorder()

    async def on_data(stream, session):
        digest = hashlib.sha256()
        count = 0
        async for chunk in stream:
            assert chunk
            digest.update(chunk)
            count += len(chunk)
        seen.add((count, digest.hexdigest(), stream.byte_length))

    running = start_server(on_data=on_data)
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    body = b"0123456789abcdef" * 65536 + b"\r\n"  # 1 MiB, more than the stream's buffer
    client.send(body + b".\r\n")
    assert client.reply()[0] == 250
    assert seen.wait_for(1) == [(len(body), hashlib.sha256(body).hexdigest(), len(body))]


def test_client_disconnect_mid_data(start_server, raw_client):
    errors = Recorder()
    closed = Recorder()

    async def on_data(stream, session):
        try:
            await stream.read()
        except DataStreamError as error:
            errors.add(error)
            raise
        errors.add("no error")

    running = start_server(on_data=on_data, on_close=lambda session: closed.add(session.id))
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    client.send(b"Subject: half\r\n\r\nonly part of the")
    # Whether the handler is already running or starts now, it must see the broken message.
    client.close()
    [error] = errors.wait_for(1)
    assert isinstance(error, DataStreamError)
    closed.wait_for(1)
    wait_until(lambda: not running.server.connections, what="connection to be forgotten")


def test_client_disconnect_mid_data_with_a_sync_handler(start_server, raw_client):
    calls = Recorder()
    closed = Recorder()

    running = start_server(on_data=lambda stream, session: calls.add(stream.getvalue()), on_close=closed.add)
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    client.send(b"partial")
    client.close()
    closed.wait_for(1)
    assert calls.items == []  # a plain on_data is only called for a complete message


def test_sync_on_data_gets_the_whole_message(start_server):
    bodies = Recorder()

    def on_data(stream, session):
        bodies.add(stream.getvalue())
        return "stored"

    running = start_server(on_data=on_data)
    with smtplib.SMTP(running.host, running.port, timeout=10) as client:
        client.ehlo("c")
        client.mail("a@example.com")
        client.rcpt("b@example.com")
        assert client.data(b"sync\r\nhandler\r\n") == (250, b"2.6.0 stored")
    assert bodies.items == [b"sync\r\nhandler\r\n"]


def test_on_data_refusal_and_next_message(start_server, raw_client):
    kept = Recorder()

    async def on_data(stream, session):
        body = await stream.read()
        if b"spam" in body:
            raise SMTPError(554, "Looks like spam")
        kept.add(body)
        return "ok"

    running = start_server(on_data=on_data)
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    assert client.command("buy spam\r\n.") == (554, "5.6.0 Looks like spam")
    assert client.command("MAIL FROM:<a@example.com>")[0] == 250
    assert client.command("RCPT TO:<b@example.com>")[0] == 250
    assert client.command("DATA")[0] == 354
    assert client.command("hello\r\n.") == (250, "2.6.0 ok")
    assert kept.items == [b"hello\r\n"]


def test_no_on_data_handler_accepts_and_drains(start_server, raw_client):
    running = start_server()
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    client.send(b"w" * 200_000 + b"\r\n.\r\nNOOP\r\n")
    assert client.reply() == (250, "2.6.0 OK: message queued")
    assert client.reply()[0] == 250


@pytest.mark.smtpgate(socket_timeout=1.0)
def test_idle_timer_is_refreshed_by_data_bytes(smtpgate_server, raw_client):
    """A slow upload longer than socket_timeout is not cut while bytes keep coming."""
    client = raw_client(smtpgate_server.port)
    assert client.reply()[0] == 220
    client.send("EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
    for _ in range(15):  # 1.5 s in all, longer than socket_timeout
        client.send(b"slow line\r\n")
        threading.Event().wait(0.1)
    client.send(b".\r\n")
    assert [code for code, _ in client.replies(5)] == [250, 250, 250, 354, 250]
    [message] = smtpgate_server.wait_for(1)
    assert message.raw == b"slow line\r\n" * 15


def test_slow_handler_is_not_cut_by_socket_timeout(start_server, raw_client):
    async def on_data(stream, session):
        await stream.read()
        await asyncio.sleep(1.2)

    running = start_server(socket_timeout=0.5, on_data=on_data)
    client = raw_client(running.port)
    assert client.reply()[0] == 220
    client.send("EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\r\n.\r\n")
    assert [code for code, _ in client.replies(5)] == [250, 250, 250, 354, 250]


def test_half_close_after_a_complete_message(smtpgate_server, raw_client):
    """A client that sends everything and shuts down its side still gets every reply."""
    client = raw_client(smtpgate_server.port)
    client.reply()
    client.send(b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nlast words\r\n.\r\n")
    client.sock.shutdown(socket.SHUT_WR)
    assert [code for code, _ in client.replies(4)] == [250, 250, 250, 354]
    assert client.reply() == (250, "2.6.0 OK: message queued")
    assert client.is_closed()
    [message] = smtpgate_server.wait_for(1)
    assert message.raw == b"last words\r\n"


def test_half_close_mid_data_is_no_message(smtpgate_server, raw_client):
    client = raw_client(smtpgate_server.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    client.send(b"no terminator\r\n")
    client.sock.shutdown(socket.SHUT_WR)
    assert client.is_closed()
    assert smtpgate_server.messages == []


def test_backpressure_from_a_handler_that_does_not_read(start_server, raw_client):
    """While on_data does not read, the server stops reading the socket: the sender blocks."""
    release = threading.Event()
    seen = Recorder()

    async def on_data(stream, session):
        while not release.is_set():
            await asyncio.sleep(0.01)
        total = 0
        async for chunk in stream:
            total += len(chunk)
        seen.add(total)

    running = start_server(on_data=on_data)
    client = raw_client(running.port, timeout=60)
    envelope(client)
    assert client.command("DATA")[0] == 354
    body = (b"b" * 1022 + b"\r\n") * (32 * 1024)  # 32 MiB
    sender = threading.Thread(target=client.send, args=(body + b".\r\n",), daemon=True)
    sender.start()
    sender.join(0.5)
    assert sender.is_alive(), "32 MiB were taken although the handler read nothing"
    release.set()
    sender.join(60)
    assert not sender.is_alive()
    assert client.reply()[0] == 250
    assert seen.wait_for(1) == [len(body)]


def test_on_data_refusing_before_reading_still_drains_the_body(start_server, raw_client):
    async def on_data(stream, session):
        raise SMTPError(550, "Not from you", enhanced="5.7.1")

    running = start_server(on_data=on_data)
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    client.send(b"q" * 2_000_000 + b"\r\nMAIL FROM:<inside@body.test>\r\n.\r\nNOOP\r\n")
    assert client.reply() == (550, "5.7.1 Not from you")
    assert client.reply() == (250, "2.0.0 OK")


def test_stream_read_n(start_server, raw_client):
    seen = Recorder()

    async def on_data(stream, session):
        pieces = []
        while True:
            piece = await stream.read(7000)
            if not piece:
                break
            pieces.append(piece)
        seen.add(([len(p) for p in pieces], b"".join(pieces), stream.ended, await stream.read()))

    running = start_server(on_data=on_data)
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    body = bytes(range(256)).replace(b"\r", b"").replace(b"\n", b"") * 400 + b"\r\n"
    for i in range(0, len(body), 1000):
        client.send(body[i : i + 1000])
    client.send(b".\r\n")
    assert client.reply()[0] == 250
    [(sizes, got, ended, rest)] = seen.wait_for(1)
    assert got == body
    assert all(size == 7000 for size in sizes[:-1]) and 0 < sizes[-1] <= 7000
    assert ended is True
    assert rest == b""


@pytest.mark.slow
def test_handler_that_ignores_a_disconnect_is_cancelled(start_server, raw_client):
    """After a disconnect mid-message the handler gets a few seconds, then it is cancelled;
    on_close still runs once."""
    events = Recorder()

    async def on_data(stream, session):
        try:
            await stream.read()
        except DataStreamError:
            events.add("stream error")
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            events.add("cancelled")
            raise

    running = start_server(on_data=on_data, on_close=lambda session: events.add("closed"))
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    client.send(b"partial")
    client.close()
    assert events.wait_for(3, timeout=20) == ["stream error", "cancelled", "closed"]

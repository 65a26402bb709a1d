"""Bounds over a real connection: command line length, huge input without newlines, big
messages, many clients at once."""

from __future__ import annotations

import asyncio
import hashlib
import resource
import smtplib
import threading

import aiosmtplib
import pytest
from server_support import ehlo, envelope

from support import Recorder


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def server_buffered(running) -> int:
    return max((c.core.buffered for c in list(running.server.connections) if c.core is not None), default=0)


def test_line_over_max_command_length(start_server, raw_client):
    running = start_server(max_command_length=1024)
    client = raw_client(running.port)
    ehlo(client)
    code, text = client.command("NOOP " + "x" * 2000)
    if code == 421:
        assert client.is_closed()
        return
    assert (code, text) == (500, "5.5.6 Error: line too long")
    assert client.command("NOOP") == (250, "2.0.0 OK")


def test_mail_with_over_long_address_line(start_server, raw_client):
    running = start_server(max_command_length=1024)
    client = raw_client(running.port)
    ehlo(client)
    code, _ = client.command("MAIL FROM:<" + "a" * 5000 + "@example.com>")
    assert code in (500, 421)
    if code == 500:
        assert client.command("MAIL FROM:<a@example.com>")[0] == 250


def test_megabytes_without_newline_are_not_buffered(start_server, raw_client):
    running = start_server(max_command_length=1024)
    client = raw_client(running.port)
    ehlo(client)
    chunk = b"A" * 65536
    for _ in range(32):  # 2 MiB
        client.send(chunk)
        assert server_buffered(running) <= 1024 + 2 * 65536
    client.send(b"\r\nNOOP\r\n")
    code, text = client.reply()
    if code == 421:
        assert client.is_closed()
        return
    assert (code, text) == (500, "5.5.6 Error: line too long")
    assert client.reply() == (250, "2.0.0 OK")


def test_line_too_long_before_ehlo(start_server, raw_client):
    running = start_server()
    client = raw_client(running.port)
    client.reply()
    client.send(b"B" * 20000 + b"\r\n")
    assert client.reply()[0] in (500, 421)


@pytest.mark.slow
def test_100_mb_without_newline(start_server, raw_client):
    running = start_server()  # default max_command_length
    client = raw_client(running.port, timeout=60)
    ehlo(client)
    before = peak_rss_mib()
    chunk = b"N" * (1 << 20)
    worst = 0
    for _ in range(100):
        client.send(chunk)
        worst = max(worst, server_buffered(running))
    client.send(b"\r\nNOOP\r\n")
    code, _ = client.reply()
    assert worst <= 16384 + 2 * (1 << 20)
    assert peak_rss_mib() - before < 60  # 100 MB went through without being kept
    if code == 421:
        assert client.is_closed()
    else:
        assert code == 500
        assert client.reply() == (250, "2.0.0 OK")


@pytest.mark.slow
def test_100_mb_line_in_command_phase_of_a_transaction(start_server, raw_client):
    running = start_server()
    client = raw_client(running.port, timeout=60)
    envelope(client)
    chunk = b"R" * (1 << 20)
    for _ in range(100):
        client.send(chunk)
    client.send(b"\r\n")
    code, _ = client.reply()
    assert code in (500, 421)
    assert server_buffered(running) <= 16384 + (1 << 20)


@pytest.mark.slow
def test_50_mb_message_arrives_byte_exact(start_server):
    seen = Recorder()

    async def on_data(stream, session):
        digest = hashlib.sha256()
        async for chunk in stream:
            digest.update(chunk)
        seen.add((stream.byte_length, digest.hexdigest()))

    running = start_server(on_data=on_data)
    line = bytes(range(32, 127)) * 10 + b"\xe9\x00\r\n"
    body = b"Subject: big\r\n\r\n" + line * (50 * 1024 * 1024 // len(line)) + b".starts with dot\r\n"
    with smtplib.SMTP(running.host, running.port, timeout=120) as client:
        assert client.sendmail("a@example.com", ["b@example.com"], body) == {}
    assert seen.wait_for(1, timeout=60) == [(len(body), hashlib.sha256(body).hexdigest())]


@pytest.mark.slow
def test_50_mb_message_memory_stays_bounded_with_a_slow_reader(start_server, raw_client):
    """Backpressure: a handler reading slowly does not make the server buffer the message."""
    seen = Recorder()

    async def on_data(stream, session):
        total = 0
        while chunk := await stream.read(1 << 20):
            total += len(chunk)
            await asyncio.sleep(0.001)
        seen.add(total)

    running = start_server(on_data=on_data)
    client = raw_client(running.port, timeout=120)
    envelope(client)
    assert client.command("DATA")[0] == 354
    before = peak_rss_mib()
    chunk = (b"m" * 1022 + b"\r\n") * 1024
    for _ in range(50):
        client.send(chunk)
    client.send(b".\r\n")
    assert client.reply()[0] == 250
    assert seen.wait_for(1, timeout=60) == [50 * len(chunk)]
    assert peak_rss_mib() - before < 40


CLIENTS = 200


def test_200_concurrent_clients(start_server, received):
    running = start_server(on_data=received.on_data)

    async def one(i: int, gate: asyncio.Event) -> None:
        smtp = aiosmtplib.SMTP(hostname=running.host, port=running.port, timeout=60, start_tls=False)
        await smtp.connect()
        await gate.wait()  # every client is connected before anyone sends
        await smtp.sendmail(f"s{i}@example.com", [f"r{i}@example.com"], f"Subject: {i}\r\n\r\nmessage {i}\r\n")
        await smtp.quit()

    async def main() -> list:
        gate = asyncio.Event()
        tasks = [asyncio.ensure_future(one(i, gate)) for i in range(CLIENTS)]
        await asyncio.sleep(0)
        for _ in range(600):
            if len(running.server.connections) >= CLIENTS or any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.05)
        gate.set()
        return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 120)

    results = asyncio.run(main())
    assert [r for r in results if r is not None] == []
    received.wait_for(CLIENTS, timeout=30)
    got = sorted((m[0], tuple(m[1]), m[2]) for m in received.messages)
    expected = sorted(
        (f"s{i}@example.com", (f"r{i}@example.com",), f"Subject: {i}\r\n\r\nmessage {i}\r\n".encode())
        for i in range(CLIENTS)
    )
    assert got == expected
    assert len({m[3].id for m in received.messages}) == CLIENTS


def test_long_line_while_a_handler_decides(start_server, raw_client):
    """Input that arrives while a handler runs is held only up to a bound, then discarded."""
    release = threading.Event()

    async def on_mail_from(address, session):
        while not release.is_set():
            await asyncio.sleep(0.01)

    running = start_server(max_command_length=1024, on_mail_from=on_mail_from)
    client = raw_client(running.port, timeout=60)
    ehlo(client)
    client.send("MAIL FROM:<a@example.com>\r\n")
    junk = b"J" * (8 << 20)
    sender = threading.Thread(target=client.send, args=(junk,), daemon=True)
    sender.start()
    sender.join(0.5)
    worst = server_buffered(running)
    assert worst <= 64 * 1024 + 512 * 1024
    release.set()
    sender.join(60)
    assert not sender.is_alive()
    client.send(b"\r\nNOOP\r\n")
    assert client.reply()[0] == 250  # MAIL
    code, _ = client.reply()
    assert code in (500, 421)
    if code == 500:
        assert client.reply() == (250, "2.0.0 OK")

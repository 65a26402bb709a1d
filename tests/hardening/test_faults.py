"""Fault injection over real sockets: clients that vanish at every point of a session,
slow clients, crowds of idle clients, handlers that fail or hang.

After every fault: no handler saw a complete message that was not fully received,
``on_close`` ran exactly once for every ``on_connect``, the server's connection registry
is empty again, and a well-behaved client is still served.
"""

from __future__ import annotations

import asyncio
import resource
import smtplib
import socket
import threading
import time

import pytest
from hardening_support import Client, Recorder, client_hello, hang_forever, insecure_context, open_sessions

from smtpgate import SMTPError
from support import wait_until


def _data_script(ident: bytes) -> list[tuple[bytes, bool]]:
    return [
        (b"EHLO client.example\r\n", True),
        (b"MAIL FROM:<a@example.com>\r\n", True),
        (b"RCPT TO:<b@example.com>\r\n", True),
        (b"DATA\r\n", True),
        (b"X-Test-Id: " + ident + b"\r\n\r\nline one\r\n..stuffed\r\n", False),
        (b".\r\n", True),
        (b"QUIT\r\n", True),
    ]


def _bdat_script(ident: bytes) -> list[tuple[bytes, bool]]:
    first = b"X-Test-Id: " + ident + b"\r\n\r\n"
    return [
        (b"EHLO client.example\r\n", True),
        (b"MAIL FROM:<a@example.com>\r\n", True),
        (b"RCPT TO:<b@example.com>\r\n", True),
        (b"BDAT %d\r\n" % len(first) + first, True),
        (b"BDAT 9 LAST\r\nbody text", True),
        (b"QUIT\r\n", True),
    ]


def _message_end(script: list[tuple[bytes, bool]]) -> int:
    """Offset just after the bytes that complete the message."""
    offset = 0
    for data, _ in script:
        offset += len(data)
        if data == b".\r\n" or b" LAST\r\n" in data:
            return offset
    raise AssertionError("no message end")


def _play_until(port: int, script: list[tuple[bytes, bool]], cut: int, reset: bool) -> None:
    """Play ``script`` as a careful client, hang up after exactly ``cut`` bytes."""
    client = Client(port)
    try:
        assert client.reply()[0] == 220
        sent = 0
        for data, answered in script:
            if sent + len(data) > cut:
                client.send(data[: cut - sent])
                return
            client.send(data)
            sent += len(data)
            if answered:
                code, text = client.reply()
                assert code < 400, text
            if sent == cut:
                return
    finally:
        client.hang_up(reset)


def _served(port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.sendmail("a@example.com", ["b@example.com"], b"X-Test-Id: after\r\n\r\nstill serving\r\n")


def _settled(running, recorder: Recorder, timeout: float = 15.0) -> None:
    assert wait_until(lambda: open_sessions(running) == 0 and recorder.balanced(), timeout), (
        f"{open_sessions(running)} sessions open; connects {sum(recorder.connects.values())}, "
        f"closes {sum(recorder.closes.values())}"
    )
    assert all(count == 1 for count in recorder.closes.values()), "on_close ran twice for a session"


@pytest.mark.parametrize("kind", ["DATA", "BDAT"])
def test_disconnect_at_every_byte(start_server, kind):
    """Hang up after each command, mid-line, mid-DATA, mid-BDAT chunk; FIN and RST alternately."""
    recorder = Recorder()
    running = start_server(**recorder.handlers())
    make = _data_script if kind == "DATA" else _bdat_script
    probe = make(b"%s-0000" % kind.encode())  # same length as every real id
    total = sum(len(data) for data, _ in probe)
    end = _message_end(probe)
    whole: set[bytes] = set()
    for cut in range(total + 1):
        ident = b"%s-%04d" % (kind.encode(), cut)
        _play_until(running.port, make(ident), cut, reset=bool(cut % 2))
        if cut >= end:
            whole.add(ident)
    _settled(running, recorder)
    seen = set(recorder.complete)
    assert seen <= whole, f"complete messages from cut sessions: {sorted(seen - whole)[:5]}"
    # Every session that sent the whole message and waited for the 250 has it stored.
    assert seen == whole
    assert recorder.broken >= 1
    _served(running.port)
    assert wait_until(lambda: b"after" in recorder.complete, timeout=15)
    _settled(running, recorder)


def _leave_during_on_connect(start_server, reset: bool) -> None:
    recorder = Recorder()
    gate = threading.Event()

    async def slow_connect(session):
        await recorder.on_connect(session)
        for _ in range(100):
            if gate.is_set():
                break
            await asyncio.sleep(0.01)

    running = start_server(on_connect=slow_connect, on_close=recorder.on_close, on_data=recorder.on_data)
    for i in range(10):
        client = Client(running.port)
        assert wait_until(lambda i=i: sum(recorder.connects.values()) == i + 1, timeout=5)
        client.hang_up(reset=reset)
        time.sleep(0.02)
        gate.set()
        time.sleep(0.02)
        gate.clear()
    _settled(running, recorder, timeout=3.0)
    _served(running.port)


def test_hang_up_while_on_connect_runs(start_server):
    """A client that closes (FIN) while on_connect is still running still gets its on_close."""
    _leave_during_on_connect(start_server, reset=False)


def test_reset_while_on_connect_runs(start_server):
    """The same with a reset: on_connect ran, so on_close must run too (found by this suite)."""
    _leave_during_on_connect(start_server, reset=True)


def test_disconnect_mid_tls_handshake(start_server):
    """STARTTLS then part of a ClientHello, a whole one, or a finished handshake, then gone."""
    recorder = Recorder()
    running = start_server(socket_timeout=5.0, **recorder.handlers())
    hello = client_hello()
    assert len(hello) > 100
    for cut in (0, 1, 5, len(hello) // 2, len(hello) - 1, len(hello)):
        for reset in (False, True):
            client = Client(running.port)
            assert client.reply()[0] == 220
            assert client.command(b"EHLO c.example\r\n")[0] == 250
            assert client.command(b"STARTTLS\r\n")[0] == 220
            client.send(hello[:cut])
            if cut == len(hello):
                client.sock.settimeout(5)
                client.sock.recv(1)  # the server's first flight has started
            client.hang_up(reset)
    # A finished handshake, then a vanished client (with and without a started message).
    for started in (False, True):
        raw = socket.create_connection(("127.0.0.1", running.port), timeout=10)
        raw.recv(1024)
        raw.sendall(b"EHLO c.example\r\n")
        time.sleep(0.05)
        raw.recv(4096)
        raw.sendall(b"STARTTLS\r\n")
        raw.recv(1024)
        tls = insecure_context().wrap_socket(raw, server_hostname="mx.test")
        if started:
            tls.sendall(b"EHLO c.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
            tls.sendall(b"X-Test-Id: tls-cut\r\n\r\nhalf a message")
            time.sleep(0.1)
        tls.close()
    _settled(running, recorder)
    assert b"tls-cut" not in recorder.complete
    _served(running.port)


def test_disconnect_mid_implicit_tls_handshake(start_server):
    recorder = Recorder()
    running = start_server(secure=True, socket_timeout=5.0, **recorder.handlers())
    hello = client_hello()
    for cut in (0, 3, len(hello) // 2, len(hello)):
        client = Client(running.port)
        client.send(hello[:cut])
        client.hang_up(reset=cut % 2 == 1)
    _settled(running, recorder)
    context = insecure_context()
    with smtplib.SMTP_SSL("127.0.0.1", running.port, timeout=10, context=context) as smtp:
        smtp.sendmail("a@example.com", ["b@example.com"], b"X-Test-Id: tls-ok\r\n\r\nhi\r\n")
    assert wait_until(lambda: b"tls-ok" in recorder.complete, timeout=15)
    _settled(running, recorder)


def _trickle(client: Client, data: bytes, pause: float, budget: float) -> float | None:
    """Send one byte every ``pause`` seconds; seconds until the server hung up, or None."""
    start = time.monotonic()
    for i in range(len(data)):
        if time.monotonic() - start > budget:
            return None
        try:
            client.send(data[i : i + 1])
        except OSError:
            return time.monotonic() - start
        if client.closed_by_server(pause):
            return time.monotonic() - start
    return None


def test_slowloris_commands_cut_by_socket_timeout(start_server):
    recorder = Recorder()
    running = start_server(socket_timeout=1.0, **recorder.handlers())
    client = Client(running.port)
    assert client.reply()[0] == 220
    took = _trickle(client, b"EHLO a-very-slow-client.example\r\nNOOP\r\nNOOP\r\n", 0.3, budget=20)
    assert took is not None, "a client sending a byte every 0.3 s was never cut"
    assert b"421" in client.buffer and b"timeout" in client.buffer
    _settled(running, recorder)
    _served(running.port)


def test_slowloris_in_data_cut_by_socket_timeout(start_server):
    """Found by this suite (fixed in 7e01ba3): every byte of a body used to reset the idle timer,
    so a client trickling a byte every 0.3 s held its session forever."""
    recorder = Recorder()
    running = start_server(socket_timeout=1.0, **recorder.handlers())
    client = Client(running.port)
    assert client.reply()[0] == 220
    for line in (b"EHLO c.example\r\n", b"MAIL FROM:<a@example.com>\r\n", b"RCPT TO:<b@example.com>\r\n"):
        assert client.command(line)[0] == 250
    assert client.command(b"DATA\r\n")[0] == 354
    took = _trickle(client, b"X-Test-Id: slow\r\n" + b"x" * 200, 0.3, budget=15)
    client.hang_up()
    _settled(running, recorder)
    assert took is not None, "a client trickling DATA for 6 s with socket_timeout=1 was never cut"


def _raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < need:
        pytest.skip(f"RLIMIT_NOFILE {soft} < {need}")


def test_thousand_idle_connections_do_not_stop_a_new_client(start_server):
    _raise_nofile(2 * 1000 + 200)
    recorder = Recorder()
    running = start_server(max_clients=1001, socket_timeout=60, **recorder.handlers())
    idle = []
    try:
        for _ in range(1000):
            idle.append(socket.create_connection(("127.0.0.1", running.port), timeout=10))
        assert wait_until(lambda: open_sessions(running) == 1000, timeout=30), open_sessions(running)
        started = time.monotonic()
        _served(running.port)
        served_in = time.monotonic() - started
        assert wait_until(lambda: b"after" in recorder.complete, timeout=15)
        # Over max_clients: a clear 421, then the next one is served again once a slot frees.
        extra = [Client(running.port)]
        assert wait_until(lambda: open_sessions(running) == 1001, timeout=10)
        over = Client(running.port)
        code, text = over.reply()
        assert code == 421 and b"Too many" in text
        over.hang_up()
        extra[0].hang_up()
        assert wait_until(lambda: open_sessions(running) == 1000, timeout=10)
        _served(running.port)
        print(f"new client served in {served_in:.3f} s beside 1000 idle connections")
    finally:
        for sock in idle:
            sock.close()
    _settled(running, recorder)


def test_failing_and_hanging_handlers_affect_their_session_only(start_server):
    recorder = Recorder()
    done = threading.Event()

    async def on_rcpt_to(address, session):
        if address.address.startswith("boom"):
            raise RuntimeError("handler bug")
        if address.address.startswith("refuse"):
            raise SMTPError(550, "No such user")

    async def on_data(stream, session):
        body = await stream.read()
        if b"HANG" in body:
            await hang_forever()
        if b"CRASH" in body:
            raise ValueError("on_data bug")
        recorder.complete.append(body.split(b"\r\n")[0])
        return "stored"

    running = start_server(
        on_rcpt_to=on_rcpt_to,
        on_data=on_data,
        on_connect=recorder.on_connect,
        on_close=recorder.on_close,
        handler_timeout=3.0,
    )
    # A raising on_rcpt_to: 451 for that recipient, the session goes on.
    with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as smtp:
        smtp.ehlo("c.example")
        smtp.mail("a@example.com")
        assert smtp.rcpt("boom@example.com")[0] == 451
        assert smtp.rcpt("refuse@example.com")[0] == 550
        assert smtp.rcpt("b@example.com")[0] == 250
        assert smtp.data(b"X-Test-Id: one\r\n\r\nhi\r\n")[0] == 250
        # A raising on_data: 451, and the next message in the same session is fine.
        smtp.mail("a@example.com")
        smtp.rcpt("b@example.com")
        assert smtp.data(b"X-Test-Id: two\r\n\r\nCRASH\r\n")[0] == 451  # smtplib returns the final code
        smtp.mail("a@example.com")
        smtp.rcpt("b@example.com")
        assert smtp.data(b"X-Test-Id: three\r\n\r\nok\r\n")[0] == 250

    # A hanging on_data: that client waits for handler_timeout then gets 451; others are served meanwhile.
    result: dict[str, object] = {}

    def hanging_client() -> None:
        try:
            with smtplib.SMTP("127.0.0.1", running.port, timeout=20) as smtp:
                smtp.ehlo("c.example")
                smtp.mail("a@example.com")
                smtp.rcpt("b@example.com")
                result["code"] = smtp.data(b"X-Test-Id: hang\r\n\r\nHANG\r\n")[0]
                result["others_done_first"] = done.is_set()
                smtp.mail("a@example.com")
                smtp.rcpt("b@example.com")
                result["after"] = smtp.data(b"X-Test-Id: after-hang\r\n\r\nok\r\n")[0]
        except Exception as error:  # reported below
            result["error"] = error

    thread = threading.Thread(target=hanging_client)
    thread.start()
    time.sleep(0.3)
    for i in range(5):
        with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as smtp:
            smtp.sendmail("a@example.com", ["b@example.com"], b"X-Test-Id: side-%d\r\n\r\nhi\r\n" % i)
    done.set()
    thread.join(30)
    assert not thread.is_alive()
    assert "error" not in result, result
    assert result["code"] == 451
    assert result["others_done_first"] is True
    assert result["after"] == 250
    stored = set(recorder.complete)
    assert {b"X-Test-Id: one", b"X-Test-Id: three", b"X-Test-Id: after-hang"} <= stored
    assert {b"X-Test-Id: side-%d" % i for i in range(5)} <= stored
    assert b"X-Test-Id: hang" not in stored and b"X-Test-Id: two" not in stored
    _settled(running, recorder)


def test_tls_client_that_never_finishes_the_handshake_is_cut(start_server):
    """A ClientHello and then silence: the handshake times out with socket_timeout."""
    recorder = Recorder()
    running = start_server(socket_timeout=1.0, **recorder.handlers())
    client = Client(running.port)
    assert client.reply()[0] == 220
    assert client.command(b"STARTTLS\r\n")[0] == 220
    client.send(client_hello()[:10])
    assert client.closed_by_server(15), "a stalled TLS handshake was never cut"
    client.hang_up()
    _settled(running, recorder)
    _served(running.port)


def test_garbage_at_every_phase_leaves_the_server_serving(start_server):
    recorder = Recorder()
    running = start_server(max_unrecognized_commands=3, **recorder.handlers())
    garbage = [
        b"\x00" * 100 + b"\r\n",
        b"\x16\x03\x01\x02\x00" + b"\xff" * 300,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"A" * 100_000 + b"\r\n",
        b"BDAT x\r\n",
        b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nBDAT 99999999999\r\nxx",
        b"\r\n" * 50,
    ]
    for data in garbage:
        client = Client(running.port)
        assert client.reply()[0] == 220
        try:
            client.send(data)
        except OSError:
            pass
        client.closed_by_server(0.2)
        client.hang_up(reset=True)
    _settled(running, recorder)
    assert recorder.complete == []
    _served(running.port)
    _settled(running, recorder)

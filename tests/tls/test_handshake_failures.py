"""Clients that break the TLS handshake: garbage instead of a ClientHello, a client that
stalls, one that goes away half-way through its ClientHello; after STARTTLS and with
implicit TLS.

Each failure costs one INFO log line (``TLS handshake with <address> failed: ...``) and
one ``"error"`` event carrying the session (so the client's address), no traceback, no
``on_data``; ``on_close`` runs once after STARTTLS and not at all for an implicit-TLS
handshake that failed (docs/handlers.md). The server keeps serving others.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import threading
import time

import pytest
from tls_support import NamedSMTP_SSL, client_context, client_hello, smtp

from support import wait_for_log

pytestmark = pytest.mark.timeout(60)

MESSAGE = b"Subject: after\r\n\r\nthe next client is served\r\n"
SOCKET_TIMEOUT = 1.0  # for the stalling clients: the handshake must finish within it


class Calls:
    """on_close / on_data calls, by session id (handlers run on the server thread)."""

    def __init__(self) -> None:
        self.closed: list[str] = []
        self.data: list[str] = []
        self._lock = threading.Lock()

    def on_close(self, session) -> None:
        with self._lock:
            self.closed.append(session.id)

    async def on_data(self, stream, session) -> None:
        with self._lock:
            self.data.append(session.id)
        await stream.read()

    def wait_closed(self, session_id: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while session_id not in self.closed:
            if time.monotonic() > deadline:
                raise AssertionError(f"on_close not called for {session_id} within {timeout} s")
            time.sleep(0.01)


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def failing_server(start_server, mx, events, calls):
    def start(mode: str, **options):
        running = start_server(
            secure=(mode == "implicit"), on_close=calls.on_close, on_data=calls.on_data, **mx, **options
        )
        running.server.on("error", events.on_error)
        return running

    return start


def open_handshake(raw_client, running, mode: str):
    """A client that is about to send its ClientHello: connected (implicit TLS) or after 220 to STARTTLS."""
    client = raw_client(running.port)
    if mode == "starttls":
        assert client.reply()[0] == 220
        assert client.command("EHLO client.test")[0] == 250
        code, text = client.command("STARTTLS")
        assert code == 220, text
    return client


def normal_session(running, certs, mode: str) -> None:
    """A well-behaved smtplib client delivers a message."""
    if mode == "implicit":
        with NamedSMTP_SSL("127.0.0.1", running.port, context=client_context(certs), timeout=10) as client:
            assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}
    else:
        with smtp(running.port) as client:
            client.starttls(context=client_context(certs))
            assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}


def check_failure_was_quiet(running, certs, mode, events, calls, caplog, wait: float = 10):
    """The common end of every test: one error event with the client's address, one log line,
    no traceback, the on_close/on_data rules, and a normal session afterwards."""
    record = wait_for_log(caplog, "TLS handshake with 127.0.0.1 failed: ", timeout=wait)
    assert record.levelno == logging.INFO
    error, session = events.wait_for_error(timeout=wait)
    assert isinstance(error, Exception)
    assert session is not None
    assert session.remote_address == "127.0.0.1" and session.remote_port > 0
    assert session.secure is False and session.tls_options is None
    assert session.id in record.getMessage()

    before = set(calls.closed)
    normal_session(running, certs, mode)
    deadline = time.monotonic() + 10
    while len(calls.closed) == len(before) or running.server.connections:
        assert time.monotonic() < deadline, "the normal session did not end"
        time.sleep(0.01)
    good = [session_id for session_id in calls.closed if session_id not in before]
    assert len(calls.data) == 1 and calls.data == good, "on_data ran only for the normal session"

    if mode == "starttls":
        calls.wait_closed(session.id)
        assert calls.closed.count(session.id) == 1
    else:
        assert session.id not in calls.closed, "no on_close after a failed implicit-TLS handshake (documented)"
    assert len(events.errors) == 1, [repr(e) for e, _ in events.errors]

    lines = [r for r in caplog.records if r.levelno >= logging.INFO and session.id in r.getMessage()]
    assert [r.getMessage() for r in lines] == [record.getMessage()], "one log line per failed handshake"
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text
    return error, session


def tls_records_only(data: bytes) -> bool:
    """True if ``data`` is a sequence of whole TLS records and nothing else."""
    while data:
        if len(data) < 5 or data[0] not in (20, 21, 22, 23) or data[1] != 3:
            return False
        length = int.from_bytes(data[3:5], "big")
        if len(data) < 5 + length:
            return False
        data = data[5 + length :]
    return True


GARBAGE = {
    "plaintext-smtp": b"EHLO client.test\r\nMAIL FROM:<a@example.com>\r\n",
    "http": b"GET / HTTP/1.1\r\nHost: mx.test\r\n\r\n",
    "bogus-record": b"\x16\x03\x01\x00\x05hello",
    "zeros": b"\x00" * 64,
}


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
@pytest.mark.parametrize("garbage", list(GARBAGE))
def test_garbage_instead_of_a_client_hello(
    garbage, mode, failing_server, raw_client, certs, events, calls, smtpgate_log
):
    running = failing_server(mode)
    client = open_handshake(raw_client, running, mode)
    client.send(GARBAGE[garbage])
    assert client.is_closed(timeout=10), "the server must close the connection"
    assert tls_records_only(client.buffer), f"no SMTP reply to the garbage: {client.buffer!r}"
    check_failure_was_quiet(running, certs, mode, events, calls, smtpgate_log)


STALLS = ["before-client-hello", "after-client-hello"]


def stalled_client(raw_client, running, certs, mode: str, stall: str):
    client = open_handshake(raw_client, running, mode)
    if stall == "after-client-hello":
        # the server answers with its flight; the client never sends its Finished
        client.send(client_hello(client_context(certs)))
    return client


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_client_that_stalls_in_the_handshake_is_closed(
    mode, stall, failing_server, raw_client, certs, events, calls, smtpgate_log
):
    """The handshake is bounded by socket_timeout and reported like any failed handshake
    (the idle timer leaves it to that timeout: no "idle ... closing", no plain-text 421)."""
    running = failing_server(mode, socket_timeout=SOCKET_TIMEOUT)
    client = stalled_client(raw_client, running, certs, mode, stall)
    started = time.monotonic()
    assert client.is_closed(timeout=10), "a stalled handshake must be closed within 10 s"
    assert time.monotonic() - started < 10
    assert tls_records_only(client.buffer), f"not TLS: {client.buffer[-60:]!r}"
    if stall == "after-client-hello":
        assert client.buffer.startswith(b"\x16\x03"), "the server's flight (ServerHello...) was sent"
    else:
        assert client.buffer == b""
    error, _ = check_failure_was_quiet(running, certs, mode, events, calls, smtpgate_log)
    assert isinstance(error, (OSError, TimeoutError)), repr(error)
    assert not [r for r in smtpgate_log.records if "idle for" in r.getMessage()]


def stop_during_handshake(running, client) -> None:
    """Close the server (close_timeout 1 s) while ``client`` is in its handshake."""
    stopper = threading.Thread(target=running.stop, kwargs={"timeout": 20})
    stopper.start()
    assert client.is_closed(timeout=10), "the server's close must end a stalled handshake"
    stopper.join(20)
    assert not stopper.is_alive()


@pytest.mark.parametrize("stall", STALLS)
@pytest.mark.parametrize(
    "mode",
    ["starttls", "implicit"],
)
def test_server_close_during_a_handshake_sends_no_plaintext(mode, stall, failing_server, raw_client, certs):
    running = failing_server(mode, close_timeout=1)
    client = stalled_client(raw_client, running, certs, mode, stall)
    time.sleep(0.2)  # the server is in the handshake
    stop_during_handshake(running, client)
    assert tls_records_only(client.buffer), f"not TLS: {client.buffer[-60:]!r}"


@pytest.mark.parametrize("stall", STALLS)
def test_server_close_during_an_implicit_handshake_never_reaches_on_connect(
    stall, failing_server, raw_client, certs, calls
):
    connected: list[tuple[bool, object]] = []
    running = failing_server(
        "implicit", close_timeout=1, on_connect=lambda s: connected.append((s.secure, s.tls_options))
    )
    emitted: list[str] = []
    running.server.on("connect", lambda session: emitted.append(session.id))
    client = stalled_client(raw_client, running, certs, "implicit", stall)
    time.sleep(0.2)
    stop_during_handshake(running, client)
    assert (connected, emitted, calls.closed, calls.data) == ([], [], [], [])


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_client_that_disconnects_mid_client_hello(mode, failing_server, raw_client, certs, events, calls, smtpgate_log):
    running = failing_server(mode)
    client = open_handshake(raw_client, running, mode)
    hello = client_hello(client_context(certs))
    client.send(hello[: len(hello) // 2])
    time.sleep(0.05)  # the half ClientHello arrives on its own, then the end of the stream
    client.close()
    check_failure_was_quiet(running, certs, mode, events, calls, smtpgate_log)


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_client_that_resets_mid_client_hello(mode, failing_server, raw_client, certs, events, calls, smtpgate_log):
    """The same with an RST instead of a FIN (SO_LINGER 0)."""
    running = failing_server(mode)
    client = open_handshake(raw_client, running, mode)
    hello = client_hello(client_context(certs))
    client.send(hello[: len(hello) // 2])
    time.sleep(0.05)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    check_failure_was_quiet(running, certs, mode, events, calls, smtpgate_log)


def test_failures_do_not_disturb_a_session_in_progress(failing_server, raw_client, certs, events, calls, smtpgate_log):
    """A client in the middle of a STARTTLS session keeps going while others fail their handshakes."""
    running = failing_server("starttls")
    with smtp(running.port) as good:
        good.starttls(context=client_context(certs))
        good.ehlo()
        for garbage in GARBAGE.values():
            bad = open_handshake(raw_client, running, "starttls")
            bad.send(garbage)
            assert bad.is_closed(timeout=10)
        assert good.noop()[0] == 250
        assert good.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}
    deadline = time.monotonic() + 10
    while len(events.errors) < len(GARBAGE) or len(calls.closed) < len(GARBAGE) + 1:
        assert time.monotonic() < deadline, (events.errors, calls.closed)
        time.sleep(0.01)
    assert len(events.errors) == len(GARBAGE)
    assert {session.remote_address for _, session in events.errors} == {"127.0.0.1"}
    assert len(calls.data) == 1
    failures = [r for r in smtpgate_log.records if "TLS handshake with 127.0.0.1 failed" in r.getMessage()]
    assert len(failures) == len(GARBAGE)
    assert "Traceback" not in smtpgate_log.text


def test_client_that_rejects_the_certificate(failing_server, certs, events, calls, smtpgate_log):
    """A real client whose verification fails (it trusts another CA) aborts with an alert:
    the server counts it like any failed handshake and smtplib sees an SSL error."""
    running = failing_server("starttls")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    certs.other_ca.configure_trust(context)
    with smtp(running.port) as client, pytest.raises(ssl.SSLCertVerificationError):
        client.starttls(context=context)
    error, _ = check_failure_was_quiet(running, certs, "starttls", events, calls, smtpgate_log)
    assert isinstance(error, ssl.SSLError)
    assert "UNKNOWN_CA" in (error.reason or "")

"""smtpgate's own TLS layer (asyncio's loops): endings, broken records, big bodies, and the
layer alone against an in-memory client for what sockets cannot force."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import subprocess
import threading
from typing import Any

import pytest
from tls_support import client_context, require_tool, starttls, tls_pair

from smtpgate.readbuffer import READ_BUFFER_SIZE
from smtpgate.tls import TLSOptions, build_context
from smtpgate.tlslayer import TLSLayer
from support import wait_until


def test_client_close_notify_ends_the_session_once(start_server, certs, mx, raw_client):
    closed: list[Any] = []
    running = start_server(**mx, on_close=closed.append)
    client = raw_client(running.port)
    starttls(client, client_context(certs))
    assert client.command("EHLO client.test")[0] == 250
    plain = client.sock.unwrap()  # our close_notify; returns once the server sent its own
    plain.close()
    wait_until(lambda: len(closed) == 1 and not running.server.connections)
    assert len(closed) == 1 and closed[0].secure


def test_quit_ends_with_close_notify(start_server, certs, mx, raw_client):
    running = start_server(**mx)
    client = raw_client(running.port)
    context = client_context(certs)
    starttls(client, context)
    assert client.command("EHLO client.test")[0] == 250
    client.sock.suppress_ragged_eofs = False  # a bare TCP close would raise SSLEOFError
    assert client.command("QUIT")[0] == 221
    assert client.sock.recv(100) == b""


def test_a_broken_record_closes_that_session_only(start_server, certs, mx, raw_client):
    running = start_server(**mx)
    context = client_context(certs)
    broken, intact = raw_client(running.port), raw_client(running.port)
    for client in (broken, intact):
        starttls(client, context)
        assert client.command("EHLO client.test")[0] == 250
    # An application-data record whose contents cannot be decrypted, on the socket under TLS.
    underneath = socket.socket(fileno=os.dup(broken.sock.fileno()))
    try:
        underneath.sendall(b"\x17\x03\x03\x00\x20" + os.urandom(32))
    finally:
        underneath.close()
    assert broken.is_closed(10)
    assert intact.command("NOOP")[0] == 250
    wait_until(lambda: len(running.server.connections) == 1)


def test_big_message_over_tls_arrives_byte_for_byte(start_server, certs, mx, raw_client):
    received: list[bytes] = []

    async def on_data(stream: Any, session: Any) -> None:
        received.append(await stream.read())

    running = start_server(**mx, on_data=on_data, size=0)
    client = raw_client(running.port)
    starttls(client, client_context(certs))
    assert client.command("EHLO client.test")[0] == 250
    lines = [b"%07d " % n + os.urandom(30).hex().encode() for n in range(60_000)]  # about 4.2 MiB
    body = b"Subject: big\r\n\r\n" + b"\r\n".join(lines) + b"\r\n"
    # Pipelined, then the whole body in one write: the server reads far more than one buffer.
    client.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
    assert [code for code, _ in client.replies(3)] == [250, 250, 354]
    client.send(body + b".\r\n")
    assert client.reply()[0] == 250
    assert received == [body]


# ----------------------------------------------------------------------------- the layer alone


class _Raw:
    """The plain transport under the layer: records what it is asked."""

    def __init__(self) -> None:
        self.sent = bytearray()
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.sent += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class _App:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.eof = 0
        self.lost: list[Exception | None] = []

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)

    def eof_received(self) -> bool:
        self.eof += 1
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.append(exc)

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass


def _server_context(certs: Any, **options: Any) -> ssl.SSLContext:
    return build_context(TLSOptions(**tls_pair(certs.server["mx.test"]), **options))


def _pair(certs: Any) -> tuple[TLSLayer, _Raw, _App, ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
    """A layer with a finished handshake, and the in-memory client talking to it."""
    loop = asyncio.new_event_loop()
    raw, app = _Raw(), _App()
    layer = TLSLayer(loop, raw, app, _server_context(certs))  # type: ignore[arg-type]
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context(certs).wrap_bio(to_client, to_server, server_hostname="mx.test")
    for _ in range(10):
        try:
            client.do_handshake()
            break
        except ssl.SSLWantReadError:
            pass
        layer.feed(to_server.read())
        to_client.write(bytes(raw.sent))
        raw.sent.clear()
    else:
        raise AssertionError("no handshake in 10 rounds")
    layer.feed(to_server.read())  # the client's Finished, when it came last
    to_client.write(bytes(raw.sent))
    raw.sent.clear()
    assert layer.handshake.done() and layer.handshake.exception() is None
    loop.close()
    return layer, raw, app, client, to_server, to_client


def test_layer_hands_on_many_records_in_buffer_sized_pieces(certs):
    layer, raw, app, client, to_server, _ = _pair(certs)
    plaintext = os.urandom(5 * READ_BUFFER_SIZE + 123)
    client.write(plaintext)
    layer.feed(to_server.read())  # every record in one call
    assert b"".join(app.chunks) == plaintext
    assert all(len(chunk) <= READ_BUFFER_SIZE for chunk in app.chunks)
    assert len(app.chunks) >= 5


def test_layer_replies_are_encrypted_and_close_sends_close_notify(certs):
    layer, raw, app, client, to_server, to_client = _pair(certs)
    layer.write(b"250 OK\r\n")
    to_client.write(bytes(raw.sent))
    raw.sent.clear()
    assert client.read(100) == b"250 OK\r\n"
    layer.close()
    assert raw.closed
    to_client.write(bytes(raw.sent))
    assert client.read(100) == b""  # close_notify
    layer.write(b"ignored once closing")
    assert raw.sent and b"ignored" not in raw.sent


def test_layer_client_close_notify_is_the_end_of_input(certs):
    layer, raw, app, client, to_server, _ = _pair(certs)
    client.write(b"QUIT\r\n")
    try:
        client.unwrap()
    except ssl.SSLWantReadError:
        pass
    layer.feed(to_server.read())
    assert app.chunks == [b"QUIT\r\n"]
    assert app.eof == 1 and raw.closed


def test_layer_garbage_after_the_handshake_aborts(certs):
    layer, raw, app, client, to_server, _ = _pair(certs)
    layer.feed(b"\x17\x03\x03\x00\x10" + bytes(16))
    assert raw.aborted and app.chunks == []
    layer.connection_lost(None)
    assert len(app.lost) == 1 and isinstance(app.lost[0], ssl.SSLError)


def test_layer_handshake_failure_is_the_futures_error(certs):
    loop = asyncio.new_event_loop()
    raw, app = _Raw(), _App()
    layer = TLSLayer(loop, raw, app, _server_context(certs))  # type: ignore[arg-type]
    layer.feed(b"EHLO not tls at all\r\n")
    assert isinstance(layer.handshake.exception(), ssl.SSLError)
    assert layer.is_closing()
    loop.close()


def test_layer_refused_handshake_sends_the_alert(certs):
    loop = asyncio.new_event_loop()
    raw, app = _Raw(), _App()
    layer = TLSLayer(loop, raw, app, _server_context(certs, min_version="TLSv1.3"))  # type: ignore[arg-type]
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context(certs, maximum_version=ssl.TLSVersion.TLSv1_2).wrap_bio(
        to_client, to_server, server_hostname="mx.test"
    )
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    layer.feed(to_server.read())
    assert isinstance(layer.handshake.exception(), ssl.SSLError)
    to_client.write(bytes(raw.sent))
    with pytest.raises(ssl.SSLError, match="VERSION"):
        client.do_handshake()
    loop.close()


# ----------------------------------------------------------------------------- openssl s_client


class _Interactive:
    """``openssl s_client`` driven line by line; its output collected by a thread."""

    def __init__(self, port: int, *args: str) -> None:
        command = [
            require_tool("openssl"),
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-starttls",
            "smtp",
            "-crlf",
            *args,
        ]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.output = b""
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        while chunk := self.process.stdout.read1(4096):
            with self._lock:
                self.output += chunk

    def count(self, text: bytes) -> int:
        with self._lock:
            return self.output.count(text)

    def say(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


def test_tls13_key_updates_mid_session(start_server, mx):
    running = start_server(**mx)
    client = _Interactive(running.port, "-tls1_3")
    try:
        wait_until(lambda: client.count(b"250 BINARYMIME") or client.count(b"250 ") >= 1, what="EHLO over TLS")
        for number, command in enumerate(("k", "K"), 1):  # a key update; one asking for the server's
            answered = client.count(b"250 2.0.0 OK")
            client.say(command)
            wait_until(lambda n=number: client.count(b"KEYUPDATE") >= n, what="KEYUPDATE")
            client.say("NOOP")
            wait_until(lambda a=answered: client.count(b"250 2.0.0 OK") > a, what="NOOP after the key update")
        client.say("quit")  # (a line starting with Q ends s_client itself)
        wait_until(lambda: client.count(b"221 "), what="221")
    finally:
        client.close()


def test_tls12_renegotiation_is_refused_and_the_server_serves_on(start_server, certs, mx, raw_client):
    running = start_server(**mx)
    client = _Interactive(running.port, "-tls1_2")
    try:
        wait_until(lambda: client.count(b"250 "), what="EHLO over TLS")
        client.say("R")  # s_client renegotiates; the server answers no_renegotiation
        wait_until(lambda: client.count(b"no renegotiation"), what="the no_renegotiation alert")
    finally:
        client.close()
    other = raw_client(running.port)
    starttls(other, client_context(certs))
    assert other.command("NOOP")[0] == 250
    wait_until(lambda: len(running.server.connections) == 1)

"""A short, invalid PROXY v1 line is refused as soon as it cannot be a header (at the
latest at its CRLF), not after proxy_timeout."""

from __future__ import annotations

import socket
import time

import pytest
from test_proxy_headers import read_from_socket

from smtpgate import ServerThread, SMTPServer
from smtpgate.proxy import ProxyError


@pytest.mark.parametrize("line", [b"PROXY BOGUS\r\n", b"PROXY \r\n", b"PROXY TCP4\r\n"])
def test_read_proxy_header_refuses_a_short_bad_line_at_once(line: bytes) -> None:
    started = time.monotonic()
    info, rest = read_from_socket(line + b"EHLO x\r\n")
    assert isinstance(info, ProxyError)
    assert time.monotonic() - started < 3  # read_from_socket would wait 5 s for more bytes
    assert b"EHLO x\r\n" in rest, "nothing after the line is read"


def test_server_closes_a_short_bad_proxy_line_without_waiting_for_the_timeout() -> None:
    server = SMTPServer(name="mx.test", disable_reverse_lookup=True, use_proxy="*", proxy_timeout=30)
    with ServerThread(server) as running:
        with socket.create_connection(("127.0.0.1", running.port), timeout=20) as sock:
            started = time.monotonic()
            sock.sendall(b"PROXY BOGUS\r\n")
            try:
                data = sock.recv(1024)
            except ConnectionResetError:  # closed with the rest of the line unread
                data = b""
            assert data == b""  # closed, no reply
            assert time.monotonic() - started < 10

"""use_proxy (and use_xclient/use_xforward) take "*" and a function deciding per peer."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from smtpgate import ServerThread, Session, SMTPServer


def _greeting_after(port: int, first: bytes) -> bytes:
    """Send ``first`` (a PROXY header, or nothing), then read the greeting (b"" if closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if first:
            sock.sendall(first)
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = sock.recv(1024)
            if not chunk:
                break
            data += chunk
        if data:
            sock.sendall(b"QUIT\r\n")
        return data


def _header_closes_the_connection(port: int) -> bool:
    """An untrusted peer: greeted, then cut off without a reply when it sends a header."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        greeting = sock.recv(1024)
        assert greeting.startswith(b"220 ")
        sock.sendall(HEADER + b"NOOP\r\n")
        rest = b""
        while chunk := sock.recv(1024):
            rest += chunk
        return rest == b""


HEADER = b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 25\r\n"


def _server(use_proxy: Any, seen: list[str]) -> SMTPServer:
    def on_connect(session: Session) -> None:
        seen.append(session.remote_address)

    return SMTPServer(name="mx.test", disable_reverse_lookup=True, use_proxy=use_proxy, on_connect=on_connect)


def test_use_proxy_star_trusts_everyone() -> None:
    seen: list[str] = []
    with ServerThread(_server("*", seen)) as running:
        assert _greeting_after(running.port, HEADER).startswith(b"220 ")
    assert seen == ["203.0.113.7"]


def test_use_proxy_function_decides_per_peer() -> None:
    asked: list[str] = []
    trusted = {"127.0.0.1": True}

    def decide(address: str) -> bool:
        asked.append(address)
        return trusted.get(address, False)

    seen: list[str] = []
    with ServerThread(_server(decide, seen)) as running:
        assert _greeting_after(running.port, HEADER).startswith(b"220 ")
        trusted["127.0.0.1"] = False  # now untrusted: plain SMTP, and a header is refused
        assert _greeting_after(running.port, b"").startswith(b"220 ")
        assert _header_closes_the_connection(running.port)
    assert asked[:2] == ["127.0.0.1", "127.0.0.1"]
    assert seen[:2] == ["203.0.113.7", "127.0.0.1"]


def test_a_failing_trust_function_trusts_no_one(caplog: pytest.LogCaptureFixture) -> None:
    def decide(address: str) -> bool:
        raise RuntimeError("lookup table unavailable")

    seen: list[str] = []
    with ServerThread(_server(decide, seen)) as running:
        assert _greeting_after(running.port, b"").startswith(b"220 ")
    assert seen == ["127.0.0.1"]
    assert "trust function failed for 127.0.0.1" in caplog.text


def test_use_xclient_star_and_function() -> None:
    for value in ("*", lambda address: address == "127.0.0.1"):
        server = SMTPServer(name="mx.test", use_xclient=value, use_xforward=value)
        assert "127.0.0.1" in server.xclient_trust and "127.0.0.1" in server.xforward_trust


@pytest.mark.parametrize("value", ["10.0.0.1", 5, "not-an-address-*"])
def test_other_strings_and_types_are_still_refused(value: Any) -> None:
    untyped: Any = SMTPServer
    with pytest.raises(TypeError, match="^option 'use_proxy' must be True, False, '\\*', a list"):
        untyped(use_proxy=value)

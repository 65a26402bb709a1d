"""The first steps of an SMTP dialogue on a RawClient: the greeting, EHLO, STARTTLS."""

from __future__ import annotations

import ssl
from typing import Any


def greet(client: Any, hello: str = "EHLO client.test") -> list[str]:
    """Read the 220 greeting, send ``hello`` (EHLO/LHLO/HELO); the lines of its 250 reply."""
    code, text = client.reply()
    assert code == 220, text
    code, text = client.command(hello)
    assert code == 250, text
    return str(text).split("\n")


def ehlo_lines(lines: list[str]) -> list[str]:
    """The extension lines of an EHLO reply (without the greeting line)."""
    return lines[1:]


def upgrade(client: Any, context: ssl.SSLContext, server_hostname: str | None = "mx.test") -> None:
    """Wrap a RawClient's socket in TLS (the handshake runs here, bounded by the socket's timeout)."""
    assert client.buffer == b"", f"plaintext left unread before the handshake: {client.buffer!r}"
    client.sock = context.wrap_socket(client.sock, server_hostname=server_hostname)


def starttls(client: Any, context: ssl.SSLContext, hello: str = "EHLO client.test") -> list[str]:
    """Greeting, ``hello``, STARTTLS, handshake, ``hello`` again: the lines of the reply inside TLS."""
    greet(client, hello)
    assert client.command("STARTTLS") == (220, "2.0.0 Ready to start TLS")
    upgrade(client, context)
    code, text = client.command(hello)
    assert code == 250, text
    return str(text).split("\n")

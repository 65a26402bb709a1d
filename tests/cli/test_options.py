"""TLS, PROXY protocol and timeout flags, end to end."""

from __future__ import annotations

import mailbox
import smtplib
import socket
import ssl

import pytest
from cli_support import MESSAGE


def _context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def test_implicit_tls(smtpgate_cli, tmp_path):
    command = smtpgate_cli("--implicit-tls")
    with smtplib.SMTP_SSL("127.0.0.1", command.port, context=_context(), timeout=10) as client:
        client.ehlo()
        assert not client.has_extn("starttls")
        assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}
    [stored] = list(mailbox.Maildir(tmp_path / "maildir", create=False))
    assert "with ESMTPS" in stored["Received"]


def test_require_tls_refuses_mail_before_starttls(smtpgate_cli):
    command = smtpgate_cli("--require-tls")
    with command.smtp() as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        assert refused.value.smtp_code == 530
        client.starttls(context=_context())
        assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}


def test_proxy_protocol_from_a_trusted_proxy(smtpgate_cli, tmp_path):
    command = smtpgate_cli("--proxy-protocol", "127.0.0.1", "--sink", "dir:eml")
    with socket.create_connection(("127.0.0.1", command.port), timeout=10) as sock:
        sock.sendall(b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 25\r\n")
        reader = sock.makefile("rb")

        def reply() -> bytes:
            while True:
                line = reader.readline()
                if line[3:4] != b"-":
                    return line

        assert reply().startswith(b"220")
        for line in (b"EHLO proxied.test", b"MAIL FROM:<a@example.com>", b"RCPT TO:<b@example.com>", b"DATA"):
            sock.sendall(line + b"\r\n")
            assert reply()[:1] in (b"2", b"3")
        sock.sendall(MESSAGE + b".\r\n")
        assert reply().startswith(b"250")
    [eml] = list((tmp_path / "eml").glob("*.eml"))
    assert b"[203.0.113.7]" in eml.read_bytes().split(b"\r\n\r\n")[0]


def test_idle_timeout(smtpgate_cli):
    command = smtpgate_cli("--timeout", "0.5")
    with socket.create_connection(("127.0.0.1", command.port), timeout=10) as sock:
        data = b""
        while True:
            chunk = sock.recv(1024)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"220") and b"421" in data

"""The EHLO/LHLO reply, line by line, in each state of a session, and what each hide_*
option removes; enhanced status codes in replies and their removal."""

from __future__ import annotations

import pytest
from ext_support import GREETING_LINE, send_data, transaction

from smtpgate import AuthResult
from support import greet, starttls

pytestmark = pytest.mark.timeout(30)

BASE = ["PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "DSN"]
TAIL = ["CHUNKING", "BINARYMIME"]


def accept_all(auth, session):
    return AuthResult(user=auth.username)


def test_ehlo_plain(server, raw_client):
    client = raw_client(server().port)
    assert greet(client) == [GREETING_LINE, *BASE, "STARTTLS", *TAIL]


def test_ehlo_plain_with_size(server, raw_client):
    client = raw_client(server(size=1048576).port)
    assert greet(client) == [GREETING_LINE, *BASE, "STARTTLS", "SIZE 1048576", *TAIL]


def test_ehlo_plain_with_insecure_auth(server, raw_client):
    client = raw_client(server(on_auth=accept_all, allow_insecure_auth=True, size=500).port)
    assert greet(client) == [GREETING_LINE, *BASE, "AUTH PLAIN LOGIN", "STARTTLS", "SIZE 500", *TAIL]


def test_ehlo_inside_tls(server, raw_client, tls_client):
    client = raw_client(server(on_auth=accept_all, size=500).port)
    assert starttls(client, tls_client) == [
        GREETING_LINE,
        *BASE,
        "AUTH PLAIN LOGIN",
        "REQUIRETLS",
        "SIZE 500",
        *TAIL,
    ]


def test_ehlo_inside_implicit_tls(server, raw_client, tls_client):
    client = raw_client(server(secure=True).port)
    client.sock = tls_client.wrap_socket(client.sock, server_hostname="mx.test")
    assert greet(client) == [GREETING_LINE, *BASE, "REQUIRETLS", *TAIL]


def test_ehlo_after_authentication(server, raw_client, tls_client):
    client = raw_client(server(on_auth=accept_all, auth_methods=["PLAIN", "XOAUTH2"]).port)
    assert "AUTH PLAIN XOAUTH2" in starttls(client, tls_client)
    assert client.command("AUTH PLAIN AHUAcA==") == (235, "2.7.0 Authentication successful")
    code, text = client.command("EHLO client.test")
    assert (code, text.split("\n")) == (250, [GREETING_LINE, *BASE, "REQUIRETLS", *TAIL])


def test_lhlo_in_lmtp(server, raw_client):
    client = raw_client(server(lmtp=True).port)
    assert client.reply() == (220, "mx.test LMTP")
    code, text = client.command("LHLO client.test")
    assert (code, text.split("\n")) == (250, [GREETING_LINE, *BASE, "STARTTLS", *TAIL])


def test_helo_lists_no_extensions(server, raw_client):
    client = raw_client(server().port)
    assert greet(client, "HELO client.test") == [GREETING_LINE]


def test_every_extension_hidden(server, raw_client, tls_client):
    options = {
        "hide_pipelining": True,
        "hide_8bitmime": True,
        "hide_smtputf8": True,
        "hide_enhancedstatuscodes": True,
        "hide_dsn": True,
        "hide_requiretls": True,
        "hide_chunking": True,
    }
    running = server(size=100, hide_size=True, **options)
    client = raw_client(running.port)
    assert greet(client) == [GREETING_LINE, "STARTTLS", "SIZE"]
    assert client.command("STARTTLS") == (220, "Ready to start TLS")
    client.sock = tls_client.wrap_socket(client.sock, server_hostname="mx.test")
    code, text = client.command("EHLO client.test")
    assert (code, text.split("\n")) == (250, [GREETING_LINE, "SIZE"])


@pytest.mark.parametrize(
    ("option", "keyword"),
    [
        ("hide_pipelining", "PIPELINING"),
        ("hide_8bitmime", "8BITMIME"),
        ("hide_smtputf8", "SMTPUTF8"),
        ("hide_enhancedstatuscodes", "ENHANCEDSTATUSCODES"),
        ("hide_dsn", "DSN"),
        ("hide_starttls", "STARTTLS"),
        ("hide_chunking", "CHUNKING"),
    ],
)
def test_each_hide_option_removes_its_keyword(server, raw_client, option, keyword):
    client = raw_client(server(**{option: True}).port)
    lines = greet(client)
    assert keyword not in lines
    expected = [line for line in [GREETING_LINE, *BASE, "STARTTLS", *TAIL] if line != keyword]
    if keyword == "CHUNKING":
        expected.remove("BINARYMIME")
    assert lines == expected


def test_enhanced_status_codes_in_replies_by_default(server, raw_client, mailbox):
    client = raw_client(server().port)
    greet(client)
    assert client.command("NOOP") == (250, "2.0.0 OK")
    assert client.command("MAIL FROM:<a@example.com> FOO=1") == (555, "5.5.4 Error: unsupported parameter FOO")
    transaction(client)
    assert send_data(client) == (250, "2.6.0 OK: message queued")
    assert client.command("RSET") == (250, "2.0.0 Flushed")
    assert client.command("BOGUS") == (500, "5.5.2 Error: command not recognized")
    assert client.command("QUIT") == (221, "2.0.0 Bye")


def test_hide_enhancedstatuscodes_drops_them_from_replies(server, raw_client, mailbox):
    client = raw_client(server(hide_enhancedstatuscodes=True, size=10).port)
    assert "ENHANCEDSTATUSCODES" not in greet(client)
    assert client.command("NOOP") == (250, "OK")
    assert client.command("MAIL FROM:<a@example.com> FOO=1") == (555, "Error: unsupported parameter FOO")
    assert client.command("MAIL FROM:<a@example.com> SIZE=11") == (
        552,
        "Error: message exceeds fixed maximum message size 10",
    )
    assert client.command("MAIL FROM:<a@example.com>") == (250, "Accepted")
    assert client.command("RCPT TO:<b@example.com>") == (250, "Accepted")
    assert send_data(client, b"12345678901234567890\r\n") == (
        552,
        "Error: message exceeds fixed maximum message size 10",
    )
    assert client.command("BOGUS") == (500, "Error: command not recognized")
    assert client.command("STARTTLS") == (220, "Ready to start TLS")


def test_hide_enhancedstatuscodes_also_drops_codes_handlers_give(server, raw_client):
    from smtpgate import SMTPError

    def on_rcpt_to(address, session):
        raise SMTPError(550, "5.1.1 No such user")

    client = raw_client(server(hide_enhancedstatuscodes=True, on_rcpt_to=on_rcpt_to).port)
    greet(client)
    assert client.command("MAIL FROM:<a@example.com>") == (250, "Accepted")
    assert client.command("RCPT TO:<b@example.com>") == (550, "No such user")

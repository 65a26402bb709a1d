"""A real server on 127.0.0.1: greeting, EHLO capabilities, the plain commands, with smtplib
where a user would use it and a raw socket for everything else."""

from __future__ import annotations

import smtplib

import pytest
from server_support import ehlo


def test_greeting_has_name_esmtp_and_banner(start_server, raw_client):
    running = start_server(banner="Ready when you are")
    client = raw_client(running.port)
    assert client.reply() == (220, "mx.test ESMTP Ready when you are")


def test_greeting_without_banner(start_server, raw_client):
    running = start_server()
    assert raw_client(running.port).read_line() == b"220 mx.test ESMTP"


def test_smtplib_ehlo_features(start_server):
    running = start_server(size=2048)
    with smtplib.SMTP(running.host, running.port, timeout=10) as client:
        code, text = client.ehlo("client.test")
        assert code == 250
        assert text.split(b"\n")[0] == b"mx.test Nice to meet you, [127.0.0.1]"
        features = client.esmtp_features
    for keyword in ("pipelining", "8bitmime", "smtputf8", "enhancedstatuscodes"):
        assert keyword in features
    assert features["size"] == "2048"


@pytest.mark.parametrize(
    ("option", "keyword"),
    [
        ("hide_pipelining", "pipelining"),
        ("hide_8bitmime", "8bitmime"),
        ("hide_smtputf8", "smtputf8"),
        ("hide_enhancedstatuscodes", "enhancedstatuscodes"),
    ],
)
def test_hide_options(start_server, option, keyword):
    running = start_server(**{option: True})
    with smtplib.SMTP(running.host, running.port, timeout=10) as client:
        client.ehlo("client.test")
        assert keyword not in client.esmtp_features
        assert "size" not in client.esmtp_features  # no size option: not advertised
        others = {"pipelining", "8bitmime", "smtputf8", "enhancedstatuscodes"} - {keyword}
        assert others <= set(client.esmtp_features)


def test_hide_size_advertises_bare_size(start_server):
    running = start_server(size=4096, hide_size=True)
    with smtplib.SMTP(running.host, running.port, timeout=10) as client:
        client.ehlo("client.test")
        assert client.esmtp_features["size"] == ""


def test_helo_is_plain_smtp(start_server, raw_client, received):
    running = start_server(on_data=received.on_data)
    client = raw_client(running.port)
    client.reply()
    assert client.command("HELO client.test") == (250, "mx.test Nice to meet you, [127.0.0.1]")
    assert client.command("MAIL FROM:<a@example.com>")[0] == 250
    assert client.command("RCPT TO:<b@example.com>")[0] == 250
    assert client.command("DATA")[0] == 354
    assert client.command("x\r\n.")[0] == 250
    received.wait_for(1)
    session = received.messages[0][3]
    assert session.transmission_type == "SMTP"
    assert session.host_name_appears_as == "client.test"


def test_smtplib_plain_commands(start_server):
    running = start_server()
    with smtplib.SMTP(running.host, running.port, timeout=10) as client:
        client.ehlo("client.test")
        assert client.noop() == (250, b"2.0.0 OK")
        assert client.rset() == (250, b"2.0.0 Flushed")
        assert client.verify("someone") == (
            252,
            b"2.1.5 Cannot VRFY user, but will accept message and attempt delivery",
        )
        assert client.docmd("HELP") == (214, b"2.0.0 See https://www.rfc-editor.org/rfc/rfc5321 for details")
        assert client.docmd("EXPN", "list")[0] == 502
        assert client.docmd("FOO") == (500, b"5.5.2 Error: command not recognized")
        assert client.docmd("VRFY") == (501, b"5.5.4 Error: syntax: VRFY address")
        assert client.docmd("RCPT", "TO:<b@example.com>") == (503, b"5.5.1 Error: need MAIL command")
        assert client.docmd("DATA") == (503, b"5.5.1 Error: need MAIL command")
        assert client.docmd("MAIL", "FROM:a@example.com")[0] == 501
        assert client.docmd("MAIL", "FROM:<a@example.com>") == (250, b"2.1.0 Accepted")
        assert client.docmd("MAIL", "FROM:<a@example.com>") == (503, b"5.5.1 Error: nested MAIL command")
        assert client.docmd("DATA") == (503, b"5.5.1 Error: need RCPT command")
        assert client.quit()[0] == 221


def test_mail_before_helo_is_503(start_server, raw_client):
    running = start_server()
    client = raw_client(running.port)
    client.reply()
    assert client.command("MAIL FROM:<a@example.com>") == (503, "5.5.1 Error: send HELO/EHLO first")
    assert client.command("NOOP") == (250, "2.0.0 OK")  # allowed before HELO


def test_quit_closes_the_connection(start_server, raw_client):
    running = start_server()
    client = raw_client(running.port)
    client.reply()
    assert client.command("QUIT") == (221, "2.0.0 Bye")
    assert client.is_closed()


def test_commands_are_case_insensitive(smtpgate_server, raw_client):
    client = raw_client(smtpgate_server.port)
    client.reply()
    assert client.command("ehlo client.test")[0] == 250
    assert client.command("mAiL fRoM:<a@example.com>")[0] == 250
    assert client.command("rcpt to:<b@example.com>")[0] == 250
    assert client.command("data")[0] == 354
    assert client.command("lower case\r\n.")[0] == 250
    assert client.command("Noop") == (250, "2.0.0 OK")
    assert client.command("qUIT")[0] == 221
    [message] = smtpgate_server.wait_for(1)
    assert (message.mail_from, message.rcpt_to, message.raw) == ("a@example.com", ["b@example.com"], b"lower case\r\n")


def test_disabled_commands_answer_as_unknown(start_server, raw_client):
    running = start_server(disabled_commands=["vrfy", " help "])
    client = raw_client(running.port)
    ehlo(client)
    assert client.command("VRFY someone") == (500, "5.5.2 Error: command not recognized")
    assert client.command("HELP") == (500, "5.5.2 Error: command not recognized")
    assert client.command("NOOP")[0] == 250


def test_disabled_starttls_is_not_advertised(start_server):
    running = start_server(disabled_commands=["STARTTLS"])
    with smtplib.SMTP(running.host, running.port, timeout=10) as client:
        client.ehlo("client.test")
        assert "starttls" not in client.esmtp_features
        assert client.docmd("STARTTLS")[0] == 500


def test_hidden_enhanced_codes_are_not_sent(start_server, raw_client):
    running = start_server(hide_enhancedstatuscodes=True)
    client = raw_client(running.port)
    ehlo(client)
    assert client.command("NOOP") == (250, "OK")
    assert client.command("RCPT TO:<b@example.com>") == (503, "Error: need MAIL command")


def test_session_addresses_on_ipv4(start_server, received):
    running = start_server(on_data=received.on_data)
    with smtplib.SMTP(running.host, running.port, timeout=10) as client:
        local_port = client.sock.getsockname()[1]
        client.sendmail("a@example.com", ["b@example.com"], b"x\r\n")
    received.wait_for(1)
    session = received.messages[0][3]
    assert session.remote_address == "127.0.0.1"
    assert session.remote_port == local_port
    assert session.local_address == "127.0.0.1"
    assert session.local_port == running.port
    assert session.client_hostname == "[127.0.0.1]"
    assert len(session.id) == 16


def test_helo_response_with_other_braces(start_server, raw_client):
    from smtpgate import SMTPServer

    try:
        SMTPServer(name="mx.test", helo_response="Hello {friend}")
    except ValueError:
        return  # refusing the option at construction is a fine answer too
    running = start_server(helo_response="Hello {friend}")
    client = raw_client(running.port)
    client.reply()
    assert client.command("EHLO client.test")[0] == 250


def test_helo_response_template_with_percent_s(start_server, raw_client):
    running = start_server(helo_response="%s greets %s, %s")
    client = raw_client(running.port)
    client.reply()
    assert client.command("HELO c") == (250, "mx.test greets [127.0.0.1], ")

"""MAIL FROM / RCPT TO over a real connection: limits, special addresses, SIZE."""

from __future__ import annotations

import smtplib

import pytest
from server_support import ehlo

from support import Recorder


@pytest.mark.smtpgate(max_recipients=2)
def test_max_recipients_is_452_and_duplicates_do_not_count(smtpgate_server, raw_client):
    client = raw_client(smtpgate_server.port)
    ehlo(client)
    assert client.command("MAIL FROM:<a@example.com>")[0] == 250
    assert client.command("RCPT TO:<one@example.com>")[0] == 250
    assert client.command("RCPT TO:<two@example.com>")[0] == 250
    assert client.command("RCPT TO:<three@example.com>") == (452, "4.5.3 Error: too many recipients")
    assert client.command("RCPT TO:<one@example.com>")[0] == 250
    assert client.command("DATA")[0] == 354
    assert client.command("x\r\n.")[0] == 250
    [message] = smtpgate_server.wait_for(1)
    assert message.rcpt_to == ["one@example.com", "two@example.com"]


@pytest.mark.smtpgate(max_recipients=1)
def test_smtplib_sees_too_many_recipients_as_refused(smtpgate_server):
    with smtplib.SMTP(*smtpgate_server.address, timeout=10) as client:
        refused = client.sendmail("a@example.com", ["b@example.com", "c@example.com"], b"x\r\n")
    assert refused == {"c@example.com": (452, b"4.5.3 Error: too many recipients")}
    [message] = smtpgate_server.wait_for(1)
    assert message.rcpt_to == ["b@example.com"]


def test_duplicate_rcpt_is_not_added_twice(smtpgate_server_factory):
    rcpts = Recorder()

    def on_rcpt_to(address, session):
        rcpts.add(address.address)

    server = smtpgate_server_factory(on_rcpt_to=on_rcpt_to)
    with smtplib.SMTP(*server.address, timeout=10) as client:
        client.sendmail("a@example.com", ["b@example.com", "b@example.com", "B@Example.COM"], b"x\r\n")
    [message] = server.wait_for(1)
    assert len(message.rcpt_to) == 1
    assert rcpts.items == ["b@example.com", "b@example.com", "B@Example.COM"]  # the handler saw each


def test_null_sender(smtpgate_server):
    with smtplib.SMTP(*smtpgate_server.address, timeout=10) as client:
        client.sendmail("<>", ["b@example.com"], b"Subject: bounce\r\n\r\nx\r\n")
    [message] = smtpgate_server.wait_for(1)
    assert message.mail_from == ""


@pytest.mark.parametrize("address", ['"john doe"@example.com', '"a>b"@example.com', '"x\\"y"@example.com'])
def test_quoted_local_parts(smtpgate_server, raw_client, address):
    client = raw_client(smtpgate_server.port)
    ehlo(client)
    assert client.command(f"MAIL FROM:<{address}>")[0] == 250
    assert client.command(f"RCPT TO:<{address}>")[0] == 250
    assert client.command("DATA")[0] == 354
    assert client.command("x\r\n.")[0] == 250
    [message] = smtpgate_server.wait_for(1)
    assert (message.mail_from, message.rcpt_to) == (address, [address])


def test_smtputf8_addresses_with_smtplib(start_server, received):
    flags = Recorder()

    async def on_data(stream, session):
        flags.add(session.envelope.smtp_utf8)
        await received.on_data(stream, session)

    running = start_server(on_data=on_data)
    with smtplib.SMTP(running.host, running.port, timeout=10) as client:
        client.ehlo("client.test")
        assert client.has_extn("smtputf8")
        refused = client.sendmail(
            "jösé@exämple.com", ["用户@例子.广告"], "Subject: ü\r\n\r\nñ\r\n".encode(), mail_options=["SMTPUTF8"]
        )
    assert refused == {}
    received.wait_for(1)
    mail_from, rcpts, body, _ = received.messages[0]
    assert (mail_from, rcpts) == ("jösé@exämple.com", ["用户@例子.广告"])
    assert body == "Subject: ü\r\n\r\nñ\r\n".encode()
    assert flags.items == [True]


def test_utf8_address_without_smtputf8_is_refused(start_server, raw_client):
    running = start_server()
    client = raw_client(running.port)
    ehlo(client)
    assert client.command("MAIL FROM:<jösé@example.com>")[0] == 553
    assert client.command("MAIL FROM:<a@example.com>")[0] == 250
    assert client.command("RCPT TO:<jösé@example.com>")[0] == 553


def test_source_routes_are_ignored(smtpgate_server, raw_client):
    client = raw_client(smtpgate_server.port)
    ehlo(client)
    assert client.command("MAIL FROM:<@relay.example:a@example.com>")[0] == 250
    assert client.command("RCPT TO:<@one.example,@two.example:b@example.com>")[0] == 250
    assert client.command("DATA")[0] == 354
    assert client.command("x\r\n.")[0] == 250
    [message] = smtpgate_server.wait_for(1)
    assert (message.mail_from, message.rcpt_to) == ("a@example.com", ["b@example.com"])


@pytest.mark.parametrize(
    "line",
    [
        "MAIL FROM:a@example.com",
        "MAIL FROM:<a@example.com",
        "MAIL FROM:<a b@example.com>",
        "MAIL FROM:<a@@example.com>",
        "MAIL FROM:<a@example.com>x",
        "MAIL TO:<a@example.com>",
        "MAIL",
    ],
)
def test_bad_sender_syntax_is_501(start_server, raw_client, line):
    running = start_server()
    client = raw_client(running.port)
    ehlo(client)
    code, text = client.command(line)
    assert code == 501
    assert text.startswith("5.")
    assert client.command("MAIL FROM:<a@example.com>")[0] == 250  # no transaction was started


@pytest.mark.parametrize("line", ["RCPT TO:b@example.com", "RCPT TO:<>", "RCPT TO:<b@exa mple.com>", "RCPT"])
def test_bad_recipient_syntax_is_501(start_server, raw_client, line):
    running = start_server()
    client = raw_client(running.port)
    ehlo(client)
    client.command("MAIL FROM:<a@example.com>")
    code, text = client.command(line)
    assert code == 501
    assert text.startswith("5.1.3")


def test_size_over_limit_is_552_at_mail(start_server, raw_client):
    running = start_server(size=1000)
    client = raw_client(running.port)
    ehlo(client)
    assert client.command("MAIL FROM:<a@example.com> SIZE=1001") == (
        552,
        "5.3.4 Error: message exceeds fixed maximum message size 1000",
    )
    assert client.command("MAIL FROM:<a@example.com> SIZE=1000")[0] == 250


@pytest.mark.smtpgate(size=100)
def test_smtplib_sends_size_and_is_refused(smtpgate_server):
    with smtplib.SMTP(*smtpgate_server.address, timeout=10) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("a@example.com", ["b@example.com"], b"x" * 500 + b"\r\n")
    assert refused.value.smtp_code == 552
    assert smtpgate_server.messages == []


def test_unknown_parameter_is_555(start_server, raw_client):
    running = start_server()
    client = raw_client(running.port)
    ehlo(client)
    assert client.command("MAIL FROM:<a@example.com> FOO=BAR") == (555, "5.5.4 Error: unsupported parameter FOO")


def test_parameters_reach_the_handler(start_server, raw_client):
    seen = Recorder()

    def on_mail_from(address, session):
        seen.add((address.address, dict(address.args), session.envelope.body_type))

    running = start_server(on_mail_from=on_mail_from)
    client = raw_client(running.port)
    ehlo(client)
    assert client.command("MAIL FROM:<a@example.com> BODY=8BITMIME SIZE=10")[0] == 250
    assert seen.items == [("a@example.com", {"BODY": "8BITMIME", "SIZE": "10"}, "8bitmime")]

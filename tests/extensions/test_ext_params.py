"""MAIL and RCPT parameters: SIZE, BODY (8BITMIME), SMTPUTF8, DSN, REQUIRETLS, unknown
and duplicate parameters, with raw exchanges and smtplib's mail_options/rcpt_options."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage

import pytest
from ext_support import send_data, transaction

from smtpgate import AuthResult, MessageTooLarge
from support import greet, starttls

pytestmark = pytest.mark.timeout(30)

ACCEPTED_MAIL = (250, "2.1.0 Accepted")
ACCEPTED_RCPT = (250, "2.1.5 Accepted")
GREEK = "δ@παράδειγμα.δοκιμή"


@pytest.fixture
def client(server, raw_client):
    """A greeted raw client on a default server."""
    connection = raw_client(server().port)
    greet(connection)
    return connection


# ----------------------------------------------------------------- SIZE


def test_size_is_checked_at_mail(server, raw_client):
    client = raw_client(server(size=1000).port)
    assert "SIZE 1000" in greet(client)
    too_big = (552, "5.3.4 Error: message exceeds fixed maximum message size 1000")
    assert client.command("MAIL FROM:<a@example.com> SIZE=1001") == too_big
    assert client.command("MAIL FROM:<a@example.com> SIZE=99999999999999999999") == too_big
    assert client.command("MAIL FROM:<a@example.com> SIZE=1000") == ACCEPTED_MAIL


@pytest.mark.parametrize("param", ["SIZE=abc", "SIZE", "SIZE=-1", "SIZE=1e3", "SIZE=123456789012345678901"])
def test_size_syntax(server, raw_client, param):
    client = raw_client(server(size=1000).port)
    greet(client)
    assert client.command(f"MAIL FROM:<a@example.com> {param}") == (501, "5.5.4 Error: bad message size syntax")


def test_size_without_a_limit_is_not_advertised_and_any_size_is_accepted(client):
    assert client.command("MAIL FROM:<a@example.com> SIZE=99999999999") == ACCEPTED_MAIL


def test_hide_size_advertises_no_number_and_checks_only_the_body(server, raw_client, mailbox):
    client = raw_client(server(size=10, hide_size=True).port)
    assert "SIZE" in greet(client)
    assert client.command("MAIL FROM:<a@example.com> SIZE=5000") == ACCEPTED_MAIL
    assert client.command("RCPT TO:<b@example.com>") == ACCEPTED_RCPT
    assert send_data(client, b"0123456789ABCDEF\r\n") == (
        552,
        "5.3.4 Error: message exceeds fixed maximum message size 10",
    )


def test_smtplib_declares_the_size_and_is_refused_at_mail(server, mailbox):
    running = server(size=100)
    with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
        client.ehlo()
        assert client.esmtp_features["size"] == "100"
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail("a@example.com", ["b@example.com"], b"x" * 200)
        assert refused.value.smtp_code == 552
        assert client.sendmail("a@example.com", ["b@example.com"], b"small\r\n") == {}
    [message] = mailbox.wait_for(1)
    assert message["envelope"].mail_from.args == {"SIZE": "7"}


def test_body_over_the_limit_without_size_param(server, raw_client, mailbox):
    client = raw_client(server(size=10).port)
    greet(client)
    transaction(client)
    assert send_data(client, b"0123456789ABCDEF\r\n") == (
        552,
        "5.3.4 Error: message exceeds fixed maximum message size 10",
    )
    [message] = mailbox.wait_for(1)
    assert message["size_exceeded"] is True
    assert isinstance(message["refused"], MessageTooLarge)
    assert message["byte_length"] == 18
    assert message["body"] == b"0123456789"


# ----------------------------------------------------------------- 8BITMIME


@pytest.mark.parametrize(
    ("param", "body_type"),
    [("", "7bit"), ("BODY=7BIT", "7bit"), ("BODY=8BITMIME", "8bitmime"), ("body=8bitmime", "8bitmime")],
)
def test_body_parameter_sets_the_body_type(client, mailbox, param, body_type):
    transaction(client, f"MAIL FROM:<a@example.com> {param}".strip())
    assert send_data(client, "Subject: caf\u00e9\r\n\r\nna\u00efve\r\n".encode()) == (
        250,
        "2.6.0 OK: message queued",
    )
    [message] = mailbox.wait_for(1)
    assert message["envelope"].body_type == body_type
    assert message["body"] == "Subject: caf\u00e9\r\n\r\nna\u00efve\r\n".encode()


@pytest.mark.parametrize("param", ["BODY=9BIT", "BODY", "BODY=", "BODY=8BIT"])
def test_other_body_values_are_refused(client, param):
    assert client.command(f"MAIL FROM:<a@example.com> {param}") == (
        501,
        "5.5.4 Error: BODY parameter must be 7BIT or 8BITMIME or BINARYMIME",
    )


def test_binarymime_is_not_a_body_value_without_chunking(server, raw_client):
    client = raw_client(server(hide_chunking=True).port)
    greet(client)
    assert client.command("MAIL FROM:<a@example.com> BODY=BINARYMIME") == (
        501,
        "5.5.4 Error: BODY parameter must be 7BIT or 8BITMIME",
    )


def test_smtplib_mail_options_body_8bitmime(server, mailbox):
    running = server()
    body = "Subject: 8bit\r\n\r\n\u00fcber\r\n".encode()
    with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
        assert client.sendmail("a@example.com", ["b@example.com"], body, mail_options=["BODY=8BITMIME"]) == {}
    [message] = mailbox.wait_for(1)
    assert message["envelope"].body_type == "8bitmime"
    assert message["body"] == body


# ----------------------------------------------------------------- SMTPUTF8


def test_utf8_sender_needs_smtputf8(client, mailbox):
    assert client.command("MAIL FROM:<j\u00f6rg@example.com>") == (
        553,
        "5.6.7 Error: non-ASCII address needs the SMTPUTF8 parameter",
    )
    transaction(
        client,
        "MAIL FROM:<j\u00f6rg@example.com> SMTPUTF8",
        f"RCPT TO:<{GREEK}>",
    )
    assert send_data(client)[0] == 250
    [message] = mailbox.wait_for(1)
    envelope = message["envelope"]
    assert envelope.smtp_utf8 is True
    assert envelope.mail_from.address == "j\u00f6rg@example.com"
    assert envelope.rcpt_to[0].address == GREEK


def test_utf8_recipient_needs_smtputf8_on_mail(client, mailbox):
    assert client.command("MAIL FROM:<a@example.com>") == ACCEPTED_MAIL
    assert client.command("RCPT TO:<m\u00fcller@example.com>") == (
        553,
        "5.6.7 Error: non-ASCII address needs the SMTPUTF8 parameter on MAIL",
    )
    assert client.command("RCPT TO:<b@example.com>") == ACCEPTED_RCPT
    assert send_data(client)[0] == 250
    assert mailbox.wait_for(1)[0]["envelope"].smtp_utf8 is False


def test_smtputf8_takes_no_value(client):
    assert client.command("MAIL FROM:<a@example.com> SMTPUTF8=yes") == (
        501,
        "5.5.4 Error: SMTPUTF8 parameter does not take a value",
    )


def test_smtplib_send_message_uses_smtputf8_by_itself(server, mailbox):
    running = server()
    message = EmailMessage()
    message["From"] = "J\u00f6rg <j\u00f6rg@b\u00fccher.example>"
    message["To"] = "\u7528\u6237@\u4f8b\u5b50.\u6d4b\u8bd5"
    message["Subject"] = "Gr\u00fc\u00dfe"
    message.set_content("Hallo \u00fcberall")
    with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
        assert client.send_message(message) == {}
    [stored] = mailbox.wait_for(1)
    envelope = stored["envelope"]
    assert envelope.smtp_utf8 is True
    assert envelope.body_type == "8bitmime"
    assert envelope.mail_from.args == {"SMTPUTF8": True, "BODY": "8BITMIME"}
    assert envelope.mail_from.address == "j\u00f6rg@b\u00fccher.example"
    assert [r.address for r in envelope.rcpt_to] == ["\u7528\u6237@\u4f8b\u5b50.\u6d4b\u8bd5"]
    assert "Hallo \u00fcberall".encode() in stored["body"]


def test_smtplib_sendmail_with_smtputf8_mail_option(server, mailbox):
    running = server()
    with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
        refused = client.sendmail(
            "\u00e9lodie@example.com", ["z\u00f6e@example.com"], b"Subject: x\r\n\r\nx\r\n", mail_options=["SMTPUTF8"]
        )
    assert refused == {}
    envelope = mailbox.wait_for(1)[0]["envelope"]
    assert (envelope.smtp_utf8, envelope.mail_from.address) == (True, "\u00e9lodie@example.com")


def test_smtplib_refuses_smtputf8_when_the_server_hides_it(server, mailbox):
    running = server(hide_smtputf8=True)
    message = EmailMessage()
    message["From"] = "j\u00f6rg@example.com"
    message["To"] = "b@example.com"
    message.set_content("x")
    with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
        with pytest.raises(smtplib.SMTPNotSupportedError):
            client.send_message(message)
    assert mailbox.messages == []


# ----------------------------------------------------------------- DSN


def test_dsn_parameters_are_decoded_into_envelope_and_address(client, mailbox):
    transaction(
        client,
        "MAIL FROM:<a@example.com> RET=HDRS ENVID=QQ+2B314+3Dx",
        "RCPT TO:<b@example.com> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;b+2Bdsn@example.com",
        "RCPT TO:<c@example.com> NOTIFY=NEVER",
        "RCPT TO:<d@example.com>",
    )
    assert send_data(client)[0] == 250
    envelope = mailbox.wait_for(1)[0]["envelope"]
    assert envelope.dsn == {"ret": "HDRS", "envid": "QQ+314=x"}
    assert [r.dsn for r in envelope.rcpt_to] == [
        {"notify": ["SUCCESS", "DELAY"], "orcpt": "rfc822;b+dsn@example.com"},
        {"notify": ["NEVER"], "orcpt": None},
        {"notify": None, "orcpt": None},
    ]


def test_dsn_values_are_case_insensitive(client, mailbox):
    transaction(client, "MAIL FROM:<a@example.com> ret=full", "RCPT TO:<b@example.com> notify=failure")
    assert send_data(client)[0] == 250
    envelope = mailbox.wait_for(1)[0]["envelope"]
    assert envelope.dsn == {"ret": "FULL", "envid": None}
    assert envelope.rcpt_to[0].dsn == {"notify": ["FAILURE"], "orcpt": None}


@pytest.mark.parametrize(
    ("param", "text"),
    [
        ("RET=BAD", "Error: RET parameter must be FULL or HDRS"),
        ("RET", "Error: RET parameter must be FULL or HDRS"),
        ("ENVID", "Error: ENVID parameter needs a value of at most 100 characters"),
        ("ENVID=" + "x" * 101, "Error: ENVID parameter needs a value of at most 100 characters"),
    ],
)
def test_bad_dsn_mail_parameters(client, param, text):
    assert client.command(f"MAIL FROM:<a@example.com> {param}") == (501, f"5.5.4 {text}")


@pytest.mark.parametrize(
    ("param", "text"),
    [
        ("NOTIFY=BOGUS", "Error: NOTIFY parameter must be NEVER, SUCCESS, FAILURE, or DELAY"),
        ("NOTIFY", "Error: NOTIFY parameter must be NEVER, SUCCESS, FAILURE, or DELAY"),
        ("NOTIFY=SUCCESS,SUCCESS", "Error: NOTIFY parameter must be NEVER, SUCCESS, FAILURE, or DELAY"),
        ("NOTIFY=NEVER,FAILURE", "Error: NOTIFY=NEVER cannot be combined with other values"),
        ("ORCPT=rfc822", "Error: bad ORCPT parameter syntax, expected type;address"),
        ("ORCPT", "Error: bad ORCPT parameter syntax, expected type;address"),
        ("ORCPT=;b@example.com", "Error: bad ORCPT parameter syntax, expected type;address"),
    ],
)
def test_bad_dsn_rcpt_parameters(client, param, text):
    assert client.command("MAIL FROM:<a@example.com>") == ACCEPTED_MAIL
    assert client.command(f"RCPT TO:<b@example.com> {param}") == (501, f"5.5.4 {text}")


def test_hide_dsn_refuses_the_parameters(server, raw_client, mailbox):
    client = raw_client(server(hide_dsn=True).port)
    assert "DSN" not in greet(client)
    for param in ("RET=FULL", "ENVID=x"):
        assert client.command(f"MAIL FROM:<a@example.com> {param}") == (
            555,
            f"5.5.4 Error: unsupported parameter {param.split('=')[0]}",
        )
    assert client.command("MAIL FROM:<a@example.com>") == ACCEPTED_MAIL
    for param in ("NOTIFY=NEVER", "ORCPT=rfc822;b@example.com"):
        assert client.command(f"RCPT TO:<b@example.com> {param}") == (
            555,
            f"5.5.4 Error: unsupported parameter {param.split('=')[0]}",
        )
    assert client.command("RCPT TO:<b@example.com>") == ACCEPTED_RCPT
    assert send_data(client)[0] == 250
    envelope = mailbox.wait_for(1)[0]["envelope"]
    assert envelope.dsn is None
    assert envelope.rcpt_to[0].dsn is None


def test_smtplib_dsn_options(server, mailbox):
    running = server()
    with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
        client.ehlo()
        assert client.has_extn("dsn")
        refused = client.sendmail(
            "a@example.com",
            ["b@example.com", "c@example.com"],
            b"Subject: dsn\r\n\r\nx\r\n",
            mail_options=["RET=FULL", "ENVID=id+2Bone"],
            rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;orig+2Bx@example.com"],
        )
    assert refused == {}
    envelope = mailbox.wait_for(1)[0]["envelope"]
    assert envelope.dsn == {"ret": "FULL", "envid": "id+one"}
    assert [r.dsn for r in envelope.rcpt_to] == [
        {"notify": ["SUCCESS", "FAILURE"], "orcpt": "rfc822;orig+x@example.com"}
    ] * 2


# ----------------------------------------------------------------- REQUIRETLS


def test_requiretls_is_refused_in_plaintext(client):
    assert "REQUIRETLS" not in client.command("EHLO client.test")[1].split("\n")
    assert client.command("MAIL FROM:<a@example.com> REQUIRETLS") == (
        530,
        "5.7.10 Error: REQUIRETLS not permitted on non-TLS connections",
    )


def test_requiretls_inside_tls(server, raw_client, tls_client, mailbox):
    client = raw_client(server().port)
    assert "REQUIRETLS" in starttls(client, tls_client)
    assert client.command("MAIL FROM:<a@example.com> REQUIRETLS=yes") == (
        501,
        "5.5.4 Error: REQUIRETLS parameter does not take a value",
    )
    transaction(client, "MAIL FROM:<a@example.com> REQUIRETLS")
    assert send_data(client)[0] == 250
    transaction(client)
    assert send_data(client)[0] == 250
    first, second = mailbox.wait_for(2)
    assert first["envelope"].require_tls is True
    assert second["envelope"].require_tls is False


def test_smtplib_requiretls_mail_option(server, tls_client, mailbox):
    running = server()
    with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
        client.starttls(context=tls_client)
        client.ehlo()
        assert client.has_extn("requiretls")
        client.sendmail("a@example.com", ["b@example.com"], b"x\r\n", mail_options=["REQUIRETLS"])
    assert mailbox.wait_for(1)[0]["envelope"].require_tls is True


def test_hide_requiretls(server, raw_client, tls_client):
    client = raw_client(server(hide_requiretls=True).port)
    assert "REQUIRETLS" not in starttls(client, tls_client)
    assert client.command("MAIL FROM:<a@example.com> REQUIRETLS") == (
        555,
        "5.5.4 Error: unsupported parameter REQUIRETLS",
    )


# ----------------------------------------------------------------- unknown and duplicate parameters


def test_unknown_parameters(client):
    assert client.command("MAIL FROM:<a@example.com> X-FOO=bar") == (555, "5.5.4 Error: unsupported parameter X-FOO")
    assert client.command("MAIL FROM:<a@example.com> HOLDFOR") == (555, "5.5.4 Error: unsupported parameter HOLDFOR")
    assert client.command("MAIL FROM:<a@example.com>") == ACCEPTED_MAIL
    assert client.command("RCPT TO:<b@example.com> X-BAR=1") == (555, "5.5.4 Error: unsupported parameter X-BAR")


def test_accept_unknown_params(server, raw_client, mailbox):
    client = raw_client(server(accept_unknown_params=True).port)
    greet(client)
    transaction(client, "MAIL FROM:<a@example.com> X-FOO=bar HOLDFOR", "RCPT TO:<b@example.com> X-BAR=1")
    assert send_data(client)[0] == 250
    envelope = mailbox.wait_for(1)[0]["envelope"]
    assert envelope.mail_from.args == {"X-FOO": "bar", "HOLDFOR": True}
    assert envelope.rcpt_to[0].args == {"X-BAR": "1"}


def test_duplicate_parameters(client):
    assert client.command("MAIL FROM:<a@example.com> SIZE=1 size=2") == (
        501,
        "5.1.7 Error: bad sender address syntax (duplicate SIZE parameter)",
    )
    assert client.command("MAIL FROM:<a@example.com> BODY=7BIT BODY=7BIT") == (
        501,
        "5.1.7 Error: bad sender address syntax (duplicate BODY parameter)",
    )
    assert client.command("MAIL FROM:<a@example.com>") == ACCEPTED_MAIL
    assert client.command("RCPT TO:<b@example.com> NOTIFY=SUCCESS NOTIFY=FAILURE") == (
        501,
        "5.1.3 Error: bad recipient address syntax (duplicate NOTIFY parameter)",
    )


def test_mail_auth_parameter_is_known_when_auth_is_offered(server, raw_client):
    def on_auth(auth, session):
        return AuthResult(user=auth.username)

    client = raw_client(server(on_auth=on_auth, auth_optional=True).port)
    greet(client)
    assert client.command("MAIL FROM:<a@example.com> AUTH=<>") == ACCEPTED_MAIL
    assert client.command("RSET")[0] == 250
    assert client.command("MAIL FROM:<a@example.com> AUTH") == (501, "5.5.4 Error: AUTH parameter requires a value")


def test_mail_auth_parameter_is_unknown_without_auth(client):
    assert client.command("MAIL FROM:<a@example.com> AUTH=<>") == (555, "5.5.4 Error: unsupported parameter AUTH")

"""LMTP (RFC 2033, lmtp=True): LHLO, one reply per accepted recipient in order, per-recipient
results from on_data, smtplib.LMTP as a client, and BDAT in LMTP."""

from __future__ import annotations

import smtplib

import pytest
from ext_support import GREETING_LINE, Mailbox

from smtpgate import SMTPError
from support import starttls

pytestmark = pytest.mark.timeout(30)


def lmtp_session(server, raw_client, **options):
    client = raw_client(server(lmtp=True, **options).port)
    assert client.reply() == (220, "mx.test LMTP")
    code, text = client.command("LHLO client.test")
    assert code == 250 and text.split("\n")[0] == GREETING_LINE
    return client


def rcpts(client, *addresses):
    assert client.command("MAIL FROM:<a@example.com>") == (250, "2.1.0 Accepted")
    for address in addresses:
        assert client.command(f"RCPT TO:<{address}>") == (250, "2.1.5 Accepted")


def data(client, body=b"Subject: lmtp\r\n\r\nhi\r\n", replies=1):
    assert client.command("DATA") == (354, "End data with <CR><LF>.<CR><LF>")
    client.send(body + b".\r\n")
    return client.replies(replies)


def test_greeting_and_lhlo(server, raw_client):
    client = lmtp_session(server, raw_client)
    assert client.command("NOOP") == (250, "2.0.0 OK")


def test_greeting_says_lmtp_with_a_banner(server, raw_client):
    client = raw_client(server(lmtp=True, banner="delivery agent").port)
    assert client.reply() == (220, "mx.test LMTP delivery agent")


@pytest.mark.parametrize("verb", ["HELO", "EHLO"])
def test_helo_and_ehlo_are_refused(server, raw_client, verb):
    client = raw_client(server(lmtp=True).port)
    client.reply()
    assert client.command(f"{verb} client.test") == (500, f"5.5.1 Error: {verb} not allowed in LMTP server")
    assert client.command("MAIL FROM:<a@example.com>") == (503, "5.5.1 Error: send LHLO first")
    assert client.command("LHLO client.test")[0] == 250


def test_lhlo_is_unknown_in_smtp(server, raw_client):
    client = raw_client(server().port)
    assert client.reply() == (220, "mx.test ESMTP")
    assert client.command("LHLO client.test") == (500, "5.5.2 Error: command not recognized")


def test_one_reply_per_accepted_recipient_in_order(server, raw_client, mailbox):
    def on_rcpt_to(address, session):
        if address.address.startswith("nobody"):
            raise SMTPError(550, "No such user")

    client = lmtp_session(server, raw_client, on_rcpt_to=on_rcpt_to)
    rcpts(client, "one@example.com", "two@example.com")
    assert client.command("RCPT TO:<nobody@example.com>") == (550, "5.1.1 No such user")
    assert client.command("RCPT TO:<three@example.com>") == (250, "2.1.5 Accepted")
    assert data(client, replies=3) == [
        (250, "2.6.0 <one@example.com> OK: message accepted"),
        (250, "2.6.0 <two@example.com> OK: message accepted"),
        (250, "2.6.0 <three@example.com> OK: message accepted"),
    ]
    assert client.command("NOOP") == (250, "2.0.0 OK")  # nothing more was owed
    [message] = mailbox.wait_for(1)
    assert message["transmission_type"] == "LMTP"
    assert [r.address for r in message["envelope"].rcpt_to] == [
        "one@example.com",
        "two@example.com",
        "three@example.com",
    ]


def test_duplicate_recipient_gets_one_reply(server, raw_client):
    client = lmtp_session(server, raw_client)
    rcpts(client, "one@example.com", "ONE@example.com", "two@example.com")
    assert data(client, replies=2) == [
        (250, "2.6.0 <ONE@example.com> OK: message accepted"),
        (250, "2.6.0 <two@example.com> OK: message accepted"),
    ]
    assert client.command("NOOP") == (250, "2.0.0 OK")


def test_mixed_results_from_a_list(server, raw_client):
    mailbox = Mailbox(answer=lambda envelope: ["Delivered to INBOX", SMTPError(452, "Mailbox full"), None])
    client = lmtp_session(server, raw_client, on_data=mailbox.on_data)
    rcpts(client, "a1@example.com", "full@example.com", "a3@example.com")
    assert data(client, replies=3) == [
        (250, "2.6.0 Delivered to INBOX"),
        (452, "4.2.2 Mailbox full"),
        (250, "2.6.0 <a3@example.com> OK: message accepted"),
    ]
    assert client.command("NOOP") == (250, "2.0.0 OK")


def test_list_with_custom_enhanced_codes(server, raw_client):
    def on_data(stream, session):
        return [SMTPError(550, "5.2.1 Mailbox disabled"), SMTPError(552, "Quota exceeded")]

    client = lmtp_session(server, raw_client, on_data=on_data)
    rcpts(client, "x@example.com", "y@example.com")
    assert data(client, replies=2) == [(550, "5.2.1 Mailbox disabled"), (552, "5.3.4 Quota exceeded")]


def test_one_value_applies_to_every_recipient(server, raw_client):
    mailbox = Mailbox(answer="Stored")
    client = lmtp_session(server, raw_client, on_data=mailbox.on_data)
    rcpts(client, "a@example.com", "b@example.com")
    assert data(client, replies=2) == [(250, "2.6.0 Stored"), (250, "2.6.0 Stored")]


def test_raising_applies_to_every_recipient(server, raw_client):
    async def on_data(stream, session):
        await stream.read()
        raise SMTPError(451, "Try later")

    client = lmtp_session(server, raw_client, on_data=on_data)
    rcpts(client, "a@example.com", "b@example.com", "c@example.com")
    assert data(client, replies=3) == [(451, "4.3.0 Try later")] * 3
    assert client.command("NOOP") == (250, "2.0.0 OK")


def test_a_returned_error_refuses_like_a_raised_one(server, raw_client):
    """A bare returned SMTPError is not mistaken for success: it applies to every recipient."""

    def on_data(stream, session):
        return SMTPError(452, "Mailbox full")

    client = lmtp_session(server, raw_client, on_data=on_data)
    rcpts(client, "a@example.com", "b@example.com")
    assert data(client, replies=2) == [(452, "4.2.2 Mailbox full")] * 2


def test_unexpected_exception_applies_to_every_recipient(server, raw_client):
    def on_data(stream, session):
        raise RuntimeError("disk on fire")

    client = lmtp_session(server, raw_client, on_data=on_data)
    rcpts(client, "a@example.com", "b@example.com")
    assert data(client, replies=2) == [(451, "4.3.0 Error: internal server error")] * 2


@pytest.mark.parametrize("results", [["only one"], [None, 5]], ids=["too-short", "bad-item"])
def test_bad_result_list_is_an_internal_error(server, raw_client, results):
    def on_data(stream, session):
        return results

    client = lmtp_session(server, raw_client, on_data=on_data)
    rcpts(client, "a@example.com", "b@example.com")
    assert data(client, replies=2) == [(451, "4.3.0 Error: internal server error")] * 2
    assert client.command("NOOP") == (250, "2.0.0 OK")


def test_oversized_message_refused_for_every_recipient(server, raw_client, mailbox):
    client = lmtp_session(server, raw_client, size=10)
    rcpts(client, "a@example.com", "b@example.com")
    too_big = (552, "5.3.4 Error: message exceeds fixed maximum message size 10")
    assert data(client, b"0123456789ABCDEF\r\n", replies=2) == [too_big, too_big]


def test_smtplib_lmtp_client(server, mailbox):
    running = server(lmtp=True)
    client = smtplib.LMTP("127.0.0.1", running.port)
    try:
        client.sock.settimeout(10)
        code, text = client.ehlo("client.test")  # smtplib.LMTP sends LHLO
        assert code == 250
        assert client.does_esmtp and client.has_extn("pipelining")
        assert client.sendmail("a@example.com", ["b@example.com"], b"Subject: via LMTP\r\n\r\nhi\r\n") == {}
        client.quit()
    finally:
        client.close()
    [message] = mailbox.wait_for(1)
    assert message["body"] == b"Subject: via LMTP\r\n\r\nhi\r\n"
    assert message["transmission_type"] == "LMTP"


def test_smtplib_lmtp_sees_a_single_recipient_failure(server):
    def on_data(stream, session):
        return [SMTPError(452, "Mailbox full")]

    running = server(lmtp=True, on_data=on_data)
    client = smtplib.LMTP("127.0.0.1", running.port)
    try:
        client.sock.settimeout(10)
        with pytest.raises(smtplib.SMTPDataError) as failure:
            client.sendmail("a@example.com", ["b@example.com"], b"x\r\n")
        assert (failure.value.smtp_code, failure.value.smtp_error) == (452, b"4.2.2 Mailbox full")
    finally:
        client.close()


def test_smtplib_lmtp_reads_only_the_first_of_several_replies(server, mailbox):
    """smtplib has no per-recipient LMTP replies: after DATA it reads one reply, and the
    next ones answer its following commands. The server does send them all, in order."""
    running = server(lmtp=True)
    client = smtplib.LMTP("127.0.0.1", running.port)
    try:
        client.sock.settimeout(10)
        assert client.sendmail("a@example.com", ["b@example.com", "c@example.com"], b"x\r\n") == {}
        assert client.noop() == (250, b"2.6.0 <c@example.com> OK: message accepted")
        assert client.noop() == (250, b"2.0.0 OK")
    finally:
        client.close()
    assert len(mailbox.wait_for(1)) == 1


def test_lmtp_with_bdat(server, raw_client):
    mailbox = Mailbox(answer=lambda envelope: [None, SMTPError(452, "Mailbox full")])
    client = lmtp_session(server, raw_client, on_data=mailbox.on_data)
    rcpts(client, "a@example.com", "b@example.com")
    client.send(b"BDAT 3\r\nabcBDAT 3 LAST\r\ndef")
    assert client.replies(3) == [
        (250, "2.0.0 3 octets received"),
        (250, "2.6.0 <a@example.com> OK: message accepted"),
        (452, "4.2.2 Mailbox full"),
    ]
    assert client.command("NOOP") == (250, "2.0.0 OK")
    assert mailbox.wait_for(1)[0]["body"] == b"abcdef"


def test_lmtp_pipelined_transactions(server, raw_client, mailbox):
    client = lmtp_session(server, raw_client)
    client.send(
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n"
        b"one\r\n.\r\nMAIL FROM:<d@example.com>\r\nRCPT TO:<e@example.com>\r\nDATA\r\ntwo\r\n.\r\n"
    )
    assert client.replies(10) == [
        (250, "2.1.0 Accepted"),
        (250, "2.1.5 Accepted"),
        (250, "2.1.5 Accepted"),
        (354, "End data with <CR><LF>.<CR><LF>"),
        (250, "2.6.0 <b@example.com> OK: message accepted"),
        (250, "2.6.0 <c@example.com> OK: message accepted"),
        (250, "2.1.0 Accepted"),
        (250, "2.1.5 Accepted"),
        (354, "End data with <CR><LF>.<CR><LF>"),
        (250, "2.6.0 <e@example.com> OK: message accepted"),
    ]
    assert [m["body"] for m in mailbox.wait_for(2)] == [b"one\r\n", b"two\r\n"]


def test_lmtp_transmission_type_inside_tls(server, raw_client, tls_client, mailbox):
    client = raw_client(server(lmtp=True).port)
    assert "REQUIRETLS" in starttls(client, tls_client, hello="LHLO client.test")
    rcpts(client, "b@example.com")
    assert data(client) == [(250, "2.6.0 <b@example.com> OK: message accepted")]
    assert mailbox.wait_for(1)[0]["transmission_type"] == "LMTPS"


def test_bare_lf_refusal_is_repeated_for_every_recipient(server, raw_client):
    client = lmtp_session(server, raw_client, bare_lf="reject")
    rcpts(client, "a@example.com", "b@example.com")
    refused = (550, "5.6.0 Error: bare <LF> received in message, use CRLF line endings")
    assert data(client, b"one\ntwo\r\n", replies=2) == [refused, refused]
    assert client.command("NOOP") == (250, "2.0.0 OK")


def test_sync_on_data_returning_a_list(server, raw_client):
    def on_data(stream, session):
        return [f"kept for {r.address}" for r in session.envelope.rcpt_to]

    client = lmtp_session(server, raw_client, on_data=on_data)
    rcpts(client, "a@example.com", "b@example.com")
    assert data(client, replies=2) == [(250, "2.6.0 kept for a@example.com"), (250, "2.6.0 kept for b@example.com")]

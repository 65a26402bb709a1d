"""CHUNKING/BDAT (RFC 3030) over a raw socket: pipelined chunks, BDAT 0 LAST, chunks
spanning reads, PIPELINING around BDAT, BINARYMIME, the rules against mixing with DATA,
the size limit and the on_data stream, hide_chunking."""

from __future__ import annotations

import time

import pytest
from ext_support import Mailbox, send_data, transaction

from smtpgate import SMTPError
from support import greet

pytestmark = pytest.mark.timeout(30)

QUEUED = (250, "2.6.0 OK: message queued")


@pytest.fixture
def client(server, raw_client):
    connection = raw_client(server().port)
    greet(connection)
    return connection


def test_pipelined_chunks_in_one_packet(client, mailbox):
    transaction(client)
    client.send(b"BDAT 5\r\nhelloBDAT 6\r\n worldBDAT 2 LAST\r\n!\n")
    assert client.replies(3) == [
        (250, "2.0.0 5 octets received"),
        (250, "2.0.0 11 octets received"),
        QUEUED,
    ]
    [message] = mailbox.wait_for(1)
    assert message["body"] == b"hello world!\n"
    assert message["envelope"].body_type == "7bit"


def test_bdat_0_last_ends_the_message(client, mailbox):
    transaction(client)
    client.send(b"BDAT 4\r\nabcd")
    assert client.reply() == (250, "2.0.0 4 octets received")
    assert client.command("BDAT 0 LAST") == QUEUED
    assert mailbox.wait_for(1)[0]["body"] == b"abcd"


def test_bdat_0_last_alone_is_an_empty_message(client, mailbox):
    transaction(client)
    assert client.command("BDAT 0 LAST") == QUEUED
    [message] = mailbox.wait_for(1)
    assert (message["body"], message["byte_length"]) == (b"", 0)


def test_chunk_bytes_are_taken_literally(client, mailbox):
    """No dot-stuffing and no end-of-data line inside a chunk: commands in it are data."""
    payload = b".\r\n..leading dot\r\n\r\n.\r\nQUIT\r\nRSET\r\n\x00\xff\r"
    transaction(client)
    client.send(b"BDAT %d LAST\r\n" % len(payload) + payload)
    assert client.reply() == QUEUED
    assert client.command("NOOP") == (250, "2.0.0 OK")
    assert mailbox.wait_for(1)[0]["body"] == payload


def test_chunks_spanning_reads(client, mailbox):
    transaction(client)
    pieces = [b"BD", b"AT 1", b"1\r\nhel", b"lo", b" w", b"orl", b"dBDAT 3 LA", b"ST\r\n", b"!", b"!", b"!"]
    for piece in pieces:
        client.send(piece)
        time.sleep(0.02)  # separate reads on the server, most likely; correctness does not depend on it
    assert client.replies(2) == [(250, "2.0.0 11 octets received"), QUEUED]
    assert mailbox.wait_for(1)[0]["body"] == b"hello world!!!"


def test_large_chunk_spanning_many_reads(client, mailbox):
    payload = bytes(range(256)) * 1024  # 256 KiB, every byte value
    transaction(client)
    client.send(b"BDAT %d LAST\r\n" % len(payload))
    for start in range(0, len(payload), 50_000):
        client.send(payload[start : start + 50_000])
    assert client.reply() == QUEUED
    [message] = mailbox.wait_for(1)
    assert message["body"] == payload
    assert message["byte_length"] == len(payload)


def test_bdat_with_pipelining(client, mailbox):
    client.send(
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\n"
        b"BDAT 3\r\nabcBDAT 3 LAST\r\ndefNOOP\r\n"
        b"MAIL FROM:<d@example.com>\r\nRCPT TO:<e@example.com>\r\nBDAT 1 LAST\r\nzQUIT\r\n"
    )
    assert client.replies(10) == [
        (250, "2.1.0 Accepted"),
        (250, "2.1.5 Accepted"),
        (250, "2.1.5 Accepted"),
        (250, "2.0.0 3 octets received"),
        QUEUED,
        (250, "2.0.0 OK"),
        (250, "2.1.0 Accepted"),
        (250, "2.1.5 Accepted"),
        QUEUED,
        (221, "2.0.0 Bye"),
    ]
    first, second = mailbox.wait_for(2)
    assert first["body"] == b"abcdef"
    assert [r.address for r in first["envelope"].rcpt_to] == ["b@example.com", "c@example.com"]
    assert (second["body"], second["envelope"].mail_from.address) == (b"z", "d@example.com")


def test_binarymime_only_with_bdat(client, mailbox):
    transaction(client, "MAIL FROM:<a@example.com> BODY=BINARYMIME")
    assert client.command("DATA") == (503, "5.5.1 Error: BODY=BINARYMIME requires BDAT")
    payload = b"\x00\x01binary\r\n.\r\n\xfe\xff"
    client.send(b"BDAT %d LAST\r\n" % len(payload) + payload)
    assert client.reply() == QUEUED
    [message] = mailbox.wait_for(1)
    assert message["envelope"].body_type == "binarymime"
    assert message["body"] == payload


def test_data_after_bdat_is_refused_and_the_bdat_message_goes_on(client, mailbox):
    transaction(client)
    client.send(b"BDAT 3\r\nabc")
    assert client.reply() == (250, "2.0.0 3 octets received")
    assert client.command("DATA") == (503, "5.5.1 Error: DATA not allowed after BDAT")
    assert client.command("RCPT TO:<late@example.com>") == (503, "5.5.1 Error: RCPT not allowed after BDAT")
    client.send(b"BDAT 3 LAST\r\ndef")
    assert client.reply() == QUEUED
    [message] = mailbox.wait_for(1)
    assert message["body"] == b"abcdef"
    assert [r.address for r in message["envelope"].rcpt_to] == ["b@example.com"]


def test_bdat_before_mail_or_rcpt_skips_the_chunk(client, mailbox):
    client.send(b"BDAT 6\r\nNOOP\r\n")
    assert client.reply() == (503, "5.5.1 Error: need MAIL command")
    assert client.command("MAIL FROM:<a@example.com>") == (250, "2.1.0 Accepted")
    client.send(b"BDAT 6 LAST\r\nRSET\r\n")
    assert client.reply() == (503, "5.5.1 Error: need RCPT command")
    assert client.command("NOOP") == (250, "2.0.0 OK")
    assert mailbox.messages == []


@pytest.mark.parametrize("line", ["BDAT", "BDAT x", "BDAT 3 FIRST", "BDAT -1", "BDAT 1 LAST extra"])
def test_bad_bdat_syntax_closes_the_connection(client, line):
    transaction(client)
    assert client.command(line) == (421, "4.5.4 mx.test Error: bad BDAT syntax, closing")
    assert client.is_closed()


def test_rset_during_bdat_drops_the_message(server, raw_client):
    aborted = []

    async def on_data(stream, session):
        try:
            await stream.read()
        except Exception as error:
            aborted.append(type(error).__name__)
            raise

    client = raw_client(server(on_data=on_data).port)
    greet(client)
    transaction(client)
    client.send(b"BDAT 3\r\nabc")
    assert client.reply() == (250, "2.0.0 3 octets received")
    assert client.command("RSET") == (250, "2.0.0 Flushed")
    assert client.command("BDAT 0 LAST") == (503, "5.5.1 Error: need MAIL command")
    deadline = time.monotonic() + 5
    while not aborted and time.monotonic() < deadline:
        time.sleep(0.01)
    assert aborted == ["DataStreamError"]


def test_size_limit_same_as_data(server, raw_client, mailbox):
    client = raw_client(server(size=10).port)
    greet(client)
    too_big = (552, "5.3.4 Error: message exceeds fixed maximum message size 10")
    transaction(client)
    client.send(b"BDAT 6\r\nabcdef")
    assert client.reply() == (250, "2.0.0 6 octets received")
    client.send(b"BDAT 6 LAST\r\nghijkl")
    assert client.reply() == too_big
    transaction(client)
    assert send_data(client, b"abcdefghijkl\r\n") == too_big
    transaction(client)
    client.send(b"BDAT 10 LAST\r\n0123456789")
    assert client.reply() == QUEUED
    bdat, data, fits = mailbox.wait_for(3)
    for message in (bdat, data):
        assert message["size_exceeded"] is True
        assert message["body"] == b"abcdefghij"
    assert bdat["byte_length"] == 12
    assert data["byte_length"] == 14  # DATA counts the CRLF that ends the last line
    assert (fits["size_exceeded"], fits["body"]) == (False, b"0123456789")


def test_declared_size_is_checked_for_bdat_too(server, raw_client):
    client = raw_client(server(size=10).port)
    greet(client)
    assert client.command("MAIL FROM:<a@example.com> SIZE=11 BODY=BINARYMIME") == (
        552,
        "5.3.4 Error: message exceeds fixed maximum message size 10",
    )


def test_stream_api_is_the_same_as_for_data(server, raw_client):
    seen = []

    async def on_data(stream, session):
        chunks = [chunk async for chunk in stream]
        seen.append((b"".join(chunks), stream.byte_length, stream.size_exceeded))
        return f"got {stream.byte_length}"

    client = raw_client(server(on_data=on_data).port)
    greet(client)
    body = b"Subject: same\r\n\r\nline one\r\nline two\r\n"
    transaction(client)
    assert send_data(client, body) == (250, f"2.6.0 got {len(body)}")
    transaction(client)
    client.send(b"BDAT 10\r\n" + body[:10] + b"BDAT %d LAST\r\n" % (len(body) - 10) + body[10:])
    assert client.replies(2) == [(250, "2.0.0 10 octets received"), (250, f"2.6.0 got {len(body)}")]
    assert seen == [(body, len(body), False)] * 2


def test_on_data_refusal_after_bdat_last(server, raw_client):
    def refuse(stream, session):
        raise SMTPError(554, "Spam detected")

    client = raw_client(server(on_data=refuse).port)
    greet(client)
    transaction(client)
    client.send(b"BDAT 3 LAST\r\nabc")
    assert client.reply() == (554, "5.6.0 Spam detected")
    assert client.command("NOOP") == (250, "2.0.0 OK")


def test_sync_on_data_with_bdat(server, raw_client):
    mailbox = Mailbox()
    bodies = []

    def on_data(stream, session):
        bodies.append(stream.byte_length)
        return "sync ok"

    client = raw_client(server(on_data=on_data).port)
    greet(client)
    transaction(client)
    client.send(b"BDAT 2\r\nabBDAT 2 LAST\r\ncd")
    assert client.replies(2) == [(250, "2.0.0 2 octets received"), (250, "2.6.0 sync ok")]
    assert bodies == [4]
    assert mailbox.messages == []


def test_hide_chunking_hides_chunking_and_binarymime(server, raw_client):
    client = raw_client(server(hide_chunking=True).port)
    lines = greet(client)
    assert "CHUNKING" not in lines and "BINARYMIME" not in lines


def test_hide_chunking_only_hides_bdat_still_works(server, raw_client, mailbox):
    """Documented: hide_chunking changes advertising (and refuses BODY=BINARYMIME); BDAT
    itself goes on working until "BDAT" is in disabled_commands."""
    client = raw_client(server(hide_chunking=True).port)
    greet(client)
    transaction(client)
    client.send(b"BDAT 3 LAST\r\nabc")
    assert client.reply() == QUEUED
    assert mailbox.wait_for(1)[0]["body"] == b"abc"


def test_disabled_bdat_command(server, raw_client):
    client = raw_client(server(disabled_commands=["BDAT"]).port)
    assert "CHUNKING" not in greet(client)
    transaction(client)
    assert client.command("BDAT 0 LAST") == (500, "5.5.2 Error: command not recognized")


def test_bare_lf_policy_does_not_apply_to_bdat(server, raw_client, mailbox):
    """BDAT carries bytes, not lines: bare_lf="reject" refuses a bare LF in DATA only."""
    client = raw_client(server(bare_lf="reject").port)
    greet(client)
    transaction(client)
    client.send(b"BDAT 5 LAST\r\na\nb\rc")
    assert client.reply() == QUEUED
    transaction(client)
    assert send_data(client, b"a\nb\r\n") == (550, "5.6.0 Error: bare <LF> received in message, use CRLF line endings")
    assert [m["body"] for m in mailbox.wait_for(1)] == [b"a\nb\rc"]  # the DATA handler saw DataStreamError


def test_smtp_result_list_after_bdat_answers_the_first_failure(server, raw_client):
    mailbox = Mailbox(answer=[None, SMTPError(452, "Mailbox full"), "text"])
    client = raw_client(server(on_data=mailbox.on_data).port)
    greet(client)
    transaction(client)
    client.send(b"BDAT 1 LAST\r\nx")
    assert client.reply() == (452, "4.2.2 Mailbox full")
    mailbox.answer = ["first text", None]
    transaction(client)
    client.send(b"BDAT 1 LAST\r\ny")
    assert client.reply() == (250, "2.6.0 first text")


def test_reject_oversized_false_leaves_the_decision_to_on_data(server, raw_client, mailbox):
    client = raw_client(server(size=4, reject_oversized=False).port)
    greet(client)
    transaction(client)
    client.send(b"BDAT 6 LAST\r\nabcdef")
    assert client.reply() == QUEUED
    [message] = mailbox.wait_for(1)
    assert (message["size_exceeded"], message["byte_length"], message["body"]) == (True, 6, b"abcd")

"""DATA in the core: end of data, dot-unstuffing, smuggling, bare LF policy, size, exact bytes."""

from __future__ import annotations

import pytest
from core_support import parse_replies

from smtpgate import SMTPError
from smtpgate.protocol.events import DataChunk, DataEnd, DataStart


def send_message(client, payload: bytes, *, step: int = 0) -> list[int]:
    """EHLO/MAIL/RCPT, DATA, then ``payload`` (which should hold the terminator); reply codes."""
    client.transaction()
    out = client.send(b"DATA\r\n")
    if step:
        for i in range(0, len(payload), step):
            out += client.send(payload[i : i + step])
    else:
        out += client.send(payload)
    return [code for code, _ in parse_replies(out)]


@pytest.mark.parametrize(
    ("payload", "body"),
    [
        (b".\r\n", b""),
        (b"hello\r\n.\r\n", b"hello\r\n"),
        (b"..\r\n.\r\n", b".\r\n"),
        (b"...\r\n.\r\n", b"..\r\n"),
        (b"..hidden\r\n.\r\n", b".hidden\r\n"),
        (b"a\r\n..b\r\n..\r\n.\r\n", b"a\r\n.b\r\n.\r\n"),
        (b".x\r\n.\r\n", b"x\r\n"),  # RFC 5321 4.5.2: a leading dot is deleted
        (b"a\r\n.x\r\n.\r\n", b"a\r\nx\r\n"),
        (b"a.b\r\n.\r\n", b"a.b\r\n"),
        (b"no final newline\r\n.\r\n", b"no final newline\r\n"),
        (b"\r\n.\r\n", b"\r\n"),
    ],
)
@pytest.mark.parametrize("step", [0, 1, 2, 3])
def test_dot_unstuffing_and_end_of_data(core, payload, body, step):
    client = core()
    assert send_message(client, payload, step=step) == [354, 250]
    [(_, got, event)] = client.messages
    assert got == body
    assert event.byte_length == len(body)


def test_354_text(core):
    client = core()
    client.transaction()
    assert client.replies("DATA\r\n") == [(354, ["End data with <CR><LF>.<CR><LF>"])]
    assert client.core.in_data


SMUGGLING_SEPARATORS = [
    b"\n.\n",
    b"\r.\r",
    b"\n.\r\n",
    b"\r\n.\n",
    b"\r.\r\n",
    b"\r\n.\r",
    b"\n.\r",
    b"\r.\n",
    b"\n\r.\r\n",  # CR LF order swapped before the dot
    b"\r\n\x00.\r\n",
    b"\r\n .\r\n",
    b"\r\n.\x00\r\n",
    b"\r\n. \r\n",
]
SMUGGLED = b"MAIL FROM:<evil@attacker.test>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nSmuggled\r\n"


@pytest.mark.parametrize("mode", ["normalize", "allow"])
@pytest.mark.parametrize("separator", SMUGGLING_SEPARATORS, ids=repr)
@pytest.mark.parametrize("step", [0, 1])
def test_smuggling_variants_do_not_end_data(core, separator, mode, step):
    client = core(bare_lf=mode)
    payload = b"Subject: hi\r\n\r\nbody" + separator + SMUGGLED + b".\r\nNOOP\r\n"
    codes = send_message(client, payload, step=step)
    assert codes == [354, 250, 250]  # one message, then the NOOP
    assert len(client.messages) == 1
    assert not [e for e in client.events if isinstance(e, DataStart)][1:]
    envelope, body, _ = client.messages[0]
    assert envelope.mail_from.address == "a@example.com"
    assert b"MAIL FROM:<evil@attacker.test>" in body
    assert body.endswith(b"Smuggled\r\n")
    if mode == "allow":
        # A dot right after CRLF starts a line and is unstuffed; everything else is kept.
        kept = separator.replace(b"\r\n.", b"\r\n", 1) if separator.startswith(b"\r\n.") else separator
        assert body == b"Subject: hi\r\n\r\nbody" + kept + SMUGGLED


@pytest.mark.parametrize("separator", SMUGGLING_SEPARATORS, ids=repr)
def test_smuggling_variants_with_reject_policy(core, separator):
    client = core(bare_lf="reject")
    payload = b"Subject: hi\r\n\r\nbody" + separator + SMUGGLED + b".\r\nNOOP\r\n"
    codes = send_message(client, payload)
    assert len(client.messages) == 1  # never a second transaction
    if b"\n" in separator.replace(b"\r\n", b""):
        assert codes == [354, 550, 250]
    else:
        assert codes == [354, 250, 250]  # bare CR is content, not a line ending


@pytest.mark.parametrize(
    ("payload", "normalized"),
    [
        (b"a\nb\r\n.\r\n", b"a\r\nb\r\n"),
        (b"a\n\nb\r\n.\r\n", b"a\r\n\r\nb\r\n"),
        (b"\nx\r\n.\r\n", b"\r\nx\r\n"),
        (b"x\r\n\n\r\n.\r\n", b"x\r\n\r\n\r\n"),
    ],
)
def test_bare_lf_normalize(core, payload, normalized):
    client = core()
    assert send_message(client, payload) == [354, 250]
    [(_, body, event)] = client.messages
    assert body == normalized
    assert event.bare_lf is True
    assert event.byte_length == len(normalized)


@pytest.mark.parametrize("step", [0, 1])
def test_bare_lf_allow_is_byte_for_byte(core, step):
    client = core(bare_lf="allow")
    payload = b"a\nb\r\nc\rd\n\n"
    assert send_message(client, payload + b"\r\n.\r\n", step=step) == [354, 250]
    [(_, body, event)] = client.messages
    assert body == payload + b"\r\n"
    assert event.bare_lf is True


def test_bare_lf_reject(core):
    client = core(bare_lf="reject")
    codes = send_message(client, b"line one\nline two\r\n.\r\n")
    assert codes == [354, 550]
    out = client.replies("NOOP\r\n")
    assert out == [(250, ["2.0.0 OK"])]
    [(_, body, event)] = client.messages
    assert event.bare_lf is True
    assert b"line two" not in body  # nothing after the bare LF is handed over
    assert client.session.envelope.mail_from is None


def test_bare_lf_reject_text(core):
    client = core(bare_lf="reject")
    client.transaction()
    client.send("DATA\r\n")
    assert client.replies(b"x\n.\r\n\r\n.\r\n")[0] == (
        550,
        ["5.6.0 Error: bare <LF> received in message, use CRLF line endings"],
    )


def test_bare_lf_reject_wins_over_a_handler_accepting(core):
    client = core(bare_lf="reject", decide=lambda event: "queued" if isinstance(event, DataEnd) else None)
    assert send_message(client, b"a\nb\r\n.\r\n") == [354, 550]


def test_crlf_only_message_with_reject_policy_is_accepted(core):
    client = core(bare_lf="reject")
    assert send_message(client, b"a\r\nb\r\n.\r\n") == [354, 250]
    assert client.messages[0][1] == b"a\r\nb\r\n"


def test_body_is_byte_exact(core):
    client = core(bare_lf="allow")
    body = bytes(range(256)).replace(b"\r", b"").replace(b"\n", b"") * 4 + b"\r\n"
    body += b"\x00\x00NUL\r\n" + b"\xff\xfe 8-bit \xc3\xa9\r\n" + b"L" * 200_000 + b"\r\n"
    assert send_message(client, body + b".\r\n") == [354, 250]
    assert client.messages[0][1] == body


def test_body_chunks_are_never_empty_and_bounded_by_input(core):
    client = core()
    client.transaction()
    client.send("DATA\r\n")
    for _ in range(50):
        client.send(b"y" * 1000 + b"\r\n")
    client.send(b".\r\n")
    chunks = [e.data for e in client.events if isinstance(e, DataChunk)]
    assert all(chunks)
    assert b"".join(chunks) == (b"y" * 1000 + b"\r\n") * 50
    assert client.core.buffered == 0


def test_no_line_limit_inside_data(core):
    client = core(max_command_length=512)
    line = b"z" * 100_000 + b"\r\n"
    assert send_message(client, line + b".\r\n") == [354, 250]
    assert client.messages[0][1] == line


def test_size_exceeded_is_read_to_the_end_then_552(core):
    client = core(size=100)
    body = b"x" * 98 + b"\r\n" + b"y" * 500 + b"\r\n"
    codes = send_message(client, body + b".\r\nNOOP\r\n")
    assert codes == [354, 552, 250]
    [(_, got, event)] = client.messages
    assert event.size_exceeded is True
    assert event.byte_length == len(body)
    assert got == body  # the core hands everything over; the shell's stream truncates


def test_size_exceeded_reply_text(core):
    client = core(size=10)
    client.transaction()
    client.send("DATA\r\n")
    assert client.replies(b"0123456789A\r\n.\r\n") == [
        (552, ["5.3.4 Error: message exceeds fixed maximum message size 10"])
    ]


def test_message_at_the_size_limit_is_accepted(core):
    client = core(size=10)
    assert send_message(client, b"12345678\r\n.\r\n") == [354, 250]
    assert client.messages[0][2].size_exceeded is False


def test_oversized_accepted_when_reject_oversized_is_off(core):
    client = core(size=10, reject_oversized=False)
    assert send_message(client, b"0123456789ABCDEF\r\n.\r\n") == [354, 250]
    assert client.messages[0][2].size_exceeded is True


def test_handler_text_and_errors_for_the_message(core):
    verdicts = iter(["Queued as 42", SMTPError(554, "Spam"), SMTPError(452, "Later", enhanced="4.3.1")])

    def decide(event):
        return next(verdicts) if isinstance(event, DataEnd) else None

    client = core(decide=decide)
    out = []
    for _ in range(3):
        client.transaction()
        client.send("DATA\r\n")
        out += client.replies(b"m\r\n.\r\n")
    assert out == [(250, ["2.6.0 Queued as 42"]), (554, ["5.6.0 Spam"]), (452, ["4.3.1 Later"])]


def test_data_end_waits_for_the_decision(core):
    client = core()
    client.transaction()
    client.send("DATA\r\n")
    client.core.receive_data(b"body\r\n.\r\nNOOP\r\n")
    events = []
    while (event := client.core.next_event()) is not None:
        events.append(event)
        if isinstance(event, DataEnd):
            break
    assert isinstance(events[-1], DataEnd)
    assert client.core.next_event() is None
    assert client.core.data_to_send() == b""  # no 250 before the application decided
    client.core.accept()
    assert client.core.next_event() is None
    assert [c for c, _ in parse_replies(client.core.data_to_send())] == [250, 250]


def test_eof_mid_data_produces_no_message(core):
    client = core()
    client.transaction()
    client.send(b"DATA\r\npartial message\r\n")
    client.eof()
    assert client.messages == []
    assert client.closed
    assert client.closed_reason == "client closed the connection during DATA"
    assert not [e for e in client.events if isinstance(e, DataEnd)]


def test_commands_after_data_in_the_same_write(core):
    client = core()
    client.transaction()
    out = client.replies(b"DATA\r\nbody\r\n.\r\nRSET\r\nQUIT\r\n")
    assert [c for c, _ in out] == [354, 250, 250, 221]
    assert client.messages[0][1] == b"body\r\n"


def test_hide_size_still_limits_the_body(core):
    client = core(size=10, hide_size=True)
    assert send_message(client, b"0123456789ABC\r\n.\r\n") == [354, 552]
    assert client.messages[0][2].size_exceeded is True


def test_normalized_bare_lfs_count_towards_the_size(core):
    client = core(size=10)
    # 10 bytes as sent, 12 after each bare LF became CRLF: the size is that of the message stored.
    assert send_message(client, b"abcd\nef\n\r\n.\r\n") == [354, 552]
    assert client.messages[0][1] == b"abcd\r\nef\r\n\r\n"
    assert client.messages[0][2].byte_length == 12

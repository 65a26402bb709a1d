"""Pipelining, early talkers, HTTP requests, unrecognised-command and line-length limits."""

from __future__ import annotations

import pytest
from core_support import parse_replies

from smtpgate import SMTPError
from smtpgate.protocol.events import MailFrom, RcptTo

WHOLE_TRANSACTION = (
    b"EHLO client.test\r\n"
    b"MAIL FROM:<a@example.com>\r\n"
    b"RCPT TO:<b@example.com>\r\n"
    b"RCPT TO:<bad address>\r\n"
    b"RCPT TO:<c@example.com>\r\n"
    b"DATA\r\n"
    b"Subject: x\r\n\r\nbody\r\n.\r\n"
    b"MAIL FROM:<d@example.com>\r\n"
    b"RCPT TO:<e@example.com>\r\n"
    b"DATA\r\n"
    b"second\r\n.\r\n"
    b"QUIT\r\n"
)
EXPECTED_CODES = [250, 250, 250, 501, 250, 354, 250, 250, 250, 354, 250, 221]


def test_whole_session_in_one_write_gets_every_reply_in_order(core):
    client = core()
    assert client.codes(WHOLE_TRANSACTION) == EXPECTED_CODES
    assert [body for _, body, _ in client.messages] == [b"Subject: x\r\n\r\nbody\r\n", b"second\r\n"]
    first, second = (envelope for envelope, _, _ in client.messages)
    assert [r.address for r in first.rcpt_to] == ["b@example.com", "c@example.com"]
    assert second.mail_from.address == "d@example.com"
    assert client.closed


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64])
def test_same_session_fed_in_pieces(core, step):
    client = core()
    out = b""
    for i in range(0, len(WHOLE_TRANSACTION), step):
        out += client.send(WHOLE_TRANSACTION[i : i + step])
    assert [code for code, _ in parse_replies(out)] == EXPECTED_CODES
    assert [body for _, body, _ in client.messages] == [b"Subject: x\r\n\r\nbody\r\n", b"second\r\n"]


def test_pipelined_commands_wait_for_a_decision(core):
    """While an event waits for the application, later commands are not answered."""
    client = core(start=True)
    client.send("EHLO c\r\n")
    client.core.receive_data(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nNOOP\r\n")
    event = client.core.next_event()
    assert isinstance(event, MailFrom)
    assert client.core.next_event() is None  # blocked until accept/reject
    assert client.core.data_to_send() == b""
    client.core.reject(SMTPError(550, "go away"))
    assert client.core.next_event() is None  # RCPT refused by the core: no sender
    assert [c for c, _ in parse_replies(client.core.data_to_send())] == [550, 503, 250]


def test_rejected_rcpt_in_pipeline_is_not_added(core):
    def decide(event):
        if isinstance(event, RcptTo) and event.address.address.startswith("no"):
            return SMTPError(550, "No such user")
        return None

    client = core(decide=decide)
    out = client.replies(
        "EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<no@example.com>\r\nRCPT TO:<yes@example.com>\r\n"
        "DATA\r\nx\r\n.\r\n"
    )
    assert [code for code, _ in out] == [250, 250, 550, 250, 354, 250]
    assert out[2][1] == ["5.1.1 No such user"]
    [(envelope, body, _)] = client.messages
    assert [r.address for r in envelope.rcpt_to] == ["yes@example.com"]


def test_early_talker_gets_421_and_close(core):
    client = core(start=False)
    client.core.receive_data(b"EHLO impatient\r\n")
    assert client.pump() == b"421 4.7.0 mx.test You talk too soon\r\n"
    assert client.closed
    assert client.closed_reason == "early talker"
    client.core.start()  # the greeting never follows
    assert client.core.data_to_send() == b""


@pytest.mark.parametrize(
    "line",
    ["GET / HTTP/1.1", "POST /submit HTTP/1.0", "get /x HTTP/2", "CONNECT mx.test:25 HTTP/1.1", "OPTIONS * HTTP/1.1"],
)
def test_http_request_line_gets_421_and_close(core, line):
    client = core()
    assert client.replies(line + "\r\nHost: x\r\n\r\n") == [(421, ["4.7.0 mx.test HTTP requests not allowed"])]
    assert client.closed


def last_bad_command(replies):
    """The reply to the bad command that reaches the limit: only the 421 (one reply per command)."""
    assert [code for code, _ in replies] == [421], replies
    return replies[-1]


def test_too_many_unrecognised_commands(core):
    client = core(max_unrecognized_commands=3)
    assert client.codes("FOO\r\nBAR\r\n") == [500, 500]
    assert not client.closed
    # The third bad command is answered 421 instead of 500; nothing is answered after it.
    assert last_bad_command(client.replies("BAZ\r\nNOOP\r\n")) == (
        421,
        ["4.7.0 mx.test Error: too many unrecognized commands"],
    )
    assert client.closed


def test_default_unrecognised_limit_is_ten(core):
    client = core()
    assert client.codes("X\r\n" * 9) == [500] * 9
    assert last_bad_command(client.replies("X\r\n"))[0] == 421
    assert client.closed


def test_unrecognised_count_resets_after_a_message(core):
    client = core(max_unrecognized_commands=3)
    client.transaction()
    assert client.codes("FOO\r\nBAR\r\nDATA\r\nx\r\n.\r\n") == [500, 500, 354, 250]
    assert client.codes("FOO\r\nBAR\r\n") == [500, 500]
    assert not client.closed


def test_line_over_max_command_length_is_refused(core):
    client = core(max_command_length=512)
    assert client.replies("NOOP " + "x" * 600 + "\r\n") == [(500, ["5.5.6 Error: line too long"])]
    assert client.codes("NOOP\r\n") == [250]  # the session goes on


def test_line_exactly_at_the_limit_is_accepted(core):
    client = core(max_command_length=512)
    assert client.codes("NOOP " + "x" * 507 + "\r\n") == [250]


def test_unterminated_long_line_is_not_buffered(core):
    client = core(max_command_length=512)
    for _ in range(200):
        assert client.send(b"x" * 1000) == b""
        assert client.core.buffered <= 1024
    assert client.replies(b"tail\r\nNOOP\r\n") == [(500, ["5.5.6 Error: line too long"]), (250, ["2.0.0 OK"])]


def test_long_line_split_at_every_size_is_one_error(core):
    client = core(max_command_length=512)
    out = b""
    for piece in [b"A" * 300, b"B" * 300, b"C" * 5000, b"D\r", b"\nNOOP\r\n"]:
        out += client.send(piece)
    assert [c for c, _ in parse_replies(out)] == [500, 250]


def test_repeated_long_lines_end_the_session(core):
    client = core(max_command_length=512, max_unrecognized_commands=3)
    codes = []
    for _ in range(2):
        codes += client.codes(b"y" * 2000 + b"\r\n")
    assert codes == [500, 500]
    assert last_bad_command(client.replies(b"y" * 2000 + b"\r\n"))[0] == 421
    assert client.closed


def test_eof_closes_the_session(core):
    client = core()
    client.send("EHLO c\r\n")
    assert client.eof() == b""
    assert client.closed_reason == "client closed the connection"


def test_eof_after_pipelined_commands_still_answers_them(core):
    client = core()
    client.core.receive_data(b"EHLO c\r\nNOOP\r\n")
    client.core.receive_eof()
    assert [c for c, _ in parse_replies(client.pump())] == [250, 250]
    assert client.closed


def test_line_at_the_limit_split_between_cr_and_lf(core):
    client = core(max_command_length=512)
    line = b"NOOP " + b"x" * 507  # exactly the limit, as test_line_exactly_at_the_limit_is_accepted
    assert client.send(line + b"\r") == b""
    assert parse_replies(client.send(b"\n")) == [(250, ["2.0.0 OK"])]


@pytest.mark.parametrize("split", [1, 100, 511, 512])
def test_line_at_the_limit_split_elsewhere(core, split):
    client = core(max_command_length=512)
    line = b"NOOP " + b"x" * 507 + b"\r\n"
    out = client.send(line[:split]) + client.send(line[split:])
    assert parse_replies(out) == [(250, ["2.0.0 OK"])]

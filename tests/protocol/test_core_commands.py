"""The core's command set: greeting, EHLO capabilities, simple commands and their errors."""

from __future__ import annotations

import pytest
from core_support import CoreClient, parse_replies

ALL_EXTENSIONS = {"PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"}


def ehlo_keywords(client: CoreClient) -> list[str]:
    [(code, lines)] = client.replies("EHLO client.test\r\n")
    assert code == 250
    return lines[1:]


def test_greeting_has_name_esmtp_and_banner(core):
    client = core(banner="Welcome aboard")
    assert client.greeting == b"220 mx.test ESMTP Welcome aboard\r\n"


def test_greeting_without_banner(core):
    assert core().greeting == b"220 mx.test ESMTP\r\n"


def test_lmtp_greeting(core):
    assert core(lmtp=True).greeting == b"220 mx.test LMTP\r\n"


def test_nothing_is_sent_before_start(core):
    client = core(start=False)
    assert client.core.data_to_send() == b""
    client.core.start()
    client.core.start()  # a second call does not greet twice
    assert parse_replies(client.core.data_to_send()) == [(220, ["mx.test ESMTP"])]


def test_ehlo_lists_default_extensions(core):
    client = core(size=1000)
    [(code, lines)] = client.replies("EHLO client.test\r\n")
    assert code == 250
    assert lines[0] == "mx.test Nice to meet you, [unknown]"
    keywords = lines[1:]
    assert ALL_EXTENSIONS <= set(keywords)
    assert "SIZE 1000" in keywords
    assert client.session.host_name_appears_as == "client.test"
    assert client.session.transmission_type == "ESMTP"


def test_ehlo_without_size_option_does_not_advertise_size(core):
    assert not [k for k in ehlo_keywords(core()) if k.startswith("SIZE")]


@pytest.mark.parametrize(
    ("option", "keyword"),
    [
        ("hide_pipelining", "PIPELINING"),
        ("hide_8bitmime", "8BITMIME"),
        ("hide_smtputf8", "SMTPUTF8"),
        ("hide_enhancedstatuscodes", "ENHANCEDSTATUSCODES"),
    ],
)
def test_hide_options_remove_exactly_one_keyword(core, option, keyword):
    shown = ehlo_keywords(core())
    hidden = ehlo_keywords(core(**{option: True}))
    assert keyword in shown
    assert keyword not in hidden
    assert set(shown) - set(hidden) == {keyword}


def test_hide_size_advertises_bare_size(core):
    keywords = ehlo_keywords(core(size=5000, hide_size=True))
    assert "SIZE" in keywords
    assert "SIZE 5000" not in keywords


def test_hidden_extensions_still_work(core):
    client = core(hide_8bitmime=True, hide_smtputf8=True, hide_pipelining=True)
    client.send("EHLO c\r\n")
    assert client.reply("MAIL FROM:<a@example.com> BODY=8BITMIME")[0] == 250
    client.send("RSET\r\n")
    assert client.reply("MAIL FROM:<ä@example.com> SMTPUTF8")[0] == 250


def test_helo_gets_a_single_line_and_smtp_transmission_type(core):
    client = core()
    assert client.replies("HELO client.test\r\n") == [(250, ["mx.test Nice to meet you, [unknown]"])]
    assert client.session.transmission_type == "SMTP"
    assert client.session.opening_command == "HELO"


def test_helo_response_template(core):
    client = core(helo_response="{name} greets {client_hostname}")
    client.session.client_hostname = "c.example"
    assert client.replies("HELO x\r\n") == [(250, ["mx.test greets c.example"])]


@pytest.mark.parametrize("line", ["EHLO", "HELO", "EHLO a b", "HELO   "])
def test_helo_needs_exactly_one_argument(core, line):
    code, text = core().reply(line)
    assert (code, text) == (501, f"5.5.4 Error: syntax: {line.split()[0]} hostname")


def test_ehlo_hostname_too_long(core):
    assert core().reply("EHLO " + "a" * 256)[0] == 501


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("NOOP", (250, "2.0.0 OK")),
        ("NOOP anything goes", (250, "2.0.0 OK")),
        ("RSET", (250, "2.0.0 Flushed")),
        ("RSET now", (501, "5.5.4 Error: syntax: RSET")),
        ("VRFY postmaster", (252, "2.1.5 Cannot VRFY user, but will accept message and attempt delivery")),
        ("VRFY", (501, "5.5.4 Error: syntax: VRFY address")),
        ("HELP", (214, "2.0.0 See https://www.rfc-editor.org/rfc/rfc5321 for details")),
        ("HELP MAIL", (214, "2.0.0 See https://www.rfc-editor.org/rfc/rfc5321 for details")),
        ("EXPN list", (502, "5.5.1 Error: EXPN not implemented")),
        ("FOO bar", (500, "5.5.2 Error: command not recognized")),
        ("", (500, "5.5.2 Error: command not recognized")),
    ],
)
def test_simple_commands(core, line, expected):
    assert core().reply(line) == expected


def test_quit_says_bye_and_closes(core):
    client = core()
    assert client.replies("QUIT\r\n") == [(221, ["2.0.0 Bye"])]
    assert client.closed
    assert client.closed_reason == "client sent QUIT"
    assert client.send("NOOP\r\n") == b""  # nothing after QUIT


def test_commands_are_case_insensitive(core):
    client = core()
    assert client.codes("eHlO client.test\r\n") == [250]
    assert client.reply("mail from:<a@example.com>")[0] == 250
    assert client.reply("Rcpt To:<b@example.com>")[0] == 250
    assert client.replies("dAtA\r\n")[0][0] == 354
    assert client.replies("hi\r\n.\r\n")[0][0] == 250
    assert client.reply("nOoP") == (250, "2.0.0 OK")
    assert client.reply("quit")[0] == 221


@pytest.mark.parametrize(
    "line", ["MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA", "BDAT 5 LAST\r\nabcde"]
)
def test_transaction_before_helo_is_bad_sequence(core, line):
    client = core()
    got = client.replies(line + "\r\n")  # a refused BDAT chunk is skipped before the reply
    assert got[0] == (503, ["5.5.1 Error: send HELO/EHLO first"])
    assert not client.events


def test_bad_sequences(core):
    client = core()
    client.send("EHLO c\r\n")
    assert client.reply("RCPT TO:<b@example.com>") == (503, "5.5.1 Error: need MAIL command")
    assert client.reply("DATA") == (503, "5.5.1 Error: need MAIL command")
    assert client.reply("MAIL FROM:<a@example.com>")[0] == 250
    assert client.reply("MAIL FROM:<a@example.com>") == (503, "5.5.1 Error: nested MAIL command")
    assert client.reply("DATA") == (503, "5.5.1 Error: need RCPT command")
    assert client.reply("DATA now") == (501, "5.5.4 Error: syntax: DATA")


def test_rset_clears_the_transaction(core):
    client = core()
    client.transaction("b@example.com")
    assert client.reply("RSET") == (250, "2.0.0 Flushed")
    assert client.session.envelope.mail_from is None
    assert client.session.envelope.rcpt_to == []
    assert client.reply("DATA") == (503, "5.5.1 Error: need MAIL command")
    assert client.reply("MAIL FROM:<c@example.com>")[0] == 250  # not "nested"


def test_ehlo_again_resets_the_transaction(core):
    client = core()
    client.transaction("b@example.com")
    assert client.codes("EHLO again.test\r\n") == [250]
    assert client.session.envelope.mail_from is None
    assert client.session.host_name_appears_as == "again.test"


@pytest.mark.parametrize("verb", ["VRFY", "HELP", "NOOP", "EXPN", "RSET"])
def test_disabled_commands_answer_as_unknown(core, verb):
    client = core(disabled_commands=frozenset({verb}))
    assert client.reply(f"{verb} x" if verb in ("VRFY", "EXPN") else verb) == (
        500,
        "5.5.2 Error: command not recognized",
    )


def test_disabled_command_in_lower_case_is_still_disabled(core):
    client = core(disabled_commands=frozenset({"VRFY"}))
    assert client.reply("vrfy someone")[0] == 500


def test_starttls_without_tls_is_unknown(core):
    assert core(starttls=False).reply("STARTTLS") == (500, "5.5.2 Error: command not recognized")


def test_enhanced_codes_can_be_hidden(core):
    client = core(hide_enhancedstatuscodes=True)
    assert client.reply("NOOP") == (250, "OK")
    assert client.reply("FOO") == (500, "Error: command not recognized")
    assert client.reply("MAIL FROM:<a@example.com>") == (503, "Error: send HELO/EHLO first")


def test_helo_reply_and_greeting_never_carry_enhanced_codes(core):
    client = core()
    assert not client.greeting.startswith(b"220 2.")
    [(code, lines)] = client.replies("EHLO c\r\n")
    assert all(not line.startswith("2.") for line in lines)


def test_non_utf8_command_is_refused(core):
    client = core()
    assert client.replies(b"NOOP \xff\xfe\r\n") == [(500, ["5.5.2 Error: command is not valid UTF-8"])]


def test_control_characters_in_commands_are_refused(core):
    client = core()
    assert client.replies(b"NOOP \x00x\r\n") == [(500, ["5.5.2 Error: control characters are not allowed in commands"])]
    assert client.replies(b"EHLO a\rMAIL FROM:<x@y.z>\r\n")[0][0] == 500  # a bare CR cannot hide a command
    assert client.session.envelope.mail_from is None


def test_bare_lf_ends_a_command_by_default(core):
    client = core()
    assert client.codes(b"NOOP\nNOOP\r\n") == [250, 250]


def test_bare_lf_command_with_reject_policy(core):
    client = core(bare_lf="reject")
    assert client.replies(b"NOOP\n") == [(500, ["5.5.2 Error: bare <LF> received, commands must end with CRLF"])]
    assert client.codes(b"NOOP\r\n") == [250]


def test_lmtp_needs_lhlo(core):
    client = core(lmtp=True)
    assert client.reply("EHLO c") == (500, "5.5.1 Error: EHLO not allowed in LMTP server")
    assert client.reply("MAIL FROM:<a@example.com>") == (503, "5.5.1 Error: send LHLO first")
    assert client.replies("LHLO c\r\n")[0][0] == 250
    assert client.session.transmission_type == "LMTP"


def test_lhlo_in_smtp_is_unknown(core):
    assert core().reply("LHLO c") == (500, "5.5.2 Error: command not recognized")


def test_reply_text_from_handler_cannot_inject_lines(core):
    from smtpgate import SMTPError

    client = core(decide=lambda event: SMTPError(550, "no\r\n250 fake"))
    client.send("EHLO c\r\n")
    out = client.send("MAIL FROM:<a@example.com>\r\n")
    replies = parse_replies(out)
    assert [code for code, _ in replies] == [550]
    assert replies[0][1] == ["5.7.1 no", "5.7.1 250 fake"]


def test_accept_without_pending_event_is_an_error(core):
    client = core()
    with pytest.raises(RuntimeError):
        client.core.accept()


def test_helo_response_with_other_braces_does_not_crash(core):
    client = core(helo_response="Hello {friend}, welcome")
    [(code, lines)] = client.replies("EHLO c\r\n")
    assert code == 250

"""The exact reply texts the core sends by itself (docs/replies.md), line for line."""

from __future__ import annotations

import pytest


@pytest.fixture
def client(core):
    c = core(size=1000)
    assert c.codes("EHLO client.test\r\n") == [250]
    return c


@pytest.mark.parametrize(
    ("argument", "reason"),
    [
        ("FROM a@example.com", "syntax: FROM:<address>"),
        ("FROM:a@example.com", "address must be enclosed in <>"),
        ("FROM:<a@example.com>SIZE=1", "expected a space after the address"),
        ("FROM:<@bad_route:a@example.com>", "bad source route"),
        ("FROM:<a\u200b@example.com>", "control or invisible characters in address"),
        ("FROM:<" + "a" * 250 + "@example.com>", "address too long"),
        ("FROM:<a..b@example.com>", "bad local part"),
        ("FROM:<a@example..com>", "bad domain"),
        ("FROM:<a@example.com> =1", "bad parameter syntax '=1'"),
        ("FROM:<a@example.com> SIZE=1 size=2", "duplicate SIZE parameter"),
        ("FROM:<a@example.com> ENVID=a+0Db", "control characters in ENVID parameter"),
    ],
)
def test_bad_sender_reasons(client, argument, reason):
    assert client.reply(f"MAIL {argument}") == (501, f"5.1.7 Error: bad sender address syntax ({reason})")


def test_null_recipient_reason(client):
    client.send("MAIL FROM:<a@example.com>\r\n")
    assert client.reply("RCPT TO:<>") == (
        501,
        "5.1.3 Error: bad recipient address syntax (the null address is not allowed here)",
    )


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        ("MAIL FROM:<a@example.com> SIZE=x", (501, "5.5.4 Error: bad message size syntax")),
        (
            "MAIL FROM:<a@example.com> BODY=9BIT",
            (501, "5.5.4 Error: BODY parameter must be 7BIT or 8BITMIME or BINARYMIME"),
        ),
        ("MAIL FROM:<a@example.com> SMTPUTF8=yes", (501, "5.5.4 Error: SMTPUTF8 parameter does not take a value")),
        ("MAIL FROM:<a@example.com> RET=ALL", (501, "5.5.4 Error: RET parameter must be FULL or HDRS")),
        ("MAIL FROM:<a@example.com> XYZ", (555, "5.5.4 Error: unsupported parameter XYZ")),
        (
            "MAIL FROM:<ü@example.com>",
            (553, "5.6.7 Error: non-ASCII address needs the SMTPUTF8 parameter"),
        ),
    ],
)
def test_mail_parameter_replies(client, line, reply):
    assert client.reply(line) == reply


def test_body_value_without_chunking(core):
    client = core(chunking=False)
    client.send("EHLO c\r\n")
    assert client.reply("MAIL FROM:<a@example.com> BODY=BINARYMIME") == (
        501,
        "5.5.4 Error: BODY parameter must be 7BIT or 8BITMIME",
    )


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (
            "RCPT TO:<b@example.com> NOTIFY=SOMETIMES",
            (501, "5.5.4 Error: NOTIFY parameter must be NEVER, SUCCESS, FAILURE, or DELAY"),
        ),
        (
            "RCPT TO:<b@example.com> NOTIFY=NEVER,DELAY",
            (501, "5.5.4 Error: NOTIFY=NEVER cannot be combined with other values"),
        ),
        (
            "RCPT TO:<b@example.com> ORCPT=b@example.com",
            (501, "5.5.4 Error: bad ORCPT parameter syntax, expected type;address"),
        ),
        ("RCPT TO:<b@example.com> XYZ=1", (555, "5.5.4 Error: unsupported parameter XYZ")),
        ("RCPT TO:<ü@example.com>", (553, "5.6.7 Error: non-ASCII address needs the SMTPUTF8 parameter on MAIL")),
    ],
)
def test_rcpt_parameter_replies(client, line, reply):
    client.send("MAIL FROM:<a@example.com>\r\n")
    assert client.reply(line) == reply


def test_helo_hostname_too_long_text(client):
    assert client.reply("HELO " + "h" * 256) == (501, "5.5.4 Error: bad hostname syntax")


def test_enhanced_codes_are_left_out_everywhere_when_hidden(core):
    client = core(hide_enhancedstatuscodes=True, size=10)
    out = client.replies(
        "EHLO c\r\nMAIL FROM:<a@example.com> SIZE=99\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
        "DATA\r\n0123456789abc\r\n.\r\nVRFY x\r\nHELP\r\nFOO\r\nQUIT\r\n"
    )
    texts = [lines[0] for _, lines in out]
    assert [code for code, _ in out] == [250, 552, 250, 250, 354, 552, 252, 214, 500, 221]
    for text in texts:
        assert not text[:1].isdigit() or not text[1:2] == ".", text
    assert texts[1] == "Error: message exceeds fixed maximum message size 10"
    assert texts[-1] == "Bye"

"""MAIL FROM / RCPT TO in the core: addresses, parameters, limits."""

from __future__ import annotations

import pytest

from smtpgate.protocol.events import MailFrom, RcptTo


@pytest.fixture
def client(core):
    c = core(size=10_000)
    assert c.codes("EHLO client.test\r\n") == [250]
    return c


def mail_event(client):
    return [e for e in client.events if isinstance(e, MailFrom)][-1]


def test_null_sender(client):
    assert client.reply("MAIL FROM:<>") == (250, "2.1.0 Accepted")
    assert mail_event(client).address.address == ""
    assert client.session.envelope.mail_from.address == ""


def test_null_recipient_is_refused(client):
    client.send("MAIL FROM:<>\r\n")
    code, text = client.reply("RCPT TO:<>")
    assert code == 501 and text.startswith("5.1.3 ")


@pytest.mark.parametrize(
    "address",
    [
        '"john doe"@example.com',
        '"a>b"@example.com',
        '"quote\\"inside"@example.com',
        '"<@>"@example.com',
    ],
)
def test_quoted_local_parts(client, address):
    assert client.reply(f"MAIL FROM:<{address}>")[0] == 250
    assert mail_event(client).address.address == address
    assert client.reply(f"RCPT TO:<{address}>")[0] == 250
    assert client.session.envelope.rcpt_to[-1].address == address


@pytest.mark.parametrize(
    ("path", "address"),
    [
        ("@relay.example:user@example.com", "user@example.com"),
        ("@a.example,@b.example:user@example.com", "user@example.com"),
    ],
)
def test_source_routes_are_ignored(client, path, address):
    assert client.reply(f"MAIL FROM:<{path}>")[0] == 250
    assert mail_event(client).address.address == address
    assert client.reply(f"RCPT TO:<{path}>")[0] == 250
    assert client.session.envelope.rcpt_to[0].address == address


def test_bad_source_route(client):
    assert client.reply("MAIL FROM:<@bad..route:user@example.com>")[0] == 501


def test_smtputf8_addresses(client):
    assert client.reply("MAIL FROM:<jösé@exämple.com> SMTPUTF8")[0] == 250
    assert client.session.envelope.smtp_utf8 is True
    assert client.reply("RCPT TO:<用户@例子.广告>")[0] == 250
    assert client.session.envelope.rcpt_to[0].address == "用户@例子.广告"


def test_utf8_address_without_smtputf8(client):
    assert client.reply("MAIL FROM:<jösé@example.com>") == (
        553,
        "5.6.7 Error: non-ASCII address needs the SMTPUTF8 parameter",
    )
    assert client.reply("MAIL FROM:<a@example.com>")[0] == 250
    assert client.reply("RCPT TO:<jösé@example.com>")[0] == 553


@pytest.mark.parametrize(
    "argument",
    [
        "FROM:a@example.com",
        "FROM:<a@example.com",
        "FROM <a@example.com>",
        "TO:<a@example.com>",
        "FROM:<a@@example.com>",
        "FROM:<a@>",
        "FROM:<@example.com>",
        "FROM:<a.@example.com>",
        "FROM:<.a@example.com>",
        "FROM:<a..b@example.com>",
        "FROM:<a b@example.com>",
        "FROM:<a@-example.com>",
        "FROM:<a@exa_mple.com>",
        "FROM:<a@[300.1.1.1]>",
        "FROM:<a@example.com>junk",
        "FROM:<a@example.com> =x",
        "FROM:<a@example.com> SIZE=1 SIZE=2",
        "FROM:<a\u200b@example.com>",
        "FROM:<" + "a" * 250 + "@example.com>",
        "",
    ],
)
def test_bad_sender_syntax_is_501(client, argument):
    code, text = client.reply(f"MAIL {argument}")
    assert code == 501, text
    assert text.startswith("5."), text
    assert client.session.envelope.mail_from is None
    assert not [e for e in client.events if isinstance(e, MailFrom)]


@pytest.mark.parametrize(
    "argument",
    ["TO:b@example.com", "TO:<b@example.com", "FROM:<b@example.com>", "TO:<b@exa mple.com>", "TO:<b>", ""],
)
def test_bad_recipient_syntax_is_501(client, argument):
    client.send("MAIL FROM:<a@example.com>\r\n")
    code, text = client.reply(f"RCPT {argument}")
    assert code == 501
    assert text.startswith("5.")
    assert client.session.envelope.rcpt_to == []


@pytest.mark.parametrize(
    "address", ["a@[127.0.0.1]", "a@[IPv6:::1]", "first.last@sub.example.com", "a+tag@example.com", "x@localhost"]
)
def test_valid_addresses(client, address):
    assert client.reply(f"MAIL FROM:<{address}>")[0] == 250
    assert mail_event(client).address.address == address


def test_spaces_around_colon_are_tolerated(client):
    assert client.reply("MAIL FROM: <a@example.com>")[0] == 250
    assert client.reply("RCPT TO : <b@example.com>")[0] == 250


def test_postmaster_without_domain_is_a_valid_recipient(client):
    client.send("MAIL FROM:<a@example.com>\r\n")
    assert client.reply("RCPT TO:<Postmaster>")[0] == 250


def test_params_are_parsed_and_kept(client):
    assert client.reply("MAIL FROM:<a@example.com> SIZE=100 BODY=8BITMIME")[0] == 250
    event = mail_event(client)
    assert event.address.args == {"SIZE": "100", "BODY": "8BITMIME"}
    assert client.session.envelope.body_type == "8bitmime"


def test_unknown_param_is_555(client):
    assert client.reply("MAIL FROM:<a@example.com> FOO=bar") == (555, "5.5.4 Error: unsupported parameter FOO")


def test_unknown_param_accepted_when_asked(core):
    client = core(accept_unknown_params=True)
    client.send("EHLO c\r\n")
    assert client.reply("MAIL FROM:<a@example.com> X-FOO=b+41r")[0] == 250
    assert mail_event(client).address.args == {"X-FOO": "bAr"}


def test_size_over_limit_is_552_at_mail(client):
    assert client.reply("MAIL FROM:<a@example.com> SIZE=10001") == (
        552,
        "5.3.4 Error: message exceeds fixed maximum message size 10000",
    )
    assert client.session.envelope.mail_from is None
    assert client.reply("MAIL FROM:<a@example.com> SIZE=10000")[0] == 250


@pytest.mark.parametrize("value", ["SIZE", "SIZE=", "SIZE=-1", "SIZE=abc", "SIZE=1" + "0" * 20])
def test_bad_size_values(client, value):
    assert client.reply(f"MAIL FROM:<a@example.com> {value}")[0] == 501


def test_hide_size_skips_the_size_check(core):
    client = core(size=100, hide_size=True)
    client.send("EHLO c\r\n")
    assert client.reply("MAIL FROM:<a@example.com> SIZE=999999")[0] == 250


def test_max_recipients(core):
    client = core(max_recipients=2)
    client.send("EHLO c\r\nMAIL FROM:<a@example.com>\r\n")
    assert client.codes("RCPT TO:<b1@example.com>\r\nRCPT TO:<b2@example.com>\r\n") == [250, 250]
    assert client.reply("RCPT TO:<b3@example.com>") == (452, "4.5.3 Error: too many recipients")
    # Already accepted: not a new recipient, so it does not count against the limit.
    assert client.reply("RCPT TO:<B1@example.com>")[0] == 250
    assert [r.address for r in client.session.envelope.rcpt_to] == ["B1@example.com", "b2@example.com"]


def test_duplicate_rcpt_is_not_added_twice(client):
    client.send("MAIL FROM:<a@example.com>\r\n")
    assert client.codes("RCPT TO:<b@example.com>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<B@EXAMPLE.COM>\r\n") == [
        250,
        250,
        250,
    ]
    assert len(client.session.envelope.rcpt_to) == 1
    assert client.codes("DATA\r\nx\r\n.\r\n") == [354, 250]
    [(envelope, _, _)] = client.messages
    assert len(envelope.rcpt_to) == 1


def test_rcpt_events_carry_params(client):
    client.send("MAIL FROM:<a@example.com>\r\n")
    assert client.reply("RCPT TO:<b@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.com")[0] == 250
    event = [e for e in client.events if isinstance(e, RcptTo)][-1]
    assert event.address.args["NOTIFY"] == "SUCCESS,FAILURE"
    assert event.address.dsn == {"notify": ["SUCCESS", "FAILURE"], "orcpt": "rfc822;b@example.com"}


def test_each_transaction_starts_clean(client):
    client.transaction("b@example.com")
    assert client.codes("DATA\r\none\r\n.\r\n") == [354, 250]
    assert client.session.envelope.mail_from is None
    assert client.session.transaction == 2
    client.transaction("c@example.com", sender="z@example.com")
    assert client.codes("DATA\r\ntwo\r\n.\r\n") == [354, 250]
    first, second = client.messages
    assert [r.address for r in first[0].rcpt_to] == ["b@example.com"]
    assert [r.address for r in second[0].rcpt_to] == ["c@example.com"]
    assert second[0].mail_from.address == "z@example.com"

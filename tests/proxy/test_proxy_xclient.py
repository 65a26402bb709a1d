"""XCLIENT and XFORWARD (Postfix's commands for a trusted proxy or content filter), as raw
exchanges: advertising, the new identity and greeting after XCLIENT, session.x_client and
session.x_forward, trust lists, and the refusals."""

from __future__ import annotations

import pytest

from smtpgate import SMTPError
from support import Recorder

pytestmark = pytest.mark.timeout(60)

XCLIENT_EHLO = "XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT"
XFORWARD_EHLO = "XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE"


def ehlo_lines(client) -> list[str]:
    code, text = client.command("EHLO relay.example")
    assert code == 250, text
    return text.split("\n")[1:]


def greeted(raw_client, running):
    client = raw_client(running.port)
    assert client.reply()[0] == 220
    return client


def deliver(client) -> None:
    assert client.command("MAIL FROM:<a@example.com>")[0] == 250
    assert client.command("RCPT TO:<b@example.com>")[0] == 250
    assert client.command("DATA")[0] == 354
    code, text = client.command("Subject: x\r\n\r\nforwarded\r\n.")
    assert code == 250, text


def start(start_server, received, **options):
    connects = Recorder()
    running = start_server(
        on_connect=lambda session: connects.add((session.remote_address, session.remote_port)),
        on_data=received.on_data,
        **options,
    )
    return running, connects


# ----------------------------------------------------------------------------- advertising


@pytest.mark.parametrize(
    ("options", "xclient", "xforward"),
    [
        ({}, False, False),
        ({"use_xclient": True}, True, False),
        ({"use_xforward": True}, False, True),
        ({"use_xclient": ["127.0.0.1"], "use_xforward": ["127.0.0.0/8"]}, True, True),
        ({"use_xclient": ["10.0.0.0/8"], "use_xforward": ["10.0.0.0/8"]}, False, False),
        ({"use_xclient": [], "use_xforward": False}, False, False),
    ],
    ids=["default", "xclient", "xforward", "trusted-lists", "untrusted-lists", "empty-list"],
)
def test_advertised_in_ehlo_only_when_enabled_for_the_peer(start_server, raw_client, options, xclient, xforward):
    running = start_server(**options)
    lines = ehlo_lines(greeted(raw_client, running))
    assert (XCLIENT_EHLO in lines) is xclient
    assert (XFORWARD_EHLO in lines) is xforward


@pytest.mark.parametrize("options", [{}, {"use_xclient": ["10.0.0.0/8"]}], ids=["disabled", "untrusted"])
def test_xclient_refused_when_not_trusted(start_server, raw_client, received, options):
    running, connects = start(start_server, received, **options)
    client = greeted(raw_client, running)
    code, text = client.command("XCLIENT ADDR=192.0.2.1")
    assert code == 550 and "5.7.0" in text
    assert client.command("EHLO relay.example")[0] == 250
    deliver(client)
    received.wait_for(1)
    session = received.messages[0][3]
    assert session.remote_address == "127.0.0.1" and session.x_client == {}
    assert len(connects.items) == 1


@pytest.mark.parametrize("options", [{}, {"use_xforward": ["10.0.0.0/8"]}], ids=["disabled", "untrusted"])
def test_xforward_refused_when_not_trusted(start_server, raw_client, options):
    running = start_server(**options)
    client = greeted(raw_client, running)
    code, text = client.command("XFORWARD ADDR=192.0.2.1")
    assert code == 550 and "5.7.0" in text


# ----------------------------------------------------------------------------- XCLIENT


def test_xclient_sets_the_client_and_greets_again(start_server, raw_client, received):
    running, connects = start(start_server, received, use_xclient=["127.0.0.1"])
    client = greeted(raw_client, running)
    ehlo_lines(client)
    code, text = client.command(
        "XCLIENT ADDR=192.0.2.1 PORT=4000 NAME=Client.Example HELO=helo.example PROTO=ESMTP "
        "LOGIN=alice DESTADDR=198.51.100.1 DESTPORT=25"
    )
    assert code == 220 and text.startswith("mx.test ESMTP"), "a new greeting, as Postfix sends"
    assert connects.wait_for(2)[1] == ("192.0.2.1", 4000), "on_connect checks the new identity"
    lines = ehlo_lines(client)
    assert XCLIENT_EHLO not in lines, "no second XCLIENT once the address changed"
    deliver(client)
    received.wait_for(1)
    session = received.messages[0][3]
    assert (session.remote_address, session.remote_port) == ("192.0.2.1", 4000)
    assert session.client_hostname == "client.example"
    assert session.user == "alice"
    assert session.x_client == {
        "ADDR": "192.0.2.1",
        "PORT": "4000",
        "NAME": "Client.Example",
        "HELO": "helo.example",
        "PROTO": "ESMTP",
        "LOGIN": "alice",
        "DESTADDR": "198.51.100.1",
        "DESTPORT": "25",
    }
    assert session.host_name_appears_as == "relay.example"  # the EHLO after XCLIENT


def test_xclient_ipv6_and_xtext(start_server, raw_client, received):
    running, _ = start(start_server, received, use_xclient=True)
    client = greeted(raw_client, running)
    assert client.command("XCLIENT ADDR=IPV6:2001:DB8::1 HELO=a+2Bb")[0] == 220
    assert client.command("EHLO relay.example")[0] == 250
    deliver(client)
    received.wait_for(1)
    session = received.messages[0][3]
    assert session.remote_address == "2001:db8::1"
    assert session.client_hostname == "[2001:db8::1]"
    assert session.x_client["HELO"] == "a+b"


def test_xclient_unavailable_name_and_attributes_in_several_commands(start_server, raw_client, received):
    running, _ = start(start_server, received, use_xclient=True)
    client = greeted(raw_client, running)
    assert client.command("XCLIENT NAME=[UNAVAILABLE] LOGIN=[UNAVAILABLE]")[0] == 220
    assert XCLIENT_EHLO in ehlo_lines(client), "no address yet: XCLIENT still offered"
    assert client.command("XCLIENT ADDR=192.0.2.9 PORT=[TEMPUNAVAIL]")[0] == 220
    assert client.command("XCLIENT ADDR=192.0.2.10")[0] == 550
    assert client.command("EHLO relay.example")[0] == 250
    deliver(client)
    received.wait_for(1)
    session = received.messages[0][3]
    assert session.remote_address == "192.0.2.9"
    assert session.client_hostname == "[192.0.2.9]"
    assert session.user is None
    assert session.x_client["NAME"] == "[UNAVAILABLE]"


@pytest.mark.parametrize(
    "command",
    [
        "XCLIENT",
        "XCLIENT ADDR",
        "XCLIENT ADDR=not-an-ip",
        "XCLIENT ADDR=192.0.2.300",
        "XCLIENT PORT=65536",
        "XCLIENT PORT=-1",
        "XCLIENT NAME=bad_name!",
        "XCLIENT PROTO=HTTP",
        "XCLIENT IDENT=x",  # an XFORWARD attribute
        "XCLIENT FOO=bar",
    ],
)
def test_xclient_bad_syntax_is_501_and_changes_nothing(start_server, raw_client, received, command):
    running, _ = start(start_server, received, use_xclient=True)
    client = greeted(raw_client, running)
    code, text = client.command(command)
    assert code == 501 and "5.5.4" in text
    assert client.command("EHLO relay.example")[0] == 250
    deliver(client)
    received.wait_for(1)
    session = received.messages[0][3]
    assert session.remote_address == "127.0.0.1" and session.x_client == {}


def test_xclient_inside_a_transaction_is_503(start_server, raw_client, received):
    running, _ = start(start_server, received, use_xclient=True)
    client = greeted(raw_client, running)
    ehlo_lines(client)
    assert client.command("MAIL FROM:<a@example.com>")[0] == 250
    code, text = client.command("XCLIENT ADDR=192.0.2.1")
    assert code == 503 and "5.5.1" in text


def test_on_connect_refusing_the_new_client_ends_the_session(start_server, raw_client):
    def on_connect(session):
        if session.remote_address.startswith("192.0.2."):
            raise SMTPError(554, "Your address is blocked")

    running = start_server(use_xclient=True, on_connect=on_connect)
    client = greeted(raw_client, running)
    code, text = client.command("XCLIENT ADDR=192.0.2.66")
    assert code == 554 and "blocked" in text
    assert client.is_closed()


def test_xclient_after_a_proxy_header_is_judged_by_the_proxied_address(start_server, raw_client):
    """Trust lists are checked against the address the PROXY header gave."""
    from proxy_support import v1

    running = start_server(use_proxy=True, use_xclient=["192.0.2.0/24"])
    trusted = raw_client(running.port)
    trusted.send(v1("192.0.2.5"))
    assert trusted.reply()[0] == 220
    assert XCLIENT_EHLO in ehlo_lines(trusted)
    other = raw_client(running.port)
    other.send(v1("203.0.113.5"))
    assert other.reply()[0] == 220
    assert XCLIENT_EHLO not in ehlo_lines(other)
    assert other.command("XCLIENT ADDR=192.0.2.1")[0] == 550


# ----------------------------------------------------------------------------- XFORWARD


def test_xforward_records_attributes_and_keeps_the_client(start_server, raw_client, received):
    running, connects = start(start_server, received, use_xforward=["127.0.0.1"])
    client = greeted(raw_client, running)
    ehlo_lines(client)
    code, text = client.command("XFORWARD NAME=client.example ADDR=192.0.2.1 PORT=4000 PROTO=ESMTP")
    assert code == 250 and "2.0.0" in text
    assert client.command("XFORWARD HELO=helo.example IDENT=abc123 SOURCE=REMOTE")[0] == 250
    deliver(client)
    received.wait_for(1)
    session = received.messages[0][3]
    assert session.x_forward == {
        "NAME": "client.example",
        "ADDR": "192.0.2.1",
        "PORT": "4000",
        "PROTO": "ESMTP",
        "HELO": "helo.example",
        "IDENT": "abc123",
        "SOURCE": "REMOTE",
    }
    assert session.remote_address == "127.0.0.1", "XFORWARD informs; it does not replace the peer"
    assert len(connects.items) == 1


@pytest.mark.parametrize(
    "command",
    ["XFORWARD", "XFORWARD SOURCE=[UNAVAILABLE]", "XFORWARD SOURCE=ELSEWHERE", "XFORWARD LOGIN=x", "XFORWARD ADDR=x"],
)
def test_xforward_bad_syntax_is_501(start_server, raw_client, command):
    running = start_server(use_xforward=True)
    client = greeted(raw_client, running)
    code, text = client.command(command)
    assert code == 501 and "5.5.4" in text


def test_xforward_inside_a_transaction_is_503(start_server, raw_client):
    running = start_server(use_xforward=True)
    client = greeted(raw_client, running)
    ehlo_lines(client)
    assert client.command("MAIL FROM:<a@example.com>")[0] == 250
    assert client.command("XFORWARD ADDR=192.0.2.1")[0] == 503


def test_xforward_again_before_the_next_transaction(start_server, raw_client, received):
    running, _ = start(start_server, received, use_xforward=True)
    client = greeted(raw_client, running)
    ehlo_lines(client)
    assert client.command("XFORWARD ADDR=192.0.2.1")[0] == 250
    deliver(client)
    assert client.command("XFORWARD ADDR=192.0.2.2")[0] == 250
    deliver(client)
    received.wait_for(2)
    assert received.messages[1][3].x_forward["ADDR"] == "192.0.2.2"


def test_helo_is_needed_again_after_xclient(start_server, raw_client):
    running = start_server(use_xclient=True)
    client = greeted(raw_client, running)
    ehlo_lines(client)
    assert client.command("XCLIENT ADDR=192.0.2.1 HELO=helo.example")[0] == 220
    code, text = client.command("MAIL FROM:<a@example.com>")
    assert code == 503 and "HELO/EHLO" in text
    ehlo_lines(client)
    assert client.command("MAIL FROM:<a@example.com>")[0] == 250


def test_xclient_login_counts_as_authenticated(start_server, raw_client):
    """A submission server behind a proxy that authenticated the user itself."""
    running = start_server(use_xclient=True, on_auth=lambda auth, session: None)
    client = greeted(raw_client, running)
    ehlo_lines(client)
    code, text = client.command("MAIL FROM:<a@example.com>")
    assert code == 530, "without XCLIENT LOGIN, authentication is required"
    assert client.command("XCLIENT LOGIN=alice")[0] == 220
    ehlo_lines(client)
    assert client.command("MAIL FROM:<a@example.com>")[0] == 250
    assert client.command("RCPT TO:<b@example.com>")[0] == 250


@pytest.mark.parametrize(
    ("value", "expected"),
    [("IPV6:::ffff:192.0.2.1", "192.0.2.1"), ("::ffff:192.0.2.1", "192.0.2.1"), ("2001:db8::1%eth0", "2001:db8::1")],
)
def test_xclient_addresses_are_normalised_like_proxy_addresses(start_server, raw_client, received, value, expected):
    running, connects = start(start_server, received, use_xclient=True)
    client = greeted(raw_client, running)
    assert client.command(f"XCLIENT ADDR={value}")[0] == 220
    address, _ = connects.wait_for(2)[1]
    assert address == expected

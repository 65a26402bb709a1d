"""A real HAProxy (TCP mode, send-proxy / send-proxy-v2) in front of smtpgate: the handlers
see the client's own address and port, not HAProxy's; implicit TLS behind it; several
backends; health checks that leave no log lines (and the check set-up that does).

HAProxy runs as ``haproxy -f <tmp>/haproxy.cfg -db`` (foreground, no daemon), killed in
the fixture's finalizer. Skipped when ``haproxy`` is not on PATH.
"""

from __future__ import annotations

import logging
import smtplib
import ssl

import pytest
from proxy_support import GREETING_CHECK

from support import Recorder, smtpgate_messages, wait_until

pytestmark = pytest.mark.timeout(60)

MESSAGE = b"Subject: through haproxy\r\n\r\nhello\r\n"


def recording_server(start_server, **options):
    """A server whose on_connect and on_data record the session."""
    connects, messages = Recorder(), Recorder()

    async def on_data(stream, session):
        messages.add((await stream.read(), session))

    running = start_server(
        on_connect=lambda session: connects.add((session.remote_address, session.remote_port)),
        on_data=on_data,
        **options,
    )
    return running, connects, messages


@pytest.mark.parametrize("send_proxy", ["send-proxy", "send-proxy-v2"])
def test_client_address_through_haproxy(start_server, haproxy, send_proxy):
    running, connects, messages = recording_server(start_server, use_proxy=["127.0.0.1"])
    proxy = haproxy([running.port], server_options=send_proxy)
    with smtplib.SMTP("127.0.0.1", proxy.port, timeout=10) as client:
        client_address = client.sock.getsockname()
        assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}
    body, session = messages.wait_for(1)[0]
    assert body == MESSAGE
    assert (session.remote_address, session.remote_port) == client_address
    assert connects.items[0] == client_address
    assert session.local_port == running.port  # the server's own end is not rewritten


def test_without_use_proxy_the_handler_would_see_haproxy(start_server, haproxy):
    """The control experiment: HAProxy without send-proxy, smtpgate without use_proxy."""
    running, connects, _ = recording_server(start_server)
    proxy = haproxy([running.port], server_options="")
    with smtplib.SMTP("127.0.0.1", proxy.port, timeout=10) as client:
        client_address = client.sock.getsockname()
        client.noop()
    seen = connects.wait_for(1)[0]
    assert seen[0] == "127.0.0.1" and seen != client_address  # HAProxy's own outgoing port


def test_implicit_tls_behind_haproxy(start_server, haproxy):
    """Port 465 style: the PROXY header comes first, then the TLS handshake."""
    running, connects, messages = recording_server(start_server, use_proxy=["127.0.0.1"], secure=True)
    proxy = haproxy([running.port])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the generated development certificate
    with smtplib.SMTP_SSL("127.0.0.1", proxy.port, timeout=10, context=context) as client:
        client_address = client.sock.getsockname()
        assert client.sendmail("a@example.com", ["b@example.com"], MESSAGE) == {}
    _, session = messages.wait_for(1)[0]
    assert session.secure is True
    assert (session.remote_address, session.remote_port) == client_address


def test_several_backends_all_see_real_clients(start_server, haproxy):
    """The docs' layout: one HAProxy, several smtpgate servers, leastconn, greeting checks."""
    first = recording_server(start_server, use_proxy=["127.0.0.1"])
    second = recording_server(start_server, use_proxy=["127.0.0.1"])
    proxy = haproxy(
        [first[0].port, second[0].port], server_options="send-proxy-v2 check inter 2s", backend_options=GREETING_CHECK
    )
    clients = []
    try:
        for _ in range(6):  # kept open, so leastconn has to spread them
            client = smtplib.SMTP("127.0.0.1", proxy.port, timeout=10)
            client.ehlo()
            clients.append(client)
        addresses = {client.sock.getsockname() for client in clients}
        for client in clients:
            client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    finally:
        for client in clients:
            client.close()
    first[2].wait_for(1)  # both backends received mail
    second[2].wait_for(1)
    wait_until(lambda: len(first[2].items) + len(second[2].items) == 6, what="six messages")
    sessions = [session for _, session in first[2].items + second[2].items]
    assert {(s.remote_address, s.remote_port) for s in sessions} == addresses


HEALTH_CHECKS = {
    "greeting": GREETING_CHECK,
    "smtpchk": "    option smtpchk EHLO haproxy.test\n",
    "plain-connect": "",  # L4 check: a v2 LOCAL header, then a reset
}


@pytest.mark.parametrize("check", sorted(HEALTH_CHECKS))
def test_health_checks_leave_no_log_lines(start_server, haproxy, smtpgate_log, check):
    """HAProxy's checks (with the PROXY header it adds by itself) are logged at DEBUG only,
    and never mark the server down. They do run on_connect/on_close."""
    closes = Recorder()
    running, connects, _ = recording_server(start_server, use_proxy=["127.0.0.1"], on_close=closes.add)
    before = len(smtpgate_messages(smtpgate_log, logging.INFO))
    proxy = haproxy(
        [running.port], server_options="send-proxy-v2 check inter 100ms", backend_options=HEALTH_CHECKS[check]
    )
    closes.wait_for(5)
    assert len(connects.items) >= 5
    assert all(address == "127.0.0.1" for address, _ in connects.items)
    assert smtpgate_messages(smtpgate_log, logging.INFO)[before:] == []
    assert "is DOWN" not in proxy.log()
    with smtplib.SMTP("127.0.0.1", proxy.port, timeout=10) as client:
        assert client.noop()[0] == 250


def test_health_check_without_the_header_warns_every_time(start_server, haproxy, smtpgate_log):
    """The set-up to avoid: an explicit ``tcp-check connect`` without ``send-proxy`` sends no
    PROXY header; the check waits for a greeting, smtpgate for a header, until proxy_timeout:
    every check is a WARNING, and the check fails."""
    running = start_server(use_proxy=["127.0.0.1"], proxy_timeout=0.3)
    proxy = haproxy(
        [running.port],
        server_options="send-proxy-v2 check inter 100ms",
        backend_options="    option tcp-check\n    tcp-check connect\n    tcp-check expect rstring ^220\n",
    )
    wait_until(
        lambda: len([m for m in smtpgate_messages(smtpgate_log, logging.WARNING) if "bad PROXY header" in m]) >= 3,
        timeout=10,
        what="three warnings",
    )
    wait_until(lambda: "is DOWN" in proxy.log(), timeout=15, what="HAProxy marking the server down")


def test_plain_check_on_implicit_tls_logs_every_check(start_server, haproxy, smtpgate_log):
    """Port 465 with an L4 check: the reset lands where the handshake should be, and each
    check is an INFO line (docs/deployment.md recommends check-ssl there)."""
    running = start_server(use_proxy=["127.0.0.1"], secure=True)
    haproxy([running.port], server_options="send-proxy-v2 check inter 100ms")
    wait_until(
        lambda: (
            len([m for m in smtpgate_messages(smtpgate_log, logging.INFO) if "TLS handshake with 127.0.0.1" in m]) >= 3
        ),
        timeout=10,
        what="three handshake failures",
    )


def test_tls_check_on_implicit_tls_is_quiet(start_server, haproxy, smtpgate_log):
    closes = Recorder()
    running = start_server(use_proxy=["127.0.0.1"], secure=True, on_close=closes.add)
    before = len(smtpgate_messages(smtpgate_log, logging.INFO))
    proxy = haproxy(
        [running.port],
        server_options="send-proxy-v2 check inter 100ms check-ssl verify none",
        backend_options=GREETING_CHECK,
    )
    closes.wait_for(4)
    assert smtpgate_messages(smtpgate_log, logging.INFO)[before:] == []
    assert "is DOWN" not in proxy.log()

"""The on_secure handler: when it runs, what it sees, and refusing from it."""

from __future__ import annotations

import smtplib
import ssl
import threading

import pytest
from tls_support import NamedSMTP_SSL, client_context, send_message, smtp, starttls

from smtpgate import SMTPError
from support import upgrade

pytestmark = pytest.mark.timeout(30)

MESSAGE = b"Subject: on_secure\r\n\r\nhello\r\n"


class SecureCalls:
    """An on_secure handler recording what it saw (it runs in the server thread)."""

    def __init__(self, refuse: BaseException | None = None) -> None:
        self.calls: list[dict] = []
        self.refuse = refuse
        self.lock = threading.Lock()

    def __call__(self, ssl_object, session):
        with self.lock:
            self.calls.append(
                {
                    "session": session,
                    "session_id": session.id,
                    "ssl_object": type(ssl_object).__name__,
                    "version": ssl_object.version(),
                    "cipher": ssl_object.cipher(),
                    "servername": session.servername,
                    "secure": session.secure,
                    "tls_version": session.tls_options.version if session.tls_options else None,
                    "peercert": ssl_object.getpeercert(),
                }
            )
        if self.refuse is not None:
            raise self.refuse


def test_called_once_after_starttls(start_server, received, certs, mx):
    on_secure = SecureCalls()
    running = start_server(on_data=received.on_data, on_secure=on_secure, **mx)
    with smtp(running.port) as client:
        client.ehlo()
        assert on_secure.calls == []
        client.starttls(context=client_context(certs))
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
        client.sendmail("a@example.com", ["c@example.com"], MESSAGE)
    received.wait_for(2)
    assert len(on_secure.calls) == 1
    call = on_secure.calls[0]
    assert call["session"] is received.messages[0][3]
    assert call["ssl_object"] == "SSLObject"
    assert call["version"] == "TLSv1.3"
    assert call["cipher"][0].startswith("TLS_")
    assert call["servername"] == "mx.test"
    assert call["secure"] is True
    assert call["tls_version"] == "TLSv1.3"
    assert call["peercert"] is None  # no client certificate was asked for


def test_called_once_after_implicit_tls(start_server, received, certs, mx):
    on_secure = SecureCalls()
    running = start_server(on_data=received.on_data, on_secure=on_secure, secure=True, **mx)
    with NamedSMTP_SSL("127.0.0.1", running.port, context=client_context(certs), timeout=10) as client:
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    received.wait_for(1)
    assert len(on_secure.calls) == 1
    call = on_secure.calls[0]
    assert call["session"] is received.messages[0][3]
    assert (call["version"], call["servername"], call["secure"]) == ("TLSv1.3", "mx.test", True)


def test_async_handler_and_order_after_on_connect(start_server, certs, mx, raw_client):
    order: list[str] = []

    async def on_connect(session):
        order.append("connect")

    async def on_secure(ssl_object, session):
        order.append(f"secure {ssl_object.version()} {session.servername}")

    running = start_server(on_connect=on_connect, on_secure=on_secure, secure=True, **mx)
    client = raw_client(running.port)
    upgrade(client, client_context(certs), "MX.TEST")
    assert client.reply()[0] == 220
    assert order == ["connect", "secure TLSv1.3 mx.test"]


def test_never_called_for_plaintext_sessions(smtpgate_server_factory, certs, mx):
    on_secure = SecureCalls()
    server = smtpgate_server_factory(on_secure=on_secure, **mx)
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    [message] = server.wait_for(1)
    assert message.secure is False
    assert on_secure.calls == []


def test_refusing_after_starttls_answers_554_and_closes(smtpgate_server_factory, certs, mx, raw_client):
    on_secure = SecureCalls(refuse=SMTPError(554, "No TLS for you"))
    server = smtpgate_server_factory(on_secure=on_secure, **mx)
    client = raw_client(server.port)
    starttls(client, client_context(certs))
    code, text = client.reply()  # sent as soon as the handshake is over, before any command
    assert code == 554
    assert "No TLS for you" in text
    assert client.is_closed(timeout=3)
    assert len(on_secure.calls) == 1
    # the server goes on serving
    on_secure.refuse = None
    other = raw_client(server.port)
    starttls(other, client_context(certs))
    assert other.command("EHLO client.test")[0] == 250
    send_message(other)
    server.wait_for(1)


def test_refusing_after_implicit_tls_answers_554_instead_of_the_greeting(start_server, certs, mx):
    on_secure = SecureCalls(refuse=SMTPError(554, "Not from you"))
    running = start_server(on_secure=on_secure, secure=True, **mx)
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        NamedSMTP_SSL("127.0.0.1", running.port, context=client_context(certs), timeout=10)
    assert refused.value.smtp_code == 554
    assert b"Not from you" in refused.value.smtp_error


def test_a_5xx_refusal_is_sent_as_554(start_server, certs, mx, raw_client):
    running = start_server(on_secure=SecureCalls(refuse=SMTPError(550, "Go away")), secure=True, **mx)
    client = raw_client(running.port)
    upgrade(client, client_context(certs))
    code, text = client.reply()
    assert code == 554 and "Go away" in text
    assert client.is_closed(timeout=3)


def test_a_421_refusal_is_kept(start_server, certs, mx, raw_client):
    running = start_server(on_secure=SecureCalls(refuse=SMTPError(421, "Busy, later")), **mx)
    client = raw_client(running.port)
    starttls(client, client_context(certs))
    code, text = client.reply()
    assert code == 421 and "Busy, later" in text
    assert client.is_closed(timeout=3)


@pytest.mark.parametrize("secure", [False, True], ids=["starttls", "implicit"])
def test_a_failing_handler_closes_with_421(secure, start_server, certs, mx, raw_client, events, smtpgate_log):
    running = start_server(on_secure=SecureCalls(refuse=RuntimeError("handler bug")), secure=secure, **mx)
    running.server.on("error", events.on_error)
    client = raw_client(running.port)
    if secure:
        upgrade(client, client_context(certs))
    else:
        starttls(client, client_context(certs))
    code, text = client.reply()
    assert client.is_closed(timeout=3)
    assert isinstance(events.wait_for_error()[0], RuntimeError)
    assert code == 421, f"{code} {text}"


def test_a_failing_handler_is_logged_and_the_connection_closed(start_server, certs, mx, raw_client, events):
    running = start_server(on_secure=SecureCalls(refuse=RuntimeError("handler bug")), **mx)
    running.server.on("error", events.on_error)
    client = raw_client(running.port)
    starttls(client, client_context(certs))
    code, _ = client.reply()
    assert code // 100 == 4
    assert client.is_closed(timeout=3)
    error, session = events.wait_for_error()
    assert isinstance(error, RuntimeError) and session is not None and session.secure


def test_ssl_object_is_the_live_connection(start_server, certs, mx, raw_client):
    """on_secure may keep the ssl_object: it is the connection's, e.g. for channel binding."""
    seen = {}

    def on_secure(ssl_object, session):
        seen["binding"] = ssl_object.get_channel_binding("tls-unique")
        seen["selected_alpn"] = ssl_object.selected_alpn_protocol()
        seen["server_side"] = ssl_object.server_side

    running = start_server(on_secure=on_secure, **mx)
    client = raw_client(running.port)
    starttls(client, client_context(certs))
    assert client.command("EHLO client.test")[0] == 250
    assert seen["server_side"] is True
    assert seen["selected_alpn"] is None
    # TLS 1.3 has no tls-unique binding; the call must still work
    assert seen["binding"] is None or isinstance(seen["binding"], bytes)
    assert client.sock.version() == "TLSv1.3"
    assert isinstance(client.sock, ssl.SSLSocket)

"""The shortest path a user takes: smtplib sends a message and the handler gets it."""

from __future__ import annotations

import smtplib


def test_smtplib_sends_a_message(start_server, received):
    running = start_server(on_data=received.on_data)
    with smtplib.SMTP(running.host, running.port, timeout=10) as client:
        refused = client.sendmail("a@example.com", ["b@example.com"], b"Subject: hi\r\n\r\nhello\r\n")
    assert refused == {}
    received.wait_for(1)
    mail_from, rcpts, body, session = received.messages[0]
    assert (mail_from, rcpts, body) == ("a@example.com", ["b@example.com"], b"Subject: hi\r\n\r\nhello\r\n")
    assert session.transmission_type == "ESMTP"


def test_uvloop_serves_a_session_with_starttls(received):
    """uvloop's transports are not asyncio.Transport subclasses: the server must not care."""
    uvloop = __import__("pytest").importorskip("uvloop")
    import ssl

    from smtpgate import ServerThread

    server = ServerThread(
        name="mx.test", disable_reverse_lookup=True, on_data=received.on_data, loop_factory=uvloop.new_event_loop
    )
    with server:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP(server.host, server.port, timeout=10) as client:
            client.starttls(context=context)
            client.sendmail("a@example.com", ["b@example.com"], b"Subject: uv\r\n\r\nloop\r\n")
        received.wait_for(1)
    assert received.messages[0][2] == b"Subject: uv\r\n\r\nloop\r\n"
    assert received.messages[0][3].secure is True

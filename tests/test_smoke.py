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

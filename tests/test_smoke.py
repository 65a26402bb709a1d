"""The shortest path a user takes: smtplib sends a message and the handler gets it."""

from __future__ import annotations

import os
import smtplib

import pytest


def test_smtplib_sends_a_message(start_server, received):
    running = start_server(on_data=received.on_data)
    with smtplib.SMTP(running.host, running.port, timeout=10) as client:
        refused = client.sendmail("a@example.com", ["b@example.com"], b"Subject: hi\r\n\r\nhello\r\n")
    assert refused == {}
    received.wait_for(1)
    mail_from, rcpts, body, session = received.messages[0]
    assert (mail_from, rcpts, body) == ("a@example.com", ["b@example.com"], b"Subject: hi\r\n\r\nhello\r\n")
    assert session.transmission_type == "ESMTP"


def test_uvloop_serves_a_session_with_starttls(smtpgate_server_factory):
    """uvloop's transports are not asyncio.Transport subclasses: the server must not care."""
    uvloop = pytest.importorskip("uvloop")

    server = smtpgate_server_factory(loop_factory=uvloop.new_event_loop)
    assert isinstance(server.thread.loop, uvloop.Loop)
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.starttls(context=server.client_ssl_context())
        client.sendmail("a@example.com", ["b@example.com"], b"Subject: uv\r\n\r\nloop\r\n")
    [message] = server.wait_for(1)
    assert message.raw == b"Subject: uv\r\n\r\nloop\r\n"
    assert message.secure is True


def test_plugin_servers_run_on_the_loop_of_the_run(smtpgate_server):
    """SMTPGATE_TEST_LOOP=uvloop puts the plugin's servers on uvloop too (tests/conftest.py)."""
    loop = smtpgate_server.thread.loop
    if os.environ.get("SMTPGATE_TEST_LOOP") == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        assert isinstance(loop, uvloop.Loop)
    else:
        assert type(loop).__module__.startswith("asyncio")

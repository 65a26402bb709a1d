"""On asyncio's own loop a TLS session keeps a 32 KiB read buffer, not asyncio's 256 KiB."""

from __future__ import annotations

import os
import sys

import pytest
from tls_support import client_context, starttls

from smtpgate.starttls import TLS_READ_BUFFER


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Python 3.10's TLS protocol has no such buffer")
@pytest.mark.skipif(os.environ.get("SMTPGATE_TEST_LOOP") == "uvloop", reason="uvloop has its own TLS layer")
def test_tls_sessions_use_a_small_read_buffer(start_server, certs, mx, raw_client):
    running = start_server(**mx)
    client = raw_client(running.port)
    starttls(client, client_context(certs))
    assert client.command("EHLO client.test")[0] == 250
    (connection,) = running.server.connections
    protocol = connection.transport._ssl_protocol
    assert protocol.max_size == TLS_READ_BUFFER
    assert len(protocol._ssl_buffer) <= TLS_READ_BUFFER
    assert client.command("NOOP")[0] == 250

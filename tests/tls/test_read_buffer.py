"""On every loop a TLS session reads through smtpgate's own TLS layer into the loop's
shared buffer: no read buffer per connection (asyncio's TLS protocol holds 256 KiB each)."""

from __future__ import annotations

from tls_support import client_context, starttls

from smtpgate.tlslayer import TLSLayer


def test_tls_sessions_share_the_loops_read_buffer(start_server, certs, mx, raw_client):
    running = start_server(**mx)
    clients = [raw_client(running.port) for _ in range(2)]
    for client in clients:
        starttls(client, client_context(certs))
        assert client.command("EHLO client.test")[0] == 250
    plain = raw_client(running.port)  # and a plain session, read by its SMTPProtocol
    assert plain.reply()[0] == 220
    connections = list(running.server.connections)
    assert len(connections) == 3
    buffers = set()
    layers = 0
    for connection in connections:
        protocol = connection.transport.get_protocol() if not isinstance(connection.transport, TLSLayer) else None
        if protocol is not None:
            buffers.add(id(protocol.get_buffer(-1).obj))
            continue
        layer = connection.transport
        layers += 1
        assert layer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
        buffers.add(id(layer.get_buffer(-1).obj))
    assert layers == 2
    assert len(buffers) == 1
    assert plain.command("QUIT")[0] == 221
    for client in clients:
        assert client.command("NOOP")[0] == 250

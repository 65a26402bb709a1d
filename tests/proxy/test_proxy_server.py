"""The PROXY protocol on a listening server, driven by raw sockets: trusted headers set the
client address, bad/truncated/late headers close the connection with a log line while the
server keeps serving, untrusted peers that send a header are closed, use_proxy=False reads
a PROXY line as an unknown command, and the header comes before an implicit TLS handshake."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import threading
import time

import pytest
from proxy_support import tlv, v1, v2, v2_local, v2_tcp4, v2_tcp6

from smtpgate import SMTPServer
from smtpgate.proxy import ProxyError
from support import Recorder, smtpgate_messages, wait_for_log, wait_until

pytestmark = pytest.mark.timeout(60)

MESSAGE = "Subject: via proxy\r\n\r\nhello\r\n."


def deliver(client) -> tuple[int, str]:
    """EHLO and one message over a greeted RawClient; the final reply."""
    assert client.command("EHLO client.example")[0] == 250
    assert client.command("MAIL FROM:<a@example.com>")[0] == 250
    assert client.command("RCPT TO:<b@example.com>")[0] == 250
    assert client.command("DATA")[0] == 354
    return client.command(MESSAGE)


def server_with_recorder(start_server, **options):
    seen = Recorder()
    running = start_server(on_connect=lambda session: seen.add(session), **options)
    return running, seen


def still_serves(running, raw_client) -> None:
    """A fresh, well-behaved connection (header included when the server wants one) is greeted."""
    client = raw_client(running.port)
    if running.server.proxy_trust.enabled and "127.0.0.1" in running.server.proxy_trust:
        client.send(v1("192.0.2.99", "198.51.100.1", 1234, 25))
    assert client.reply()[0] == 220
    assert client.command("NOOP")[0] == 250
    client.close()


# ----------------------------------------------------------------------------- trusted headers


@pytest.mark.parametrize(
    ("header", "address", "port"),
    [
        (v1("192.0.2.10", "198.51.100.1", 40000, 25), "192.0.2.10", 40000),
        (v1("2001:db8::10", "2001:db8::1", 40001, 25), "2001:db8::10", 40001),
        (v2_tcp4("192.0.2.11", "198.51.100.1", 40002, 25), "192.0.2.11", 40002),
        (v2_tcp6("2001:db8::11", "2001:db8::1", 40003, 25), "2001:db8::11", 40003),
        (v2_tcp4("192.0.2.12", tlvs=tlv(0x01, b"smtp") + tlv(0x04, b"\x00" * 64)), "192.0.2.12", 40000),
        (v1("::ffff:192.0.2.13", "::ffff:198.51.100.1", 40004, 25), "192.0.2.13", 40004),
    ],
    ids=["v1-tcp4", "v1-tcp6", "v2-tcp4", "v2-tcp6", "v2-tlvs-ignored", "v1-ipv4-mapped"],
)
def test_trusted_header_gives_the_client_address(start_server, raw_client, received, header, address, port):
    running, seen = server_with_recorder(start_server, use_proxy=True, on_data=received.on_data)
    client = raw_client(running.port)
    client.send(header)
    assert client.reply()[0] == 220
    session = seen.wait_for(1)[0]
    assert (session.remote_address, session.remote_port) == (address, port)
    assert session.client_hostname == f"[{address}]"
    assert deliver(client)[0] == 250
    received.wait_for(1)
    assert received.messages[0][3].remote_address == address


def test_session_proxy_has_the_header_for_handlers(start_server, raw_client):
    running, seen = server_with_recorder(start_server, use_proxy=True)
    client = raw_client(running.port)
    client.send(v2_tcp4("192.0.2.12", "198.51.100.7", 40010, 2525, tlvs=tlv(0x01, b"smtp") + tlv(0xE0, b"id-42")))
    assert client.reply()[0] == 220
    proxy = seen.wait_for(1)[0].proxy
    assert (proxy.version, proxy.local) == (2, False)
    assert (proxy.source_address, proxy.source_port) == ("192.0.2.12", 40010)
    assert (proxy.destination_address, proxy.destination_port) == ("198.51.100.7", 2525)
    assert proxy.tlvs == {0x01: b"smtp", 0xE0: b"id-42"}
    other = raw_client(running.port)
    other.send(b"PROXY UNKNOWN\r\n")
    assert other.reply()[0] == 220
    assert seen.wait_for(2)[1].proxy.local is True


def test_session_proxy_is_none_without_a_header(start_server, raw_client):
    running, seen = server_with_recorder(start_server)
    client = raw_client(running.port)
    assert client.reply()[0] == 220
    assert seen.wait_for(1)[0].proxy is None


@pytest.mark.parametrize("header", [v2_local(), v2_local(tlv(0x04, b"\x00" * 4)), b"PROXY UNKNOWN\r\n"])
def test_local_and_unknown_keep_the_real_peer(start_server, raw_client, header):
    running, seen = server_with_recorder(start_server, use_proxy=["127.0.0.0/8"])
    client = raw_client(running.port)
    client.send(header)
    assert client.reply()[0] == 220
    session = seen.wait_for(1)[0]
    assert (session.remote_address, session.remote_port) == client.sock.getsockname()


def test_commands_right_behind_the_header_are_early_talk(start_server, raw_client, smtpgate_log):
    """The reader takes exactly the header: what follows it in the same segment is the
    client's, and a client that talks before the greeting is an early talker (421)."""

    async def slow_on_connect(session):
        await asyncio.sleep(0.3)  # the greeting comes late, so the EHLO is surely early

    running = start_server(use_proxy=True, on_connect=slow_on_connect)
    client = raw_client(running.port)
    client.send(v2_tcp4("192.0.2.30") + b"EHLO client.example\r\n")
    code, text = client.reply()
    assert code == 421 and "talk too soon" in text
    assert client.is_closed()
    wait_for_log(smtpgate_log, "PROXY v2: client 192.0.2.30:40000")


def read_once(client, timeout: float = 5.0) -> bytes:
    """What the server sends next: b"" when it closes (or resets) the connection."""
    client.sock.settimeout(timeout)
    try:
        return client.sock.recv(65536)
    except ConnectionError:
        return b""


@pytest.mark.parametrize("header", [v1("192.0.2.20"), v2_tcp4("192.0.2.20")], ids=["v1", "v2"])
def test_header_dribbled_byte_by_byte(start_server, raw_client, header):
    running, seen = server_with_recorder(start_server, use_proxy=True)
    client = raw_client(running.port)
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for index in range(len(header)):
        client.send(header[index : index + 1])
        time.sleep(0.002)
    assert client.reply()[0] == 220
    assert seen.wait_for(1)[0].remote_address == "192.0.2.20"


def test_trust_list_entry_for_loopback(start_server, raw_client):
    running, seen = server_with_recorder(start_server, use_proxy=["10.0.0.0/8", "127.0.0.1"])
    client = raw_client(running.port)
    client.send(v1("203.0.113.50"))
    assert client.reply()[0] == 220
    assert seen.wait_for(1)[0].remote_address == "203.0.113.50"


def test_local_header_then_reset_still_reports_the_peer(start_server, raw_client):
    blocking = threading.Event()
    seen = Recorder()

    def on_connect(session):
        seen.add(session)
        if session.remote_address == "192.0.2.98":
            blocking.set()
            time.sleep(0.5)  # holds the event loop: the next client's reset lands before it is adopted

    running = start_server(use_proxy=True, on_connect=on_connect)
    holder = raw_client(running.port)
    holder.send(v1("192.0.2.98"))
    assert blocking.wait(10)
    client = raw_client(running.port)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.send(v2_local())
    client.close()  # RST, as HAProxy ends a plain health check
    assert holder.reply()[0] == 220
    still_serves(running, raw_client)  # recorded after the reset connection
    sessions = seen.wait_for(3)
    assert [s.remote_address for s in sessions] == ["192.0.2.98", "127.0.0.1", "192.0.2.99"]


def test_closing_the_server_drops_connections_waiting_for_a_header(start_server, raw_client):
    running = start_server(use_proxy=True, proxy_timeout=30)
    waiting = raw_client(running.port)
    waiting.send(b"PROXY TCP4 ")
    still_serves(running, raw_client)
    running.stop(timeout=20)
    assert waiting.is_closed(timeout=10)
    assert waiting.buffer == b""


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_ipv6_peer_in_the_trust_list(start_server, raw_client):
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    seen = Recorder()
    server = SMTPServer(
        name="mx.test", disable_reverse_lookup=True, use_proxy=["::1"], on_connect=lambda s: seen.add(s)
    )
    from smtpgate import ServerThread

    running = ServerThread(server, host="::1").start()
    try:
        client = raw_client(running.port, host="::1")
        client.send(v1("2001:db8::77", "::1"))
        assert client.reply()[0] == 220
        assert seen.wait_for(1)[0].remote_address == "2001:db8::77"
    finally:
        running.stop(timeout=20)


# ----------------------------------------------------------------------------- untrusted peers


@pytest.mark.parametrize("header", [v1("203.0.113.66"), v2_tcp4("203.0.113.66")], ids=["v1", "v2"])
def test_untrusted_peer_sending_a_header_is_closed(start_server, raw_client, smtpgate_log, header):
    running, seen = server_with_recorder(start_server, use_proxy=["10.0.0.0/8"])
    client = raw_client(running.port)
    assert client.reply()[0] == 220  # an untrusted peer is an ordinary client: greeted
    client.send(header + b"NOOP\r\n")
    assert client.is_closed()
    assert client.buffer == b"", "the header must not be answered as SMTP"
    record = wait_for_log(smtpgate_log, "PROXY header from untrusted peer 127.0.0.1")
    assert record.levelname == "WARNING"
    assert seen.wait_for(1)[0].remote_address == "127.0.0.1"
    still_serves(running, raw_client)


def test_untrusted_peer_without_header_is_served_as_itself(start_server, raw_client, received):
    running, seen = server_with_recorder(start_server, use_proxy=["10.0.0.0/8"], on_data=received.on_data)
    client = raw_client(running.port)
    assert client.reply()[0] == 220
    assert deliver(client)[0] == 250
    assert seen.wait_for(1)[0].remote_address == "127.0.0.1"


def test_untrusted_header_split_across_segments_is_still_refused(start_server, raw_client):
    running = start_server(use_proxy=["10.0.0.0/8"])
    client = raw_client(running.port)
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    assert client.reply()[0] == 220
    header = v1("203.0.113.66")
    client.send(header[:3])
    time.sleep(0.5)  # a separate segment, handled by the server on its own
    client.send(header[3:])
    answer = read_once(client)
    assert answer == b"", f"the header was answered as SMTP: {answer!r}"


@pytest.mark.parametrize("piece", [b"P", b"PROXY", b"\r\n\r\n\x00\r\n"], ids=["P", "PROXY", "v2-prefix"])
def test_untrusted_header_in_pieces_after_a_pause(start_server, raw_client, piece):
    """Whatever piece the header is cut at, the rest still gets the connection closed."""
    running = start_server(use_proxy=["10.0.0.0/8"])
    client = raw_client(running.port)
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    assert client.reply()[0] == 220
    header = v1("203.0.113.66") if piece.startswith(b"P") else v2_tcp4("203.0.113.66")
    client.send(header[: len(piece)])
    time.sleep(0.3)
    client.send(header[len(piece) :])
    assert read_once(client) == b""


def test_untrusted_client_sending_an_empty_line_is_answered(start_server, raw_client):
    running = start_server(use_proxy=["10.0.0.0/8"])
    client = raw_client(running.port)
    assert client.reply()[0] == 220
    client.send(b"\r\n")
    answer = read_once(client, timeout=2)
    assert answer.startswith(b"500 "), f"no reply to an empty line: {answer!r}"


def test_untrusted_client_typing_p_slowly_is_served(start_server, raw_client):
    """Bytes held back while they might start a header are not lost."""
    running = start_server(use_proxy=["10.0.0.0/8"])
    client = raw_client(running.port)
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    assert client.reply()[0] == 220
    for piece in (b"P", b"R", b"O", b"X", b"Y", b"\r\n"):
        client.send(piece)
        time.sleep(0.05)
    assert client.reply()[0] == 500
    assert client.command("NOOP")[0] == 250


# ----------------------------------------------------------------------------- bad headers


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"EHLO client.example\r\n", "not a PROXY header"),
        (b"PROXY TCP4 192.0.2.300 198.51.100.1 1 2\r\n", "bad address"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.1 99999 2\r\n", "bad port"),
        (b"PROXY TCP9 a b c d\r\n", "TCP4|TCP6"),
        (b"PROXY TCP4 " + b"1" * 200, "too long"),
        (v2(0x1, 0x11, b"\x00" * 4), "truncated"),
        (v2(0x1, 0x11, v2_tcp4()[16:], version=1), "bad version"),
        (v2(0x5, 0x11, v2_tcp4()[16:]), "unknown command"),
        (v2_tcp4(tlvs=b"\x04\x00\x10xx"), "TLV truncated"),
        (b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff", "too long"),
    ],
    ids=[
        "smtp-instead",
        "v1-address",
        "v1-port",
        "v1-family",
        "v1-no-crlf",
        "v2-short-address",
        "v2-version",
        "v2-command",
        "v2-tlv",
        "v2-length",
    ],
)
def test_malformed_header_closes_with_a_log_line(start_server, raw_client, smtpgate_log, data, reason):
    running, seen = server_with_recorder(start_server, use_proxy=True)
    errors = Recorder()
    running.server.on("error", lambda error, session: errors.add((error, session)))
    client = raw_client(running.port)
    client.send(data)
    assert client.is_closed()
    assert client.buffer == b"", "no greeting, no SMTP reply before a valid header"
    record = wait_for_log(smtpgate_log, "bad PROXY header")
    assert record.levelname == "WARNING"
    assert "127.0.0.1" in record.getMessage() and reason in record.getMessage()
    error, session = errors.wait_for(1)[0]
    assert isinstance(error, ProxyError) and session is None
    assert seen.items == [], "on_connect is not called for a connection without a valid header"
    still_serves(running, raw_client)


@pytest.mark.parametrize("data", [v1()[:-5], v2_tcp4()[:20], v2_tcp4()[:10], b"PRO"])
def test_truncated_header_then_close(start_server, raw_client, smtpgate_log, data):
    running = start_server(use_proxy=True)
    client = raw_client(running.port)
    client.send(data)
    client.sock.shutdown(socket.SHUT_WR)
    assert client.is_closed()
    assert client.buffer == b""
    wait_for_log(smtpgate_log, "closed before the PROXY header was complete")
    still_serves(running, raw_client)


def test_short_invalid_v1_line_closes_at_once(start_server, raw_client, smtpgate_log):
    running = start_server(use_proxy=True, proxy_timeout=60)
    client = raw_client(running.port)
    client.send(b"PROXY BOGUS\r\n")
    assert client.is_closed(timeout=10), "closed long before proxy_timeout"
    assert client.buffer == b""
    record = wait_for_log(smtpgate_log, "bad PROXY header")
    assert "TCP4|TCP6" in record.getMessage()
    still_serves(running, raw_client)


def test_header_that_never_arrives_times_out(start_server, raw_client, smtpgate_log):
    running = start_server(use_proxy=True, proxy_timeout=0.5)
    silent = raw_client(running.port)
    half = raw_client(running.port)
    half.send(b"PROXY TCP4 192.0.2.1")
    # meanwhile, other clients are served
    still_serves(running, raw_client)
    assert silent.is_closed(timeout=10) and half.is_closed(timeout=10)
    assert silent.buffer == b"" and half.buffer == b""
    wait_for_log(smtpgate_log, "bad PROXY header: timed out")
    timeouts = [m for m in smtpgate_messages(smtpgate_log) if "timed out" in m]
    assert len(timeouts) == 2
    still_serves(running, raw_client)


def test_many_bad_connections_do_not_stop_the_server(start_server, raw_client):
    running = start_server(use_proxy=True, proxy_timeout=2)
    for index in range(20):
        client = raw_client(running.port)
        client.send(b"GARBAGE\r\n" if index % 2 else b"PROXY TCP4 x y 1 2\r\n")
    still_serves(running, raw_client)


# ----------------------------------------------------------------------------- use_proxy=False


@pytest.mark.parametrize("line", [v1("192.0.2.10").decode()[:-2], "PROXY UNKNOWN"])
def test_without_use_proxy_a_proxy_line_is_an_unknown_command(start_server, raw_client, line):
    running, seen = server_with_recorder(start_server)
    assert running.server.options.use_proxy is False
    client = raw_client(running.port)
    assert client.reply()[0] == 220
    code, text = client.command(line)
    assert code == 500 and "not recognized" in text
    assert client.command("EHLO client.example")[0] == 250
    assert client.command("NOOP")[0] == 250
    session = seen.wait_for(1)[0]
    assert (session.remote_address, session.remote_port) == client.sock.getsockname()


# ----------------------------------------------------------------------------- implicit TLS


def tls_client_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the server uses its generated development certificate
    return context


@pytest.mark.parametrize("header", [v1("192.0.2.77"), v2_tcp4("192.0.2.77")], ids=["v1", "v2"])
def test_header_before_implicit_tls(start_server, raw_client, received, header):
    running, seen = server_with_recorder(start_server, use_proxy=True, secure=True, on_data=received.on_data)
    client = raw_client(running.port)
    client.send(header)
    client.sock = tls_client_context().wrap_socket(client.sock, server_hostname="mx.test")
    assert client.reply()[0] == 220
    assert deliver(client)[0] == 250
    received.wait_for(1)
    session = received.messages[0][3]
    assert session.secure is True and session.remote_address == "192.0.2.77"
    assert seen.wait_for(1)[0] is session


def test_implicit_tls_without_header_is_closed(start_server, raw_client, smtpgate_log):
    """A TLS ClientHello where the header should be is refused from its first bytes."""
    running = start_server(use_proxy=True, secure=True)
    client = raw_client(running.port)
    with pytest.raises((ssl.SSLError, OSError)):
        tls_client_context().wrap_socket(client.sock, server_hostname="mx.test")
    wait_for_log(smtpgate_log, "not a PROXY header")


def test_server_object_listens_with_proxy_in_its_own_loop():
    """SMTPServer.listen() with use_proxy works on a plain asyncio loop too (no ServerThread)."""

    async def main() -> tuple[str, int]:
        seen: list[tuple[str, int]] = []
        server = SMTPServer(
            name="mx.test",
            use_proxy=True,
            disable_reverse_lookup=True,
            on_connect=lambda s: seen.append((s.remote_address, s.remote_port)),
        )
        await server.listen(0, host="127.0.0.1")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(v2_tcp6("2001:db8::5", sport=2525))
            line = await asyncio.wait_for(reader.readline(), 5)
            assert line.startswith(b"220 ")
            writer.close()
        finally:
            await asyncio.wait_for(server.close(), 10)
        return seen[0]

    assert asyncio.run(main()) == ("2001:db8::5", 2525)


def test_max_clients_behind_a_proxy_refuses_with_421(start_server, raw_client, smtpgate_log):
    running = start_server(use_proxy=True, max_clients=1)
    first = raw_client(running.port)
    first.send(v1("192.0.2.1"))
    assert first.reply()[0] == 220
    second = raw_client(running.port)
    second.send(v1("192.0.2.2"))
    code, text = second.reply()
    assert code == 421 and "4.7.0" in text
    assert second.is_closed()
    wait_for_log(smtpgate_log, "refused 192.0.2.2: too many clients")
    first.command("QUIT")
    assert first.is_closed()
    wait_until(lambda: not running.server.connections, what="the first session to end")
    still_serves(running, raw_client)

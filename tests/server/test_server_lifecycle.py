"""Connections and the server's life: max_clients, idle timeout, close(), on_close, events,
listening addresses, option checks, ServerThread."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import struct

import pytest
from server_support import ehlo, envelope, on_server_loop, start_close

from smtpgate import ServerThread, SMTPError, SMTPServer
from support import Recorder, wait_until

# ----------------------------------------------------------------- max_clients


def test_max_clients(start_server, raw_client):
    running = start_server(max_clients=2)
    first, second = raw_client(running.port), raw_client(running.port)
    assert first.reply()[0] == 220
    assert second.reply()[0] == 220
    third = raw_client(running.port)
    assert third.reply() == (421, "4.7.0 mx.test Too many connected clients, try again in a moment")
    assert third.is_closed()
    # The first two are unaffected; once one leaves there is room again.
    assert first.command("NOOP")[0] == 250
    assert second.command("QUIT")[0] == 221
    wait_until(lambda: len(running.server.connections) == 1, what="the second client to be gone")
    fourth = raw_client(running.port)
    assert fourth.reply()[0] == 220


def test_refused_clients_do_not_count(start_server, raw_client):
    running = start_server(max_clients=1)
    first = raw_client(running.port)
    assert first.reply()[0] == 220
    for _ in range(5):
        extra = raw_client(running.port)
        assert extra.reply()[0] == 421
        assert extra.is_closed()
    assert first.command("QUIT")[0] == 221
    wait_until(lambda: not running.server.connections, what="the first client to be gone")
    assert raw_client(running.port).reply()[0] == 220


# ----------------------------------------------------------------- idle timeout


def replies_until_closed(client) -> list[tuple[int, str]]:
    """Every reply the server sends until it closes the connection.

    The idle tests send their commands in one write and read afterwards, so a stall of the
    test thread can only move the 421, never break the exchange."""
    replies = []
    while True:
        try:
            replies.append(client.reply())
        except ConnectionError:
            return replies


TIMEOUT_421 = (421, "4.4.2 mx.test Error: timeout exceeded")


def test_socket_timeout_when_idle(start_server, raw_client):
    closed = Recorder()
    running = start_server(socket_timeout=0.5, on_close=lambda session: closed.add(session.id))
    client = raw_client(running.port)
    assert client.reply()[0] == 220
    client.send("EHLO client.test\r\n")
    replies = replies_until_closed(client)
    assert replies[-1] == TIMEOUT_421
    assert [code for code, _ in replies[:-1]] in ([250], [])
    assert len(closed.wait_for(1)) == 1


def test_socket_timeout_before_ehlo(start_server, raw_client):
    running = start_server(socket_timeout=0.5)
    client = raw_client(running.port)
    assert client.reply()[0] == 220
    assert replies_until_closed(client) == [TIMEOUT_421]


@pytest.mark.smtpgate(socket_timeout=0.5, name="mx.test")  # the name in TIMEOUT_421
def test_socket_timeout_mid_data(smtpgate_server, raw_client):
    client = raw_client(smtpgate_server.port)
    assert client.reply()[0] == 220
    client.send(
        b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
        b"Subject: stalled\r\n\r\nand then nothing"
    )
    replies = replies_until_closed(client)
    assert [code for code, _ in replies] == [250, 250, 250, 354, 421]
    assert replies[-1] == TIMEOUT_421
    assert smtpgate_server.messages == []


def test_socket_timeout_with_partial_command(start_server, raw_client):
    running = start_server(socket_timeout=0.5)
    client = raw_client(running.port)
    assert client.reply()[0] == 220
    client.send(b"EHLO c\r\nNOOP")  # the NOOP line is never finished
    assert [code for code, _ in replies_until_closed(client)] == [250, 421]


# ----------------------------------------------------------------- close()


def test_close_stops_listening_and_says_421_to_idle_sessions(start_server, raw_client):
    running = start_server()
    client = raw_client(running.port)
    ehlo(client)
    future = start_close(running)
    assert client.reply() == (421, "4.3.2 mx.test Server shutting down")
    assert client.is_closed()
    future.result(10)
    assert running.server.closing
    assert not running.server.listening
    with pytest.raises(OSError):
        socket.create_connection((running.host, running.port), timeout=2).recv(1)


def test_close_lets_a_transaction_finish(start_server, raw_client, received):
    running = start_server(close_timeout=10, on_data=received.on_data)
    client = raw_client(running.port)
    envelope(client)
    future = start_close(running)
    wait_until(lambda: running.server.closing, what="close() to start")
    assert client.command("RCPT TO:<c@example.com>")[0] == 250
    assert client.command("DATA")[0] == 354
    assert client.command("finished during shutdown\r\n.")[0] == 250
    assert client.reply() == (421, "4.3.2 mx.test Server shutting down")
    assert client.is_closed()
    future.result(10)
    received.wait_for(1)
    assert received.messages[0][1] == ["b@example.com", "c@example.com"]


def test_close_timeout_ends_a_stuck_transaction(start_server, raw_client, received):
    closed = Recorder()
    running = start_server(close_timeout=0.5, on_data=received.on_data, on_close=closed.add)
    client = raw_client(running.port)
    envelope(client)
    assert client.command("DATA")[0] == 354
    client.send(b"half a message")
    future = start_close(running)
    assert client.reply() == (421, "4.3.2 mx.test Server shutting down")
    assert client.is_closed()
    future.result(15)
    assert received.messages == []
    assert len(closed.wait_for(1)) == 1


def test_close_without_clients_and_twice(start_server):
    running = start_server()
    on_server_loop(running, running.server.close())
    on_server_loop(running, running.server.close())  # a second close is harmless
    assert not running.server.listening


def test_connection_after_close_started_is_refused(start_server, raw_client):
    running = start_server(close_timeout=10)
    busy = raw_client(running.port)
    envelope(busy)  # keeps close() waiting
    future = start_close(running)
    wait_until(lambda: running.server.closing, what="close() to start")
    try:
        late = socket.create_connection((running.host, running.port), timeout=2)
    except ConnectionRefusedError:
        pass  # the listening socket is closed
    else:
        with late:
            data = late.recv(100)
        assert data == b"" or data.startswith(b"421"), data
    assert busy.command("RSET")[0] == 250
    assert busy.reply()[0] == 421
    future.result(10)


# ----------------------------------------------------------------- on_close


def test_every_session_gets_exactly_one_on_close(start_server, raw_client):
    closes = Recorder()
    connects = Recorder()

    def on_connect(session):
        connects.add(session.id)

    async def on_close(session):
        closes.add(session.id)

    running = start_server(on_connect=on_connect, on_close=on_close, socket_timeout=0.5, max_unrecognized_commands=2)
    # Every exchange is one write, so the short idle timeout can only end a session
    # earlier, never make the test stumble.
    a = raw_client(running.port)  # QUIT
    a.reply()
    a.send("EHLO a\r\nQUIT\r\n")
    b = raw_client(running.port)  # the client hangs up
    b.reply()
    b.send("EHLO b\r\n")
    b.close()
    c = raw_client(running.port)  # the client hangs up mid-DATA
    c.reply()
    c.send("EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\npart")
    c.close()
    d = raw_client(running.port)  # too many bad commands
    d.reply()
    d.send(b"X\r\nY\r\n")
    e = raw_client(running.port)  # idle timeout
    e.reply()
    e.send("EHLO e\r\n")
    f = raw_client(running.port)  # HTTP
    f.reply()
    f.send(b"GET / HTTP/1.1\r\n")
    for client in (a, d, e, f):
        assert client.is_closed()
    ids = closes.wait_for(6)
    wait_until(lambda: not running.server.connections, what="all connections to end")
    assert sorted(closes.items) == sorted(set(closes.items))
    assert sorted(closes.items) == sorted(connects.items)
    assert len(closes) == 6 == len(ids)


def test_on_close_runs_for_sessions_ended_by_server_close(start_server, raw_client):
    closes = Recorder()
    running = start_server(on_close=lambda session: closes.add(session.id))
    clients = [raw_client(running.port) for _ in range(3)]
    for client in clients:
        ehlo(client)
    on_server_loop(running, running.server.close())
    assert len(closes.wait_for(3)) == 3
    assert len(set(closes.items)) == 3


def test_on_close_failure_is_reported_and_server_keeps_serving(start_server, raw_client):
    errors = Recorder()
    server = SMTPServer(name="mx.test", disable_reverse_lookup=True, on_close=lambda s: 1 / 0)
    server.on("error", lambda error, session: errors.add(error))
    running = start_server(server)
    client = raw_client(running.port)
    ehlo(client)
    client.command("QUIT")
    [error] = errors.wait_for(1)
    assert isinstance(error, ZeroDivisionError)
    second = raw_client(running.port)
    assert second.reply()[0] == 220


# ----------------------------------------------------------------- events


def test_events(start_server, raw_client):
    seen = Recorder()
    server = SMTPServer(name="mx.test", disable_reverse_lookup=True, on_mail_from=lambda a, s: 1 / 0)
    server.on("listening", lambda srv: seen.add(("listening", srv is server)))
    server.on("connect", lambda session: seen.add(("connect", session.remote_address)))
    server.on("error", lambda error, session: seen.add(("error", type(error).__name__, session is not None)))
    server.on("close", lambda: seen.add(("close",)))
    running = start_server(server)
    assert seen.items == [("listening", True)]
    client = raw_client(running.port)
    ehlo(client)
    assert seen.wait_for(2)[1] == ("connect", "127.0.0.1")
    assert client.command("MAIL FROM:<a@example.com>") == (451, "4.3.0 Error: internal server error")
    assert seen.wait_for(3)[2] == ("error", "ZeroDivisionError", True)
    client.command("QUIT")
    running.stop(timeout=30)
    assert seen.wait_for(4)[3] == ("close",)


def test_async_event_listener_and_bad_event_name():
    server = SMTPServer(name="mx.test")
    with pytest.raises(ValueError):
        server.on("message", lambda: None)
    with pytest.raises(TypeError):
        server.on("close", "not callable")


def test_failing_listener_does_not_break_the_server(start_server, raw_client):
    server = SMTPServer(name="mx.test", disable_reverse_lookup=True)
    server.on("connect", lambda session: 1 / 0)
    running = start_server(server)
    client = raw_client(running.port)
    assert client.reply()[0] == 220
    assert client.command("EHLO c")[0] == 250


# ----------------------------------------------------------------- listening


def ipv6_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback")
def test_listen_on_ipv6_loopback(received):
    with ServerThread(host="::1", name="mx.test", disable_reverse_lookup=True, on_data=received.on_data) as running:
        assert running.server.addresses[0][0] == "::1"
        with smtplib.SMTP("::1", running.port, timeout=10) as client:
            client.sendmail("a@example.com", ["b@example.com"], b"over IPv6\r\n")
        received.wait_for(1)
    session = received.messages[0][3]
    assert session.remote_address == "::1"
    assert session.local_address == "::1"
    assert session.client_hostname == "[::1]"


def test_listen_on_ipv4_only(start_server):
    running = start_server()
    assert running.server.addresses == [("127.0.0.1", running.port)]
    assert running.server.port == running.port != 0
    if ipv6_available():
        with pytest.raises(OSError):
            socket.create_connection(("::1", running.port), timeout=2)


def test_port_in_use_raises_oserror():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        thread = ServerThread(name="mx.test", host="127.0.0.1", port=port)
        with pytest.raises(OSError) as error:
            thread.start()
        assert str(port) in str(error.value)
        thread.stop(timeout=5)


def test_port_in_use_with_listen():
    async def main():
        first = SMTPServer(name="mx.test")
        await first.listen(0, host="127.0.0.1")
        second = SMTPServer(name="mx.test")
        try:
            with pytest.raises(OSError):
                await second.listen(first.port, host="127.0.0.1")
            assert not second.listening
        finally:
            await first.close()
            await second.close()

    asyncio.run(main())


def test_port_is_unknown_before_listen():
    with pytest.raises(RuntimeError):
        _ = SMTPServer(name="mx.test").port


def test_listen_and_close_with_asyncio():
    async def main():
        async with SMTPServer(name="mx.test", disable_reverse_lookup=True) as server:
            await server.listen(0, host="127.0.0.1")
            assert server.listening
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"220 mx.test ESMTP")
            writer.write(b"QUIT\r\n")
            assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"221")
            writer.close()
        assert not server.listening
        with pytest.raises(RuntimeError):
            await server.listen(0, host="127.0.0.1")

    asyncio.run(main())


# ----------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"nmae": "x"}, TypeError),
        ({"on_dta": lambda s, x: None}, TypeError),
        ({"size": "10"}, TypeError),
        ({"size": 1.5}, TypeError),
        ({"size": -1}, ValueError),
        ({"max_clients": True}, TypeError),
        ({"socket_timeout": 0}, ValueError),
        ({"socket_timeout": "1"}, TypeError),
        ({"close_timeout": -1}, ValueError),
        ({"max_command_length": 100}, ValueError),
        ({"max_unrecognized_commands": 0}, ValueError),
        ({"bare_lf": "yes"}, ValueError),
        ({"hide_size": 1}, TypeError),
        ({"lmtp": "true"}, TypeError),
        ({"on_data": 5}, TypeError),
        ({"name": ""}, ValueError),
        ({"name": 42}, TypeError),
        ({"banner": "a\r\n250 b"}, ValueError),
        ({"disabled_commands": "VRFY"}, TypeError),
        ({"disabled_commands": [1]}, TypeError),
        ({"auth_methods": ["NOPE"]}, ValueError),
        ({"min_version": "SSLv3"}, ValueError),
    ],
)
def test_bad_options_fail_at_construction(options, error):
    with pytest.raises(error):
        SMTPServer(**options)


def test_unknown_option_suggests_a_name():
    with pytest.raises(TypeError, match="did you mean 'size'"):
        SMTPServer(sizee=10)


def test_good_options_are_kept():
    server = SMTPServer(name="mx.test", size=10, socket_timeout=1, disabled_commands=[" vrfy "], bare_lf="allow")
    assert server.options.size == 10
    assert server.options.socket_timeout == 1
    assert server.options.disabled_commands == frozenset({"VRFY"})
    assert server.protocol_config.bare_lf == "allow"


# ----------------------------------------------------------------- ServerThread


def test_server_thread_context_manager(received):
    with ServerThread(name="mx.test", disable_reverse_lookup=True, on_data=received.on_data) as running:
        assert running.port != 0
        assert running.host == "127.0.0.1"
        with smtplib.SMTP(running.host, running.port, timeout=10) as client:
            client.sendmail("a@example.com", ["b@example.com"], b"threaded\r\n")
        received.wait_for(1)
        port = running.port
    assert received.messages[0][2] == b"threaded\r\n"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).recv(1)


def test_server_thread_start_stop():
    running = ServerThread(SMTPServer(name="mx.test", disable_reverse_lookup=True))
    assert running.start() is running
    with pytest.raises(RuntimeError):
        running.start()
    with socket.create_connection((running.host, running.port), timeout=10) as sock:
        assert sock.recv(100).startswith(b"220 mx.test")
    running.stop(timeout=30)
    running.stop(timeout=30)  # twice is fine
    assert not running.server.listening


def test_server_thread_stop_before_start_is_harmless():
    ServerThread(name="mx.test").stop()


def test_server_thread_takes_a_server_or_options():
    with pytest.raises(TypeError):
        ServerThread(SMTPServer(name="mx.test"), size=10)
    with pytest.raises(TypeError):
        ServerThread(bogus_option=1)


@pytest.mark.parametrize("phase", ["on_mail_from", "on_data"])
def test_close_timeout_during_a_running_handler_is_clean(start_server, raw_client, phase):
    errors = Recorder()
    started = Recorder()
    closes = Recorder()

    async def slow(*args):
        started.add(True)
        if phase == "on_data":
            await args[0].read()
        await asyncio.sleep(2.0)  # well past close_timeout

    server = SMTPServer(
        name="mx.test", disable_reverse_lookup=True, close_timeout=0.3, on_close=closes.add, **{phase: slow}
    )
    server.on("error", lambda error, session: errors.add(error))
    running = start_server(server)
    client = raw_client(running.port)
    ehlo(client)
    if phase == "on_mail_from":
        client.send("MAIL FROM:<a@example.com>\r\n")
    else:
        assert client.command("MAIL FROM:<a@example.com>")[0] == 250
        assert client.command("RCPT TO:<b@example.com>")[0] == 250
        assert client.command("DATA")[0] == 354
        client.send("body\r\n.\r\n")
    started.wait_for(1)
    future = start_close(running)
    assert client.reply() == (421, "4.3.2 mx.test Server shutting down")
    assert client.is_closed()
    future.result(15)
    closes.wait_for(1)
    assert errors.items == []


def test_client_that_never_reads_is_disconnected_by_socket_timeout(start_server):
    closes = Recorder()
    running = start_server(socket_timeout=0.3, close_timeout=0.3, on_close=closes.add)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((running.host, running.port))
    sock.settimeout(0.5)
    try:
        with pytest.raises(OSError):  # the server stops reading once its replies back up
            for _ in range(10_000):
                sock.sendall(b"NOOP\r\n" * 10_000)
        wait_until(lambda: len(closes) == 1, timeout=2, what="on_close of the non-reading client")
    finally:
        sock.close()


@pytest.mark.skipif(not ipv6_available(), reason="no IPv6 loopback")
def test_listen_on_a_list_of_hosts_shares_one_port():
    async def main():
        server = SMTPServer(name="mx.test", disable_reverse_lookup=True)
        await server.listen(0, host=["127.0.0.1", "::1"])
        try:
            hosts = sorted(address[0] for address in server.addresses)
            assert hosts == ["127.0.0.1", "::1"]
            assert len({address[1] for address in server.addresses}) == 1
            for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
                reader, writer = await asyncio.open_connection(host, server.port, family=family)
                assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"220 ")
                writer.close()
        finally:
            await server.close()

    asyncio.run(main())


def reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_on_close_after_reset_during_on_connect(start_server):
    connects, closes = Recorder(), Recorder()

    async def on_connect(session):
        connects.add(session.id)
        await asyncio.sleep(0.3)

    running = start_server(on_connect=on_connect, on_close=lambda session: closes.add(session.id))
    sock = socket.create_connection((running.host, running.port), timeout=10)
    connects.wait_for(1)
    reset(sock)
    assert closes.wait_for(1, timeout=5) == connects.items


def test_on_close_after_fin_during_on_connect(start_server):
    connects, closes = Recorder(), Recorder()

    async def on_connect(session):
        connects.add(session.id)
        await asyncio.sleep(0.3)

    running = start_server(on_connect=on_connect, on_close=lambda session: closes.add(session.id))
    sock = socket.create_connection((running.host, running.port), timeout=10)
    connects.wait_for(1)
    sock.close()
    closes.wait_for(1)
    assert closes.items == connects.items


def test_on_close_after_close_timeout_during_on_connect(start_server, raw_client):
    connects, closes = Recorder(), Recorder()

    async def on_connect(session):
        connects.add(session.id)
        await asyncio.sleep(2.0)  # well past close_timeout

    running = start_server(on_connect=on_connect, on_close=lambda session: closes.add(session.id), close_timeout=0.2)
    client = raw_client(running.port)
    connects.wait_for(1)
    start_close(running).result(15)
    assert client.reply() == (421, "4.3.2 mx.test Server shutting down")
    assert closes.wait_for(1, timeout=5) == connects.items


def test_on_close_after_early_talker_and_refusal(start_server, raw_client):
    connects, closes = Recorder(), Recorder()

    async def on_connect(session):
        connects.add(session.id)
        await asyncio.sleep(0.2)
        if len(connects) == 2:
            raise SMTPError(554, "Refused")

    running = start_server(on_connect=on_connect, on_close=lambda session: closes.add(session.id))
    talker = raw_client(running.port)
    talker.send("EHLO early\r\n")
    assert talker.reply()[0] == 421
    refused = raw_client(running.port)
    assert refused.reply() == (554, "5.6.0 Refused")
    closes.wait_for(2)
    assert sorted(closes.items) == sorted(connects.items)

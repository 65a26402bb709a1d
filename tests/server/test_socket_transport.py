"""The lean plain-TCP transport (sockettransport.py) that serves connections on asyncio's
own loops: the asyncio transport contract, over real loopback sockets (always on asyncio's
loop, whatever SMTPGATE_TEST_LOOP says; the last test checks the server's choice)."""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from smtpgate import SMTPServer
from smtpgate.sockettransport import HIGH_WATER, SocketTransport, fits, open_transport


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The loop the suite's servers run on (SMTPGATE_TEST_LOOP, as tests/conftest.py reads it)."""
    if os.environ.get("SMTPGATE_TEST_LOOP") == "uvloop":
        import uvloop

        return uvloop.new_event_loop  # type: ignore[no-any-return]
    return None


def in_loop(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run an async test in a fresh asyncio loop (the default one, which this transport serves)."""

    @functools.wraps(test)
    def run() -> None:
        asyncio.run(asyncio.wait_for(test(), 30))

    return run


class Recorder(asyncio.Protocol):
    """A plain protocol that notes every call."""

    def __init__(self, keep_open_on_eof: bool = True) -> None:
        self.calls: list[str] = []
        self.data = b""
        self.keep_open_on_eof = keep_open_on_eof
        self.lost = asyncio.get_running_loop().create_future()
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.calls.append("made")
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        self.calls.append("eof")
        return self.keep_open_on_eof

    def pause_writing(self) -> None:
        self.calls.append("pause_writing")

    def resume_writing(self) -> None:
        self.calls.append("resume_writing")

    def connection_lost(self, exc: Exception | None) -> None:
        self.calls.append("lost")
        self.lost.set_result(exc)


async def accepted_pair() -> tuple[socket.socket, socket.socket]:
    """A connected (server side, client side) pair of TCP sockets on 127.0.0.1."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    server.setblocking(False)
    client.setblocking(False)
    return server, client


async def read_until_eof(loop: asyncio.AbstractEventLoop, sock: socket.socket, timeout: float = 10.0) -> bytes:
    data = b""
    async with asyncio.timeout(timeout):
        while chunk := await loop.sock_recv(sock, 65536):
            data += chunk
    return data


@in_loop
async def test_contract_over_a_real_socket() -> None:
    loop = asyncio.get_running_loop()
    assert fits(loop)
    server, client = await accepted_pair()
    protocol = Recorder()
    transport = open_transport(loop, server, protocol, client.getsockname())
    assert protocol.calls == ["made"] and protocol.transport is transport
    assert transport.get_extra_info("peername") == client.getsockname()
    assert transport.get_extra_info("sockname") == server.getsockname()
    assert transport.get_extra_info("socket").fileno() == server.fileno()
    assert transport.get_extra_info("nothing", "default") == "default"
    assert server.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert transport.is_reading() and not transport.is_closing()

    await loop.sock_sendall(client, b"hello")
    async with asyncio.timeout(5):
        while protocol.data != b"hello":
            await asyncio.sleep(0.01)

    transport.pause_reading()
    assert not transport.is_reading()
    await loop.sock_sendall(client, b" world")
    await asyncio.sleep(0.1)
    assert protocol.data == b"hello"  # paused: nothing read
    transport.resume_reading()
    async with asyncio.timeout(5):
        while protocol.data != b"hello world":
            await asyncio.sleep(0.01)

    # Half-close: the protocol keeps the write side open and may still answer.
    client.shutdown(socket.SHUT_WR)
    async with asyncio.timeout(5):
        while "eof" not in protocol.calls:
            await asyncio.sleep(0.01)
    transport.write(b"bye")
    transport.close()
    assert transport.is_closing()
    assert await read_until_eof(loop, client) == b"bye"
    assert await asyncio.wait_for(protocol.lost, 5) is None
    assert protocol.calls == ["made", "eof", "lost"]
    assert server.fileno() == -1  # closed with the transport
    transport.write(b"after the end")  # ignored, as asyncio's transport does
    client.close()


@in_loop
async def test_eof_closes_unless_the_protocol_keeps_it_open() -> None:
    loop = asyncio.get_running_loop()
    server, client = await accepted_pair()
    protocol = Recorder(keep_open_on_eof=False)
    open_transport(loop, server, protocol, None)
    client.shutdown(socket.SHUT_WR)
    assert await asyncio.wait_for(protocol.lost, 5) is None
    assert protocol.calls == ["made", "eof", "lost"]
    assert await read_until_eof(loop, client) == b""
    client.close()


@in_loop
async def test_write_buffer_flow_control_and_close_after_flush() -> None:
    """A client that does not read: the transport buffers, asks the protocol to pause above
    the high-water mark, resumes it below the low one, and close() sends everything first."""
    loop = asyncio.get_running_loop()
    server, client = await accepted_pair()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    protocol = Recorder()
    transport = open_transport(loop, server, protocol, None)
    assert transport.get_write_buffer_limits() == (HIGH_WATER // 4, HIGH_WATER)
    payload = bytes(range(256)) * 1024  # 256 KiB, far more than the socket buffers take
    for start in range(0, len(payload), 8192):
        transport.write(payload[start : start + 8192])
    assert transport.get_write_buffer_size() > HIGH_WATER
    assert protocol.calls == ["made", "pause_writing"]
    transport.close()
    assert not protocol.lost.done()  # still sending
    assert await read_until_eof(loop, client) == payload
    assert await asyncio.wait_for(protocol.lost, 5) is None
    assert protocol.calls == ["made", "pause_writing", "resume_writing", "lost"]
    assert transport.get_write_buffer_size() == 0
    client.close()


@in_loop
async def test_write_buffer_limits() -> None:
    loop = asyncio.get_running_loop()
    server, client = await accepted_pair()
    transport = open_transport(loop, server, Recorder(), None)
    transport.set_write_buffer_limits(high=1000)
    assert transport.get_write_buffer_limits() == (250, 1000)
    transport.set_write_buffer_limits(low=100)
    assert transport.get_write_buffer_limits() == (100, 400)
    with pytest.raises(ValueError):
        transport.set_write_buffer_limits(high=10, low=20)
    transport.abort()
    client.close()


@in_loop
async def test_abort_drops_unsent_bytes_and_reports_once() -> None:
    loop = asyncio.get_running_loop()
    server, client = await accepted_pair()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    protocol = Recorder()
    transport = open_transport(loop, server, protocol, None)
    transport.write(b"x" * (8 * 1024 * 1024))  # more than the kernel takes from a client that does not read
    assert transport.get_write_buffer_size() > 0
    transport.abort()
    transport.abort()
    transport.close()
    assert await asyncio.wait_for(protocol.lost, 5) is None
    assert protocol.calls.count("lost") == 1
    assert transport.get_write_buffer_size() == 0
    client.close()


@in_loop
async def test_reset_by_the_peer_is_the_error_connection_lost_gets() -> None:
    loop = asyncio.get_running_loop()
    server, client = await accepted_pair()
    protocol = Recorder()
    transport = open_transport(loop, server, protocol, None)
    transport.write(b"220 hello\r\n")
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    client.close()  # unread data and linger 0: an RST
    error = await asyncio.wait_for(protocol.lost, 5)
    assert isinstance(error, (ConnectionResetError, type(None)))
    assert protocol.calls[-1] == "lost" and protocol.calls.count("lost") == 1


@in_loop
async def test_write_eof_shuts_the_write_side_after_the_buffer() -> None:
    loop = asyncio.get_running_loop()
    server, client = await accepted_pair()
    protocol = Recorder()
    transport = open_transport(loop, server, protocol, None)
    assert transport.can_write_eof()
    transport.writelines([b"one ", b"two"])
    transport.write_eof()
    with pytest.raises(RuntimeError):
        transport.write(b"more")
    assert await read_until_eof(loop, client) == b"one two"
    await loop.sock_sendall(client, b"still read")
    async with asyncio.timeout(5):
        while protocol.data != b"still read":
            await asyncio.sleep(0.01)
    transport.close()
    await asyncio.wait_for(protocol.lost, 5)
    client.close()


@in_loop
async def test_a_failing_protocol_ends_its_connection_only() -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))

    class Broken(Recorder):
        def data_received(self, data: bytes) -> None:
            raise ValueError("a bug")

    server, client = await accepted_pair()
    protocol = Broken()
    open_transport(loop, server, protocol, None)
    await loop.sock_sendall(client, b"anything")
    error = await asyncio.wait_for(protocol.lost, 5)
    assert isinstance(error, ValueError)
    assert errors and isinstance(errors[0]["exception"], ValueError)
    client.close()


def test_the_server_uses_it_on_asyncio_loops_only() -> None:
    """asyncio's own loop gets this transport; uvloop (SMTPGATE_TEST_LOOP=uvloop) its own."""
    seen: list[Any] = []

    async def session() -> None:
        async def on_connect(session: Any) -> None:
            connection = next(iter(server.connections.everyone()))
            seen.append(connection.transport)

        server = SMTPServer(name="mx.test", disable_reverse_lookup=True, on_connect=on_connect)
        await server.listen(0, host="127.0.0.1")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"220 ")
            writer.write(b"QUIT\r\n")
            assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"221 ")
            writer.close()
        finally:
            await server.close()

    factory = loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(asyncio.wait_for(session(), 30))
        asyncio_loop = fits(runner.get_loop())
    assert asyncio_loop == (factory is None)
    assert (type(seen[0]) is SocketTransport) == asyncio_loop


def test_accept_backs_off_when_out_of_file_descriptors(tmp_path: Any) -> None:
    """EMFILE: the listener stops accepting for a moment instead of spinning, and serves
    again once descriptors are free (a server in its own process, with few descriptors)."""
    script = tmp_path / "server.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, os, resource, sys
            from smtpgate import SMTPServer

            async def main():
                server = SMTPServer(name="mx.test", disable_reverse_lookup=True)
                await server.listen(0, host="127.0.0.1")
                used = len(os.listdir("/proc/self/fd"))
                resource.setrlimit(resource.RLIMIT_NOFILE, (used + 3, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
                print(server.port, flush=True)
                await asyncio.sleep(30)

            asyncio.run(main())
            """
        )
    )
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    clients: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        greeted = 0
        for _ in range(8):  # more than the server has descriptors for
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.settimeout(0.5)
            clients.append(sock)
            try:
                if sock.recv(100).startswith(b"220"):
                    greeted += 1
            except TimeoutError:
                pass
        assert 1 <= greeted < 8
        start = time.monotonic()
        for sock in clients:
            sock.close()
        clients.clear()
        # After the back-off, the server greets again.
        deadline = time.monotonic() + 10
        while True:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.settimeout(3)
                try:
                    if sock.recv(100).startswith(b"220"):
                        break
                except TimeoutError:
                    pass
            assert time.monotonic() < deadline, "the server did not accept again"
            time.sleep(0.2)
        assert time.monotonic() - start < 10
        fields = open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()
        cpu_seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        assert cpu_seconds < 5, f"the server spun on accept: {cpu_seconds:.1f} s of CPU"
    finally:
        for sock in clients:
            sock.close()
        proc.kill()
        _, stderr = proc.communicate(timeout=10)
    assert "accept failed" in stderr and "accepting again" in stderr

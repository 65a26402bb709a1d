"""reuse_port=True: several servers, in one process or in several worker processes, listen
on the same port and all of them serve; without it the second listen() fails clearly."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from proxy_support import free_port

from smtpgate import SMTPServer

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="SO_REUSEPORT is not available here"),
]


async def greeting(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()


def test_two_servers_in_one_process_share_the_port():
    async def main() -> set[bytes]:
        first = SMTPServer(name="mx.test", banner="first", disable_reverse_lookup=True)
        second = SMTPServer(name="mx.test", banner="second", disable_reverse_lookup=True)
        await first.listen(0, host="127.0.0.1", reuse_port=True)
        try:
            await second.listen(first.port, host="127.0.0.1", reuse_port=True)
            assert second.port == first.port
            seen: set[bytes] = set()
            for _ in range(200):  # the kernel spreads connections by a hash of the client port
                seen.add((await greeting(first.port)).strip())
                if len(seen) == 2:
                    break
            await first.close()
            after_close = (await greeting(second.port)).strip()  # the survivor takes everything
            assert after_close == b"220 mx.test ESMTP second"
        finally:
            await asyncio.wait_for(first.close(), 10)
            await asyncio.wait_for(second.close(), 10)
        return seen

    assert asyncio.run(main()) == {b"220 mx.test ESMTP first", b"220 mx.test ESMTP second"}


def test_without_reuse_port_the_second_listen_fails_clearly():
    async def main() -> None:
        first = SMTPServer(name="mx.test", disable_reverse_lookup=True)
        second = SMTPServer(name="mx.test", disable_reverse_lookup=True)
        await first.listen(0, host="127.0.0.1")
        try:
            with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{first.port}"):
                await second.listen(first.port, host="127.0.0.1", reuse_port=True)
        finally:
            await asyncio.wait_for(first.close(), 10)
            await asyncio.wait_for(second.close(), 10)

    asyncio.run(main())


def test_reuse_port_with_proxy_listeners():
    """The PROXY accept path (smtpgate's own accept loop) shares the port as well."""

    async def main() -> set[str]:
        seen: set[str] = set()
        servers = [SMTPServer(name=f"w{index}.test", use_proxy=True, disable_reverse_lookup=True) for index in range(2)]
        await servers[0].listen(0, host="127.0.0.1", reuse_port=True)
        await servers[1].listen(servers[0].port, host="127.0.0.1", reuse_port=True)
        try:
            for _ in range(200):
                reader, writer = await asyncio.open_connection("127.0.0.1", servers[0].port)
                writer.write(b"PROXY TCP4 192.0.2.1 198.51.100.1 1000 25\r\n")
                line = await asyncio.wait_for(reader.readline(), 5)
                writer.close()
                seen.add(line.split()[1].decode())
                if len(seen) == 2:
                    break
        finally:
            for server in servers:
                await asyncio.wait_for(server.close(), 10)
        return seen

    assert asyncio.run(main()) == {"w0.test", "w1.test"}


# The worker that docs/deployment.md shows, with the port from the command line.
WORKER = textwrap.dedent(
    """
    import asyncio, os, signal, sys

    from smtpgate import SMTPServer


    async def on_data(stream, session):
        await stream.read()


    async def main(port: int) -> None:
        server = SMTPServer(name="mx.test", banner=f"worker {os.getpid()}", on_data=on_data)
        await server.listen(port, host="127.0.0.1", reuse_port=True)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, lambda: asyncio.ensure_future(server.close()))
        print("ready", flush=True)
        await server.serve_forever()


    asyncio.run(main(int(sys.argv[1])))
    """
)


def wait_for_line(process: subprocess.Popen[str], expected: str, timeout: float = 20.0) -> None:
    assert process.stdout is not None
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    assert result and result[0].strip() == expected, f"worker said {result!r}"


def test_worker_processes_share_the_port(tmp_path: Path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    port = free_port()
    workers: list[subprocess.Popen[str]] = []
    try:
        for _ in range(2):
            process = subprocess.Popen(
                [sys.executable, str(script), str(port)],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            workers.append(process)
            wait_for_line(process, "ready")
        pids = {str(process.pid) for process in workers}
        seen: set[str] = set()
        for _ in range(200):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                line = client.makefile("rb").readline().decode()
            assert line.startswith("220 mx.test ESMTP worker ")
            seen.add(line.split()[-1])
            if seen == pids:
                break
        assert seen == pids
        for process in workers:
            process.send_signal(signal.SIGTERM)
        for process in workers:
            assert process.wait(timeout=20) == 0, "a worker shuts down cleanly on SIGTERM"
    finally:
        for process in workers:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
            if process.stdout is not None:
                process.stdout.close()

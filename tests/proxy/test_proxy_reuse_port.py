"""reuse_port=True: several servers, in one process or in several worker processes, listen
on the same port and all of them serve; without it the second listen() fails clearly."""

from __future__ import annotations

import asyncio
import socket

import pytest

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


# Several worker processes on one port: test_proxy_deployment_docs.py runs the documented worker.

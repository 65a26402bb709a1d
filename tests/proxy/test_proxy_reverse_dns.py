"""Reverse DNS: session.client_hostname from a ``resolver=`` (async or plain), "[address]"
when it fails, answers nonsense or hangs past reverse_lookup_timeout, other clients served
meanwhile, disable_reverse_lookup, and the PROXY address being the one looked up."""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import threading

import pytest
from proxy_support import v1

from support import Recorder, smtpgate_messages, wait_for_log

pytestmark = pytest.mark.timeout(60)


def hostname_server(start_server, resolver, **options):
    names = Recorder()
    running = start_server(
        resolver=resolver,
        disable_reverse_lookup=options.pop("disable_reverse_lookup", False),
        on_connect=lambda session: names.add(session.client_hostname),
        **options,
    )
    return running, names


def greet(raw_client, running):
    client = raw_client(running.port)
    assert client.reply()[0] == 220
    return client


def test_async_resolver_names_the_client(start_server, raw_client):
    asked = Recorder()

    async def resolver(address):
        asked.add(address)
        await asyncio.sleep(0)
        return "Mail.Example.ORG."

    running, names = hostname_server(start_server, resolver)
    greet(raw_client, running)
    assert names.wait_for(1) == ["mail.example.org"]
    assert asked.items == ["127.0.0.1"]


def test_plain_function_resolver(start_server, raw_client):
    running, names = hostname_server(start_server, lambda address: "plain.example")
    greet(raw_client, running)
    assert names.wait_for(1) == ["plain.example"]


@pytest.mark.parametrize(
    "answer",
    [None, "", "bad host name", "-leading.example", "a" * 64 + ".example", "x" * 300, "host\r\nname"],
)
def test_nonsense_answers_give_the_bracketed_address(start_server, raw_client, answer):
    async def resolver(address):
        return answer

    running, names = hostname_server(start_server, resolver)
    greet(raw_client, running)
    assert names.wait_for(1) == ["[127.0.0.1]"]


@pytest.mark.parametrize(
    "error", [OSError("NXDOMAIN"), UnicodeError("idna"), ValueError("bad"), RuntimeError("resolver bug")]
)
def test_failing_resolver_gives_the_bracketed_address(start_server, raw_client, smtpgate_log, error):
    async def resolver(address):
        raise error

    running, names = hostname_server(start_server, resolver)
    client = greet(raw_client, running)
    assert names.wait_for(1) == ["[127.0.0.1]"]
    assert client.command("EHLO client.example")[0] == 250
    if isinstance(error, RuntimeError):  # an unexpected failure is worth a line; NXDOMAIN is not
        assert wait_for_log(smtpgate_log, "reverse lookup failed").levelname == "WARNING"
    else:
        assert not [m for m in smtpgate_messages(smtpgate_log) if "reverse lookup" in m]


def test_hanging_resolver_is_bounded_by_reverse_lookup_timeout(start_server, raw_client):
    async def resolver(address):
        await asyncio.sleep(3600)

    running, names = hostname_server(start_server, resolver, reverse_lookup_timeout=0.3)
    client = greet(raw_client, running)
    assert names.wait_for(1) == ["[127.0.0.1]"]
    assert client.command("NOOP")[0] == 250


def test_other_clients_are_served_while_a_lookup_hangs(start_server, raw_client):
    gate = threading.Event()
    calls = Recorder()

    async def resolver(address):
        calls.add(address)
        if len(calls.items) == 1:  # the first client's lookup waits for the test
            await asyncio.get_running_loop().run_in_executor(None, gate.wait, 20)
            return "slow.example"
        return "fast.example"

    running, names = hostname_server(start_server, resolver, reverse_lookup_timeout=30)
    slow = raw_client(running.port)
    calls.wait_for(1)
    fast = greet(raw_client, running)
    assert fast.command("NOOP")[0] == 250
    assert names.items == ["fast.example"]
    slow.sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        slow.sock.recv(1)  # still no greeting: its lookup is pending
    slow.sock.setblocking(True)
    gate.set()
    assert slow.reply()[0] == 220
    assert names.wait_for(2) == ["fast.example", "slow.example"]


def test_disable_reverse_lookup_never_calls_the_resolver(start_server, raw_client):
    calls = Recorder()

    async def resolver(address):
        calls.add(address)
        return "never.example"

    running, names = hostname_server(start_server, resolver, disable_reverse_lookup=True)
    greet(raw_client, running)
    assert names.wait_for(1) == ["[127.0.0.1]"]
    assert calls.items == []


def test_the_proxied_address_is_looked_up(start_server, raw_client):
    calls = Recorder()

    async def resolver(address):
        calls.add(address)
        return "client.example"

    running, names = hostname_server(start_server, resolver, use_proxy=True)
    client = raw_client(running.port)
    client.send(v1("192.0.2.10"))
    assert client.reply()[0] == 220
    assert names.wait_for(1) == ["client.example"]
    assert calls.items == ["192.0.2.10"]


def test_default_resolver_answers_a_name_or_the_bracketed_address(start_server, raw_client):
    running, names = hostname_server(start_server, None, reverse_lookup_timeout=2)
    greet(raw_client, running)
    name = names.wait_for(1)[0]
    assert name == "[127.0.0.1]" or re.fullmatch(r"[a-z0-9_.-]+", name), name


def test_client_gone_during_the_lookup_gets_neither_on_connect_nor_on_close(start_server, raw_client):
    """on_connect and on_close come in pairs: a client that resets the connection while
    its name is being looked up never had a session."""
    looked_up = threading.Event()
    connects, closes = Recorder(), Recorder()

    async def resolver(address):
        looked_up.set()
        await asyncio.sleep(0.5)
        return "slow.example"

    running = start_server(
        resolver=resolver,
        disable_reverse_lookup=False,
        on_connect=lambda session: connects.add(session.id),
        on_close=lambda session: closes.add(session.id),
    )
    gone = raw_client(running.port)
    assert looked_up.wait(10)
    gone.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    gone.close()  # a reset
    client = greet(raw_client, running)  # the next client is served (after its own lookup)
    assert client.command("QUIT")[0] == 221
    closes.wait_for(1)
    assert len(connects.items) == 1 and len(closes.items) == 1
    assert connects.items == closes.items

"""Limits: pure parts, then real servers on loopback, in-process and shared through Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from redis_support import RedisProcess, run_in

from raw_client import RawClient
from smtpgate import ServerThread, SMTPServer
from smtpgate.limits import (
    Limiter,
    LimitPolicy,
    MemoryBackend,
    Rate,
    RedisBackend,
    TrustedNetworks,
    client_key,
    parse_rate,
)

# ------------------------------------------------------------------ pure parts


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("100", Rate(100, 60)),
        ("100/min", Rate(100, 60)),
        ("10/s", Rate(10, 1)),
        ("5/10s", Rate(5, 10)),
        ("7/h", Rate(7, 3600)),
        (" 3 / 2 minute ", Rate(3, 120)),
        ("0/min", Rate(0, 60)),
    ],
)
def test_parse_rate(text: str, rate: Rate) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["", "x", "-1/min", "5/fortnight", "5/0s", "1.5/min"])
def test_parse_rate_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


def test_client_keys_group_ipv6_networks() -> None:
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:2::9") == client_key("2001:db8:1:2:ffff::1")
    assert client_key("2001:db8:1:3::9") != client_key("2001:db8:1:2::9")
    assert client_key("192.0.2.7", ipv4_prefix=24) == "192.0.2.0/24"
    assert client_key("2001:db8::1", ipv6_prefix=128) == "2001:db8::1"
    assert client_key("/run/smtp.sock") == "/run/smtp.sock"


def test_trusted_networks() -> None:
    trusted = TrustedNetworks(["10.0.0.0/8", "2001:db8::/32", "192.0.2.1"])
    assert "10.1.2.3" in trusted and "::ffff:10.1.2.3" in trusted and "192.0.2.1" in trusted
    assert "2001:db8:5::1" in trusted
    assert "192.0.2.2" not in trusted and "11.0.0.1" not in trusted and "unix" not in trusted
    with pytest.raises(ValueError, match="invalid trusted network"):
        TrustedNetworks(["10.0.0.0/33"])


def test_memory_backend_counts_windows_and_slots() -> None:
    asyncio.run(_memory_backend())


async def _memory_backend() -> None:
    backend = MemoryBackend()
    assert (await backend.acquire("k", "a", 2)).allowed
    assert (await backend.acquire("k", "b", 2)).allowed
    refused = await backend.acquire("k", "c", 2)
    assert not refused.allowed and refused.count == 2
    await backend.release("k", "a")
    assert (await backend.acquire("k", "c", 2)).allowed
    verdicts = [(await backend.hit("r", 3, 0.5)).allowed for _ in range(4)]
    assert verdicts == [True, True, True, False]
    await asyncio.sleep(0.5)
    assert (await backend.hit("r", 3, 0.5)).count == 1


# ------------------------------------------------------------------ real servers


class Receivers:
    """SMTP servers with a Limiter each, on background loops; closed at the end."""

    def __init__(self, start_server: Callable[..., ServerThread]) -> None:
        self.start_server = start_server
        self.running: list[tuple[ServerThread, Limiter]] = []

    def start(self, policy: LimitPolicy, backend: Any = None) -> ServerThread:
        limiter = Limiter(policy, backend)
        server = SMTPServer(name="mx.test", disable_reverse_lookup=True, **limiter.wrap({}))
        thread = self.start_server(server)
        run_in(thread.loop, limiter.start())
        self.running.append((thread, limiter))
        return thread

    def close(self) -> None:
        for thread, limiter in self.running:
            if thread.loop is not None and not thread.loop.is_closed():
                run_in(thread.loop, limiter.close())


@pytest.fixture
def receivers(start_server: Callable[..., ServerThread]) -> Iterator[Receivers]:
    made = Receivers(start_server)
    yield made
    made.close()


def greet(port: int) -> tuple[RawClient, tuple[int, str]]:
    client = RawClient("127.0.0.1", port)
    return client, client.reply()


def bye(client: RawClient) -> None:
    """QUIT if the server still listens; wait until the connection is closed."""
    try:
        client.send("QUIT\r\n")
    except OSError:
        pass
    client.is_closed()
    client.sock.close()


def session(port: int) -> RawClient:
    client, (code, text) = greet(port)
    assert code == 220, text
    assert client.command("EHLO client.test")[0] == 250
    return client


def test_concurrent_connections_per_client(receivers: Receivers) -> None:
    port = receivers.start(LimitPolicy(connections=2)).port
    first, second = session(port), session(port)
    third, (code, text) = greet(port)
    assert code == 421 and text.startswith("4.7.0 Too many concurrent connections from 127.0.0.1")
    assert third.is_closed()
    first.command("QUIT")
    assert first.is_closed()
    deadline = time.monotonic() + 10
    while True:  # the slot is back once the server ran on_close
        client, (code, _) = greet(port)
        if code == 220 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert code == 220
    client.command("QUIT")
    second.command("QUIT")


def test_message_and_recipient_rates_reset_after_their_window(receivers: Receivers) -> None:
    port = receivers.start(LimitPolicy(messages=Rate(2, 1.5), recipients=Rate(3, 1.5))).port
    client = session(port)
    assert client.command("MAIL FROM:<a@x.test>")[0] == 250
    assert [client.command(f"RCPT TO:<r{i}@y.test>")[0] for i in range(4)] == [250, 250, 250, 450]
    client.command("RSET")
    # The window may have turned since: wait for a fresh one, then count from zero.
    time.sleep(1.6)
    assert client.command("MAIL FROM:<a@x.test>")[0] == 250
    client.command("RSET")
    code, text = client.command("MAIL FROM:<b@x.test>")
    if code == 250:  # a window boundary fell between the two: one more try in this window
        client.command("RSET")
        code, text = client.command("MAIL FROM:<c@x.test>")
    assert (code, text.split(" from ")[0]) == (450, "4.7.1 Too many messages")
    time.sleep(1.6)
    assert client.command("MAIL FROM:<a@x.test>")[0] == 250
    client.command("QUIT")


def test_messages_per_sender_across_clients(receivers: Receivers) -> None:
    port = receivers.start(LimitPolicy(messages=Rate(3, 60), ipv4_prefix=32)).port
    one, two = session(port), session(port)
    codes = []
    for client in (one, two, one, two):
        codes.append(client.command("MAIL FROM:<Same@X.test>")[0])
        client.command("RSET")
    assert codes == [250, 250, 250, 450]
    code, text = two.command("MAIL FROM:<other@x.test>")
    assert code == 450 and "from 127.0.0.1" in text  # the client's own count is full too


def test_trusted_networks_are_exempt(receivers: Receivers) -> None:
    port = receivers.start(LimitPolicy(connections=1, messages=Rate(1, 60), trusted=("127.0.0.0/8",))).port
    clients = [session(port) for _ in range(3)]
    for client in clients:
        for _ in range(2):
            assert client.command("MAIL FROM:<a@x.test>")[0] == 250
            client.command("RSET")
        client.command("QUIT")


def test_limits_shared_through_redis_across_two_receivers(receivers: Receivers, redis_server: RedisProcess) -> None:
    policy = LimitPolicy(connections=3, connection_rate=Rate(5, 2), recipients=Rate(4, 60))
    ports = [receivers.start(policy, RedisBackend(redis_server.url, lease=5)).port for _ in range(2)]
    # Concurrency: 3 slots in all, whichever receiver the client reaches.
    held = [session(ports[0]), session(ports[1]), session(ports[0])]
    refused, (code, text) = greet(ports[1])
    assert code == 421 and "4.7.0 Too many concurrent connections" in text
    # Recipients: 4 per minute for this client, spread over both receivers (in one fixed
    # window: too close to a minute's end, the six RCPTs could be counted in two).
    left = 60 - time.time() % 60
    if left < 5:
        time.sleep(left + 0.1)
    codes = []
    for client in held[:2]:
        client.command("MAIL FROM:<a@x.test>")
        codes += [client.command(f"RCPT TO:<r{i}@y.test>")[0] for i in range(3)]
    assert codes == [250, 250, 250, 250, 450, 450]
    for client in held:
        bye(client)
    # Connection rate: 5 accepted per 2 s window in all, the three above included.
    time.sleep(2.1)
    codes = []
    for i in range(6):
        client, (code, _) = greet(ports[i % 2])
        codes.append(code)
        bye(client)
    assert codes.count(220) in (5, 6) and codes[:4] == [220] * 4  # 6: a window boundary fell inside
    time.sleep(2.1)  # the window ends: accepted again
    client, (code, _) = greet(ports[1])
    assert code == 220


def test_redis_slots_of_a_dead_receiver_expire(receivers: Receivers, redis_server: RedisProcess) -> None:
    policy = LimitPolicy(connections=1)
    port_a = receivers.start(policy, RedisBackend(redis_server.url, lease=1.0)).port
    port_b = receivers.start(policy, RedisBackend(redis_server.url, lease=1.0)).port
    held = session(port_a)
    time.sleep(1.5)  # longer than the lease: the heartbeat keeps the slot
    client, (code, _) = greet(port_b)
    assert code == 421
    # Receiver A "dies": its heartbeat stops, its slot is not released.
    thread_a, limiter_a = receivers.running[0]
    backend: Any = limiter_a.backend
    run_in(thread_a.loop, _stop_heartbeat(backend))
    deadline = time.monotonic() + 10
    while code != 220 and time.monotonic() < deadline:
        time.sleep(0.25)
        client, (code, _) = greet(port_b)
    assert code == 220
    held.sock.close()


async def _stop_heartbeat(backend: Any) -> None:
    backend._heartbeat.cancel()
    backend._held.clear()


def test_redis_down_fails_open(receivers: Receivers, redis_server: RedisProcess) -> None:
    port = receivers.start(LimitPolicy(connections=1, messages=Rate(1, 60)), RedisBackend(redis_server.url)).port
    redis_server.stop()
    clients = [session(port), session(port)]
    for client in clients:
        assert client.command("MAIL FROM:<a@x.test>")[0] == 250
        client.command("QUIT")

"""Limits and metrics wrapped around a library server's own handlers: the handlers still
run, XCLIENT moves the client's slot to its new identity, counts stay right."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from redis_support import run_in

from raw_client import RawClient
from smtpgate import ServerThread, SMTPError, SMTPServer
from smtpgate.limits import Limiter, LimitPolicy
from smtpgate.metrics import Metrics


def test_wrappers_keep_the_handlers_and_follow_xclient(start_server: Callable[..., ServerThread]) -> None:
    calls: list[str] = []

    async def on_connect(session: Any) -> None:
        calls.append(f"connect {session.remote_address}")

    def on_rcpt_to(address: Any, session: Any) -> None:  # a plain function works too
        if address.address.startswith("nobody@"):
            raise SMTPError(550, "No such user")

    async def on_close(session: Any) -> None:
        calls.append("close")

    async def on_data(stream: Any, session: Any) -> None:
        await stream.read()

    limiter = Limiter(LimitPolicy(connections=1))
    metrics = Metrics(process=False)
    handlers = dict(on_connect=on_connect, on_rcpt_to=on_rcpt_to, on_close=on_close, on_data=on_data)
    options = metrics.wrap(limiter.wrap(handlers))
    limiter.on_refusal.append(metrics.count_refusal)
    server = SMTPServer(name="mx.test", disable_reverse_lookup=True, use_xclient=["127.0.0.1"], **options)
    thread = start_server(server)
    run_in(thread.loop, limiter.start())

    proxy = RawClient("127.0.0.1", thread.port)
    assert proxy.reply()[0] == 220
    proxy.command("EHLO proxy.test")
    assert proxy.command("XCLIENT ADDR=192.0.2.7")[0] == 220  # a new identity, greeted again
    # 127.0.0.1's slot was given back when the session became 192.0.2.7's.
    direct = RawClient("127.0.0.1", thread.port)
    assert direct.reply()[0] == 220
    other = RawClient("127.0.0.1", thread.port)
    assert other.reply()[0] == 421  # 127.0.0.1's one slot is taken
    proxy.command("EHLO client.test")
    assert proxy.command("MAIL FROM:<a@x.test>")[0] == 250
    assert proxy.command("RCPT TO:<nobody@y.test>")[0] == 550
    assert proxy.command("RCPT TO:<b@y.test>")[0] == 250
    assert proxy.command("DATA")[0] == 354
    assert proxy.command("Subject: x\r\n\r\nbody\r\n.")[0] == 250
    for client in (proxy, direct):
        client.command("QUIT")
    for client in (proxy, direct, other):
        assert client.is_closed()
    deadline = time.monotonic() + 10
    while metrics.registry.get_sample_value("smtpgate_connections_active") != 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert calls.count("close") == 3 and "connect 192.0.2.7" in calls
    assert sample("smtpgate_connections_total") == 3  # XCLIENT is not a new connection
    assert sample("smtpgate_sessions_total", outcome="message") == 1
    assert sample("smtpgate_sessions_total", outcome="refused") == 1
    assert sample("smtpgate_sessions_total", outcome="no_message") == 1
    assert sample("smtpgate_commands_refused_total", command="RCPT", code="550") == 1
    assert sample("smtpgate_limit_refusals_total", limit="connections") == 1
    assert sample("smtpgate_messages_accepted_total") == 1
    assert sample("smtpgate_message_bytes_total") == len(b"Subject: x\r\n\r\nbody\r\n")
    run_in(thread.loop, limiter.close())

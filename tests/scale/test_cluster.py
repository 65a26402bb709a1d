"""The multi-host layout on loopback, under load and failures: HAProxy in front of two
receivers and of Redis (a primary and a replica), two delivery workers posting to a
webhook. A receiver is killed mid-DATA, a worker mid-delivery, and the Redis primary is
stopped and its replica promoted. Every acknowledged message must arrive, none that was
refused, and a message that arrives twice carries the same ID both times."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_support import Command
from cluster_support import HAProxyProcess, Load, Outcomes, Webhook, haproxy_config, send_one, wait_for
from redis_support import RedisProcess

from support import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook().start()
    yield hook
    hook.stop()


@pytest.fixture
def haproxy_factory(tmp_path: Path) -> Iterator[Callable[..., HAProxyProcess]]:
    started: list[HAProxyProcess] = []

    def start(config: str, ports: list[int]) -> HAProxyProcess:
        process = HAProxyProcess(tmp_path, config, ports).start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def kill(command: Command) -> None:
    os.killpg(command.process.pid, signal.SIGKILL)
    command.process.wait(10)


def test_acknowledged_mail_survives_a_receiver_a_worker_and_the_redis_primary(
    tmp_path: Path,
    redis_factory: Callable[..., RedisProcess],
    smtpgate_cli: Callable[..., Command],
    haproxy_factory: Callable[..., HAProxyProcess],
    webhook: Webhook,
) -> None:
    primary = redis_factory("primary")
    replica = redis_factory("replica", replica_of=primary.port)
    replica.wait_replica_synced()
    smtp_port, redis_port = free_port(), free_port()
    receiver_ports = [free_port(), free_port()]
    haproxy_factory(
        haproxy_config(smtp_port, receiver_ports, redis_port, [primary.port, replica.port]), [smtp_port, redis_port]
    )
    stream = f"redis://127.0.0.1:{redis_port}/0?timeout=2"
    receivers = []
    for index, port in enumerate(receiver_ports):
        command = Command(
            [
                "--port",
                str(port),
                "--name",
                f"mx{index}.test",
                "--proxy-protocol",
                "127.0.0.1",
                "--sink",
                stream + "&wait-timeout=1.5",
                "--redis-replicas",
                "1",
            ],
            _folder(tmp_path / f"receiver{index}"),
            port,
        )
        receivers.append(command.wait_listening())
    workers = [
        smtpgate_cli(
            "deliver",
            "--from",
            stream + "&claim-timeout=2&settle=2",
            "--deliver",
            webhook.url(name),
            "--retry-min",
            "0.2",
            "--concurrency",
            "4",
            cwd=tmp_path / f"worker-{name}",
            wait=False,
        )
        for name in ("hold", "w2")
    ]
    try:
        for worker in workers:
            worker.wait_listening()
        outcomes = Outcomes()
        load = Load(smtp_port, outcomes, clients=4).start()

        def acked_at_least(count: int) -> Callable[[], bool]:
            return lambda: len(outcomes.tokens("acked")) >= count

        wait_for(acked_at_least(10), 60, "the first acknowledged messages")

        # A worker killed mid-delivery: the webhook holds its first request unanswered.
        wait_for(webhook.held.is_set, 60, "a delivery held by the webhook")
        kill(workers[0])

        # A receiver killed mid-DATA (reached directly, with the PROXY header HAProxy would send).
        partial = socket.create_connection(("127.0.0.1", receiver_ports[0]), timeout=10)
        partial.sendall(b"PROXY TCP4 192.0.2.9 127.0.0.1 40000 25\r\n")
        partial.sendall(b"EHLO c.test\r\nMAIL FROM:<p@x.test>\r\nRCPT TO:<box@y.test>\r\nDATA\r\n")
        time.sleep(0.5)
        partial.sendall(b"Subject: partial\r\nX-Token: partial\r\n\r\n" + b"half a body\r\n" * 100)
        time.sleep(0.3)
        kill(receivers[0])
        partial.close()

        before_failover = len(outcomes.tokens("acked"))
        wait_for(acked_at_least(before_failover + 10), 60, "mail through the remaining receiver")

        # The Redis primary stops; its replica is promoted; the old primary comes back as a replica.
        primary.stop()
        replica.promote()
        old_primary = RedisProcess(primary.directory, port=primary.port, replica_of=replica.port)
        old_primary.start()
        primary.process = old_primary.process  # stopped by the fixture
        old_primary.wait_replica_synced(30)
        after_failover = len(outcomes.tokens("acked"))
        wait_for(acked_at_least(after_failover + 10), 60, "mail after the failover")
        load.stop()

        acked = outcomes.tokens("acked")
        wait_for(lambda: acked <= set(webhook.tokens()), 90, "every acknowledged message delivered")
        time.sleep(3)  # stragglers (a duplicate on its way) arrive too
        delivered = webhook.tokens()
        assert acked <= set(delivered)
        never = outcomes.tokens("refused") | outcomes.tokens("unsent") | {"partial"}
        assert not never & set(delivered), f"delivered without a 250: {sorted(never & set(delivered))}"
        duplicates = {token: webhook.count(token) for token in delivered if webhook.count(token) > 1}
        assert all(len(delivered[token]) == 1 for token in delivered), "a duplicate with another ID"
        assert duplicates, "the held delivery was delivered again by the other worker"
        summary = {kind: len(outcomes.tokens(kind)) for kind in ("acked", "refused", "unsent", "unknown")}
        print(f"outcomes {summary}; delivered {len(delivered)}; duplicates {duplicates}")
    finally:
        for command in receivers + workers:
            command.kill()


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_send_one_records_a_refusal(tmp_path: Path, smtpgate_cli: Callable[..., Command]) -> None:
    """The load client's bookkeeping: a 451 after DATA is 'refused'."""
    receiver = smtpgate_cli("--sink", f"redis://127.0.0.1:{free_port()}/0?timeout=0.5")
    outcomes = Outcomes()
    send_one(receiver.port, "t1", outcomes)
    assert outcomes.by_token == {"t1": "refused"}

"""kill -9 and SIGTERM of the command with --http and --deliver under concurrent SMTP load:
every message that got a 250 ends up in the inbox and at the webhook, nothing else does."""

from __future__ import annotations

import random
import socket
import sqlite3
import time
from collections.abc import Callable

import pytest
from e2e_load import Load
from e2e_support import Gate, KnotServer, Receiver, hook_url, slow_webhook, subject_of, wait_until

ROUNDS = 10
CLOSE_TIMEOUT = 3


def check_everything_acked_is_everywhere(running: Gate, webhook: Receiver, load: Load) -> None:
    """After the last start: the inbox and the webhook hold every acked message, nothing
    that was never sent whole, one webhook-id per message; the queue empties."""
    by_subject: dict[str, set[str]] = {}

    def delivered() -> set[str]:
        by_subject.clear()
        for _, headers, body in list(webhook.requests):
            by_subject.setdefault(subject_of(body), set()).add(headers["webhook-id"])
        return set(by_subject)

    wait_until(lambda: load.acked <= delivered(), 90, "every acknowledged message at the webhook")
    wait_until(running.queue_drained, 60, "the queue to drain")
    delivered()
    assert set(by_subject) <= load.attempted, set(by_subject) - load.attempted
    duplicates = {subject: ids for subject, ids in by_subject.items() if len(ids) > 1}
    assert duplicates == {}, "a message delivered twice must carry the same webhook-id"
    inbox_subjects = [summary["Subject"] for summary in running.inbox()]
    assert load.acked <= set(inbox_subjects), sorted(load.acked - set(inbox_subjects))[:10]
    assert set(inbox_subjects) <= load.attempted, set(inbox_subjects) - load.attempted
    assert len(inbox_subjects) == len(set(inbox_subjects)), "a message is twice in the inbox"
    assert not load.cut_off & (set(inbox_subjects) | set(by_subject)), "a message cut off mid-DATA was stored"


def integrity(running: Gate) -> str:
    with sqlite3.connect(running.cwd / "inbox.sqlite3") as database:
        (result,) = database.execute("PRAGMA integrity_check").fetchone()
    return str(result)


@pytest.mark.slow
def test_kill_9_under_load_loses_nothing_acknowledged(gate: Callable[..., Gate]) -> None:
    rng = random.Random()
    seed = rng.randrange(1 << 32)
    rng.seed(seed)
    with slow_webhook(0.15) as webhook:
        kill_rounds(gate, webhook, rng, seed)


def kill_rounds(gate: Callable[..., Gate], webhook: Receiver, rng: random.Random, seed: int) -> None:
    running = gate("--deliver", hook_url(webhook), "--retry-min", "1")
    with Load(running.port) as load:
        for round_number in range(ROUNDS):
            load.wait_acked(rng.randrange(1, 15), timeout=10)
            time.sleep(rng.uniform(0, 0.2))  # somewhere in a session, a commit or a delivery
            running.kill()
            assert integrity(running) == "ok", f"seed {seed}, round {round_number}"
            running.start()
        load.wait_acked(5, timeout=10)
    assert len(load.acked) > ROUNDS, f"seed {seed}: too little load to mean anything"
    print(f"seed {seed}: {len(load.acked)} acked, {len(load.attempted)} attempted, {len(load.cut_off)} cut off")
    check_everything_acked_is_everywhere(running, webhook, load)
    ids = [headers["webhook-id"] for _, headers, _ in webhook.requests]
    print(f"{len(ids)} webhook requests, {len(ids) - len(set(ids))} repeated after a kill")
    running.kill()
    assert integrity(running) == "ok"


@pytest.mark.slow
def test_sigterm_under_load_with_every_part_on(gate: Callable[..., Gate], dns_server: KnotServer) -> None:
    with slow_webhook(0.5) as webhook:  # deliveries are in flight when the signal comes
        args = ["--deliver", hook_url(webhook), "--retry-min", "1", "--verify", "--dns", dns_server.address]
        args += ["--limit-messages", "100000/min", "--close-timeout", str(CLOSE_TIMEOUT)]
        running = gate(*args, metrics=True)
        with Load(running.port) as load, socket.create_connection(("127.0.0.1", running.port), timeout=30) as stuck:
            stuck.recv(4096)  # a client that stops in the middle of its message and waits
            stuck.sendall(b"EHLO stuck.test\r\nMAIL FROM:<s@client.test>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n")
            stuck.sendall(b"Subject: stuck\r\n\r\nhalf")
            load.wait_acked(30, timeout=30)
            started = time.monotonic()
            assert running.terminate(timeout=CLOSE_TIMEOUT + 20) == 0, running.stderr
            took = time.monotonic() - started
        assert load.acked, "no message was acknowledged before SIGTERM"
        assert took < CLOSE_TIMEOUT + 15, f"exit took {took:.1f} s"
        running.start()
        check_everything_acked_is_everywhere(running, webhook, load)
        assert "stuck" not in {m["Subject"] for m in running.inbox()}
        assert integrity(running) == "ok"


@pytest.mark.slow
def test_worker_processes_share_the_queue_through_kill_9(gate: Callable[..., Gate], webhook: Receiver) -> None:
    running = gate(
        "--sink", "dir:out", "--deliver", hook_url(webhook), "--retry-min", "1", "--workers", "2", http=False
    )
    with Load(running.port, threads=4) as load:
        for _ in range(3):
            load.wait_acked(10, timeout=10)
            running.restart()  # SIGKILL to the whole process group: the parent and both workers
        load.wait_acked(5, timeout=10)
    by_subject: dict[str, set[str]] = {}

    def delivered() -> set[str]:
        by_subject.clear()
        for _, headers, body in list(webhook.requests):
            by_subject.setdefault(subject_of(body), set()).add(headers["webhook-id"])
        return set(by_subject)

    wait_until(lambda: load.acked <= delivered(), 90, "every acknowledged message at the webhook")
    wait_until(running.queue_drained, 60, "the queue to drain")
    assert set(by_subject) <= load.attempted and not set(by_subject) & load.cut_off
    assert {s: ids for s, ids in by_subject.items() if len(ids) > 1} == {}
    stored = {subject_of(path.read_bytes()) for path in (running.cwd / "out").glob("*.eml")}
    assert load.acked <= stored <= load.attempted

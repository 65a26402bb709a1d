"""A message refused by one store is in none: with --http and --deliver, a full queue
(452) or a queue that cannot write (451) leaves nothing in the inbox either, so the
client's retry does not make a duplicate."""

from __future__ import annotations

import smtplib
from collections.abc import Callable

from e2e_support import Gate, Receiver, ThreadedReceiver, free_port, hook_url, subject_of, wait_until


def send(running: Gate, subject: str) -> tuple[int, bytes]:
    message = f"From: a@client.test\r\nTo: b@mx.test\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()
    with smtplib.SMTP("127.0.0.1", running.port, timeout=30) as client:
        client.ehlo()
        client.mail("a@client.test")
        client.rcpt("b@mx.test")
        return client.data(message)


def test_full_queue_refuses_with_452_and_the_inbox_keeps_nothing(gate: Callable[..., Gate]) -> None:
    with ThreadedReceiver(["500"]) as failing:  # nothing leaves the queue
        running = gate("--deliver", hook_url(failing), "--retry-min", "3600", "--queue-max-messages", "2")
        assert send(running, "fits-1")[0] == 250
        assert send(running, "fits-2")[0] == 250
        code, reply = send(running, "no-room")
        assert (code, reply[:6]) == (452, b"4.3.1 ")
        assert sorted(m["Subject"] for m in running.inbox()) == ["fits-1", "fits-2"]
        # (a message in the middle of a delivery attempt is not listed: wait for both)
        wait_until(lambda: len(running.queue_list()) == 2, 30, "both messages listed in the queue")


def test_a_refused_message_retried_later_is_there_once(gate: Callable[..., Gate], webhook: Receiver) -> None:
    running = gate("--deliver", hook_url(webhook), "--retry-min", "3600", "--queue-max-messages", "1")
    webhook.script[:] = ["500"]  # keeps the first message in the queue
    assert send(running, "first")[0] == 250
    wait_until(lambda: len(webhook.requests) == 1, 30, "the failed first attempt")
    assert send(running, "retried")[0] == 452
    webhook.script[:] = ["200"]
    running.queue_retry()
    wait_until(lambda: len(webhook.delivered_ids()) == 1, 30, "the first delivered")
    wait_until(running.queue_drained, 30, "the queue to drain")
    assert send(running, "retried")[0] == 250  # the client's retry, as SMTP clients do
    wait_until(lambda: len(webhook.delivered_ids()) == 2, 30, "both delivered")
    wait_until(running.queue_drained, 30, "the queue to drain")
    assert sorted(m["Subject"] for m in running.inbox()) == ["first", "retried"]
    delivered = sorted(subject_of(body) for _, headers, body in webhook.requests)
    assert delivered == ["first", "first", "retried"]


def test_redis_away_refuses_with_451_and_the_inbox_keeps_nothing(gate: Callable[..., Gate]) -> None:
    nobody = free_port()  # no Redis listens there
    running = gate("--sink", f"redis://127.0.0.1:{nobody}/0")
    code, reply = send(running, "redis-away")
    assert (code, reply[:6]) == (451, b"4.3.0 ")
    assert running.inbox() == []

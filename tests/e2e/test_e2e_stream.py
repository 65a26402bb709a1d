"""The Redis stream with the other parts: a receiver with --http, --verify and
--sink redis://, and ``smtpgate deliver --from redis://... --deliver`` to a webhook.
The inbox and the webhook see the same message with the same verdict; a consumer killed
under load loses nothing; the health and metrics answer on the --http port."""

from __future__ import annotations

import random
import smtplib
from collections.abc import Callable

import pytest
from e2e_load import Load
from e2e_support import (
    MESSAGE,
    Consumer,
    Gate,
    KnotServer,
    Receiver,
    RedisProcess,
    auth_results,
    hook_url,
    http_status,
    subject_of,
    wait_until,
)


def test_stream_to_webhook_with_inbox_and_verdict(
    gate: Callable[..., Gate],
    consumer: Callable[..., Consumer],
    redis_server: RedisProcess,
    webhook: Receiver,
    dns_server: KnotServer,
) -> None:
    stream = redis_server.url + "?timeout=2"
    running = gate("--sink", stream, "--verify", "--dns", dns_server.address)
    consumer("--from", stream, "--deliver", hook_url(webhook), "--retry-min", "0.2")
    with smtplib.SMTP("127.0.0.1", running.port, local_hostname="client.ok.test", timeout=30) as client:
        client.sendmail("bounce@ok.test", ["bob@mx.test"], MESSAGE.format(subject="streamed").encode())
    wait_until(lambda: len(webhook.delivered_ids()) == 1, 30, "the delivery from the stream")
    ((summary),) = running.inbox()
    raw = running.inbox_raw(summary["ID"])
    ((_, headers, hook_body),) = webhook.requests
    assert subject_of(hook_body) == "streamed" and headers["webhook-id"]
    assert "spf=pass" in auth_results(raw) and auth_results(hook_body) == auth_results(raw)
    # one HTTP server for the inbox, the health checks and the metrics
    assert http_status(f"http://127.0.0.1:{running.http_port}/livez") == 200
    assert http_status(f"http://127.0.0.1:{running.http_port}/readyz") == 200
    metrics = running.get("/metrics").decode()
    assert "smtpgate_messages_accepted_total 1.0" in metrics


@pytest.mark.slow
def test_consumer_killed_under_load_loses_nothing(
    gate: Callable[..., Gate],
    consumer: Callable[..., Consumer],
    redis_server: RedisProcess,
    webhook: Receiver,
) -> None:
    rng = random.Random()
    stream = redis_server.url + "?timeout=2"
    running = gate("--sink", stream)
    # a short claim time, so that a new consumer takes over what the dead one held
    workers = consumer("--from", stream, "--deliver", hook_url(webhook), "--retry-min", "0.2", "--claim-timeout", "1")
    with Load(running.port, threads=4) as load:
        for _ in range(4):
            load.wait_acked(rng.randrange(3, 15), timeout=10)
            workers.restart()
        load.wait_acked(5, timeout=10)
    assert load.acked
    by_subject: dict[str, set[str]] = {}

    def delivered() -> set[str]:
        by_subject.clear()
        for _, headers, body in list(webhook.requests):
            by_subject.setdefault(subject_of(body), set()).add(headers["webhook-id"])
        return set(by_subject)

    wait_until(lambda: load.acked <= delivered(), 90, "every acknowledged message at the webhook")
    assert set(by_subject) <= load.attempted and not set(by_subject) & load.cut_off
    assert {s: ids for s, ids in by_subject.items() if len(ids) > 1} == {}
    inbox = {m["Subject"] for m in running.inbox()}
    assert load.acked <= inbox <= load.attempted

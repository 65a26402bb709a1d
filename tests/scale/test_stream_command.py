"""The commands over a real redis-server: ``smtpgate --sink redis://...`` receives,
``smtpgate deliver --from redis://...`` delivers; Redis going away and coming back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from cli_support import Command, run_once
from redis_support import RedisProcess
from test_metrics import http_get, scrape, value

from smtpgate.queue.redis import RedisStreamQueue
from smtpgate.sinks import MessageInfo
from support import free_port, wait_until


def maildir_count(folder: Path) -> int:
    new = folder / "new"
    return len(list(new.iterdir())) if new.is_dir() else 0


def test_receive_into_the_stream_and_deliver_from_it(
    smtpgate_cli: Callable[..., Command], redis_server: RedisProcess, tmp_path: Path
) -> None:
    source = redis_server.url + "?timeout=1"
    receiver_http, consumer_http = free_port(), free_port()
    receiver = smtpgate_cli("--sink", source, "--metrics", f"127.0.0.1:{receiver_http}", cwd=tmp_path / "r")
    mail = tmp_path / "delivered"
    consumer = smtpgate_cli(
        "deliver",
        "--from",
        source,
        "--sink",
        f"maildir:{mail}",
        "--retry-min",
        "0.2",
        "--metrics",
        f"127.0.0.1:{consumer_http}",
        cwd=tmp_path / "c",
        wait=False,
    )
    consumer.wait_listening("Ctrl-C to stop")
    assert "stream smtpgate" in receiver.stderr and "redis://127.0.0.1" in consumer.stderr
    with receiver.smtp() as client:
        assert client.sendmail("a@x.test", ["b@y.test"], b"Subject: one\r\n\r\nfirst\r\n") == {}
    wait_until(lambda: maildir_count(mail) == 1, 20, "the first message delivered")

    # Redis down: 451 and no 250; not ready; back: 250 again, no restart of either command.
    redis_server.stop()
    with receiver.smtp() as client:
        client.ehlo("client.test")
        client.mail("a@x.test")
        client.rcpt("b@y.test")
        code, text = client.data(b"Subject: lost\r\n\r\nnever acknowledged\r\n")
        assert (code, text[:5]) == (451, b"4.3.0")
    status, reason = http_get(receiver_http, "/readyz")
    assert status == 503 and "redis://" in reason
    redis_server.start()
    wait_until(lambda: http_get(receiver_http, "/readyz")[0] == 200, 20, "ready again")
    with receiver.smtp() as client:
        assert client.sendmail("a@x.test", ["b@y.test"], b"Subject: two\r\n\r\nsecond\r\n") == {}
    wait_until(lambda: maildir_count(mail) == 2, 30, "the second message delivered")
    texts = sorted((p.read_bytes() for p in (mail / "new").iterdir()), key=len)
    assert all(b"never acknowledged" not in t for t in texts)
    assert b"first" in texts[0] + texts[1] and b"second" in texts[0] + texts[1]

    receiver_metrics = scrape(receiver_http)
    assert value(receiver_metrics, "smtpgate_messages_accepted_total") == 2
    assert value(receiver_metrics, "smtpgate_messages_refused_total", code="451") == 1
    consumer_metrics = scrape(consumer_http)
    # At least once: an outcome that could not be recorded while Redis was away is delivered again.
    assert value(consumer_metrics, "smtpgate_delivery_attempts_total", outcome="delivered") >= 2
    wait_until(
        lambda: value(scrape(consumer_http), "smtpgate_queue_messages", queue="smtpgate") == 0, 10, "an empty queue"
    )
    assert http_get(consumer_http, "/readyz")[0] == 200


def test_deliver_command_usage_errors(smtpgate_cli: Callable[..., Command], tmp_path: Path) -> None:
    bad = smtpgate_cli("deliver", "--from", "http://x/", "--sink", f"dir:{tmp_path}", wait=False)
    assert bad.wait() == 2 and "expected redis://" in bad.stderr
    missing = smtpgate_cli("deliver", "--from", "redis://127.0.0.1:1/0", wait=False)
    assert missing.wait() == 2 and "--deliver" in missing.stderr


def test_receiver_starts_while_redis_is_down(smtpgate_cli: Callable[..., Command], tmp_path: Path) -> None:
    port = free_port()
    receiver = smtpgate_cli("--sink", f"redis://127.0.0.1:{port}/0?timeout=0.5")
    assert "not reachable yet" in receiver.stderr
    with receiver.smtp() as client:
        client.ehlo("client.test")
        client.mail("a@x.test")
        client.rcpt("b@y.test")
        assert client.data(b"Subject: x\r\n\r\nx\r\n")[0] == 451
    redis = RedisProcess(tmp_path / "late", port=port).start()
    try:
        with receiver.smtp() as client:
            assert client.sendmail("a@x.test", ["b@y.test"], b"Subject: y\r\n\r\ny\r\n") == {}
    finally:
        redis.stop()


def test_queue_command_on_the_stream(redis_server: RedisProcess, tmp_path: Path) -> None:
    url = redis_server.url + "?stream=admin"

    async def add() -> str:
        queue = RedisStreamQueue(url)
        await queue.start()
        delivery = queue.open(MessageInfo("a@x.test", ("b@y.test",)))
        await delivery.write(b"Subject: q\r\n\r\nq\r\n")
        message_id = await delivery.commit()
        await queue.close()
        return message_id

    message_id = asyncio.run(add())
    listed = run_once(["queue", "--queue", url, "list"], tmp_path)
    assert listed.returncode == 0 and message_id in listed.stdout and "1 queued, 0 dead" in listed.stdout
    record = json.loads(run_once(["queue", "--queue", url, "--json", "list"], tmp_path).stdout)
    assert record["id"] == message_id
    shown = run_once(["queue", "--queue", url, "show", message_id], tmp_path)
    assert shown.returncode == 0 and "recipient: <b@y.test> pending" in shown.stdout and "Subject: q" in shown.stdout
    deleted = run_once(["queue", "--queue", url, "delete", "all"], tmp_path)
    assert deleted.returncode == 0 and "1 message(s) deleted" in deleted.stdout
    assert "Mail queue is empty" in run_once(["queue", "--queue", url, "list"], tmp_path).stdout
    down = run_once(["queue", "--queue", "redis://127.0.0.1:1/0?timeout=0.5", "list"], tmp_path)
    assert down.returncode == 1 and down.stderr.startswith("smtpgate queue: error: redis://127.0.0.1:1/0")


def test_redis_flags_reach_every_worker_process(
    smtpgate_cli: Callable[..., Command], redis_server: RedisProcess
) -> None:
    """--redis-replicas 1 without a replica: every worker process answers 451 (WAIT fails)."""
    receiver = smtpgate_cli(
        "--workers",
        "2",
        "--sink",
        redis_server.url + "?wait-timeout=0.3",
        "--redis-replicas",
        "1",
        marker="ready: 2 workers",
    )
    for _ in range(4):
        with receiver.smtp() as client:
            client.ehlo("client.test")
            client.mail("a@x.test")
            client.rcpt("b@y.test")
            assert client.data(b"Subject: x\r\n\r\nx\r\n")[0] == 451

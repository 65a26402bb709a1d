"""The Redis stream queue against a real redis-server: the sink side, the worker side with
the delivery worker, take-over, dead letters, replicas, and Redis going away."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme
from redis_support import RedisProcess

from smtpgate.queue import Delivered, Failed, QueuedMessage, Retry
from smtpgate.queue.redis import RedisStreamQueue
from smtpgate.queue.redis_codec import StreamOptions, parse_spec
from smtpgate.queue.worker import DeliveryWorker
from smtpgate.sinks import MessageInfo, SinkError, parse_sink
from support import free_port

INFO = MessageInfo("a@x.test", ("b@y.test", "c@y.test"), session_id="s1", client_address="192.0.2.1")


async def store(queue: RedisStreamQueue, body: bytes, piece: int = 700) -> str:
    delivery = queue.open(INFO)
    for start in range(0, len(body), piece):
        await delivery.write(body[start : start + piece])
    return await delivery.commit()


async def until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def test_spec_options() -> None:
    url, options = parse_spec("redis://127.0.0.1:6379/2?stream=mail&replicas=1&chunk-size=4096&health_check_interval=3")
    assert url == "redis://127.0.0.1:6379/2?health_check_interval=3"
    assert options == StreamOptions(stream="mail", replicas=1, chunk_size=4096)
    with pytest.raises(ValueError, match="replicas"):
        parse_spec("redis://h/0?replicas=x")
    sink = parse_sink("redis://:secret@127.0.0.1:6379/0?stream=mail")
    assert sink.kind == "redis" and "secret" not in sink.describe() and "stream mail" in sink.describe()
    with pytest.raises(SinkError, match="invalid sink"):
        parse_sink("rediss://127.0.0.1/0?chunk-size=1")


def test_messages_small_and_chunked_delivered_with_their_envelope(redis_server: RedisProcess) -> None:
    bodies = [b"Subject: small\r\n\r\nhi\r\n", bytes(range(256)) * 80 + b"\r\n"]  # 20 KiB, binary-safe

    async def main() -> None:
        queue = RedisStreamQueue(redis_server.url + "?chunk-size=4096&stream=t1")
        await queue.start()
        ids = [await store(queue, body) for body in bodies]
        stats = await queue.stats()
        assert (stats.queued, stats.dead, stats.size) == (2, 0, sum(map(len, bodies)))
        assert stats.oldest is not None and time.time() - stats.oldest < 30
        chunks = await queue.client.llen(queue.options.body_key(ids[1]))
        assert chunks == 6  # 20,482 bytes in 4 KiB chunks, never one value
        got: dict[str, tuple[QueuedMessage, bytes]] = {}

        async def deliver(message: QueuedMessage) -> Delivered:
            got[message.id] = (message, b"".join([c async for c in message.iter_body(1000)]))
            return Delivered("ok")

        worker = DeliveryWorker(queue, deliver)
        await worker.start()
        await until(lambda: len(got) == 2)
        await worker.stop()
        assert [got[i][1] for i in ids] == bodies
        message = got[ids[0]][0]
        assert message.info == dataclasses.replace(INFO, received=message.info.received)
        assert message.pending == ("b@y.test", "c@y.test") and message.size == len(bodies[0])
        stats = await queue.stats()
        assert (stats.queued, stats.size) == (0, 0)
        assert await queue.client.xlen("t1") == 0  # done entries are deleted
        assert not await queue.client.exists(queue.options.body_key(ids[1]))
        await queue.close()

    asyncio.run(main())


def test_retry_per_recipient_dead_letter_and_requeue(redis_server: RedisProcess) -> None:
    async def main() -> None:
        queue = RedisStreamQueue(redis_server.url + "?stream=t2&max-attempts=3")
        await queue.start()
        first = await store(queue, b"one\r\n")
        second = await store(queue, b"two\r\n")
        attempts: dict[str, list[tuple[str, ...]]] = {first: [], second: []}

        async def deliver(message: QueuedMessage) -> Any:
            attempts[message.id].append(message.pending)
            if message.id == first:  # b@ delivered at once, c@ on the second attempt
                if len(attempts[first]) == 1:
                    return {"b@y.test": Delivered(), "c@y.test": Retry("busy", delay=0.2)}
                return Delivered()
            return Retry("always busy", delay=0.1)

        worker = DeliveryWorker(queue, deliver, retry_min=0.1)
        await worker.start()
        await until(lambda: len(attempts[first]) == 2 and len(attempts[second]) == 3)
        await asyncio.sleep(0.3)
        await worker.stop()
        assert attempts[first] == [("b@y.test", "c@y.test"), ("c@y.test",)]
        dead = await queue.messages(dead=True)
        assert [m.id for m in dead] == [second] and "gave up after 3 attempts" in dead[0].dead_reason
        assert dead[0].attempts == 3 and (await queue.stats()).queued == 0
        assert await queue.requeue(second) == 1
        requeued = await queue.messages()
        assert [(m.id, m.attempts, m.dead) for m in requeued] == [(second, 0, False)]
        assert await queue.delete(second) == 1 and (await queue.stats()).queued == 0

        # A permanent failure goes to the dead-letter stream at once.
        third = await store(queue, b"three\r\n")
        worker = DeliveryWorker(queue, lambda m: _failed(), retry_min=0.1)
        await worker.start()
        deadline = time.monotonic() + 10
        while not [m for m in await queue.messages(dead=True) if m.id == third]:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await worker.stop()
        await queue.close()

    asyncio.run(main())


async def _failed() -> Failed:
    return Failed("550 no such user")


def test_a_silent_worker_messages_are_taken_over_with_the_same_id(redis_server: RedisProcess) -> None:
    async def main() -> None:
        url = redis_server.url + "?stream=t3&claim-timeout=0.6"
        receiver, dying, survivor = (RedisStreamQueue(url) for _ in range(3))
        for queue in (receiver, dying, survivor):
            await queue.start()
        message_id = await store(receiver, b"body\r\n")
        taken = await dying.claim(10)
        assert [m.id for m in taken] == [message_id]
        await dying.close()  # gone without an outcome (its heartbeat stops)
        assert await survivor.claim(10) == []  # still held: not taken over at once
        await asyncio.sleep(0.8)
        again = await survivor.claim(10)
        assert [m.id for m in again] == [message_id] and await again[0].read_body() == b"body\r\n"
        await survivor.remove(message_id)
        assert (await survivor.stats()).queued == 0
        for queue in (receiver, survivor):
            await queue.close()

    asyncio.run(main())


def test_an_entry_that_is_no_message_is_moved_aside(redis_server: RedisProcess) -> None:
    async def main() -> None:
        queue = RedisStreamQueue(redis_server.url + "?stream=t8")
        await queue.start()
        await queue.client.xadd("t8", {"hello": "world"})
        message_id = await store(queue, b"real\r\n")
        assert [m.id for m in await queue.claim(10)] == [message_id]
        await queue.claim(10)
        assert await queue.client.xlen("t8:unreadable") == 1
        await queue.remove(message_id)
        assert await queue.client.xlen("t8") == 0
        await queue.close()

    asyncio.run(main())


def test_a_stopping_worker_puts_back_what_it_let_settle(redis_server: RedisProcess) -> None:
    async def main() -> None:
        patient = RedisStreamQueue(redis_server.url + "?stream=t9&settle=30")
        other = RedisStreamQueue(redis_server.url + "?stream=t9")
        await patient.start()
        await other.start()
        message_id = await store(patient, b"x\r\n")
        assert await patient.claim(10) == []  # read, settling
        assert await other.claim(10) == []  # pending with the patient worker
        await patient.close()
        assert [m.id for m in await other.claim(10)] == [message_id]
        await other.remove(message_id)
        await other.close()

    asyncio.run(main())


def test_a_message_whose_workers_keep_dying_is_dead_lettered(redis_server: RedisProcess) -> None:
    async def main() -> None:
        url = redis_server.url + "?stream=t10&claim-timeout=0.2&max-attempts=2"
        receiver = RedisStreamQueue(url)
        await receiver.start()
        message_id = await store(receiver, b"poison\r\n")
        for _ in range(2):  # handed out, then its worker "dies"
            worker = RedisStreamQueue(url)
            await worker.start()
            await asyncio.sleep(0.3)
            assert [m.id for m in await worker.claim(5)] == [message_id]
            await worker.close()
        await asyncio.sleep(0.3)
        last = RedisStreamQueue(url)
        await last.start()
        assert await last.claim(5) == []  # the third hand-out is refused
        dead = await last.messages(dead=True)
        assert [m.id for m in dead] == [message_id] and "handed out 3 times" in dead[0].dead_reason
        for queue in (receiver, last):
            await queue.close()

    asyncio.run(main())


def test_heartbeat_keeps_a_slow_delivery(redis_server: RedisProcess) -> None:
    async def main() -> None:
        url = redis_server.url + "?stream=t4&claim-timeout=0.6"
        slow, other = RedisStreamQueue(url), RedisStreamQueue(url)
        await slow.start()
        await other.start()
        await store(slow, b"x\r\n")
        held = await slow.claim(1)
        await asyncio.sleep(1.5)  # longer than the claim timeout, with heartbeats
        assert await other.claim(10) == []
        await slow.remove(held[0].id)
        await slow.close()
        await other.close()

    asyncio.run(main())


def test_wait_for_replicas(redis_factory: Callable[..., RedisProcess]) -> None:
    primary = redis_factory("primary")
    replica = redis_factory("replica", replica_of=primary.port)
    replica.wait_replica_synced()

    async def main() -> None:
        one = RedisStreamQueue(primary.url + "?stream=t5&replicas=1")
        two = RedisStreamQueue(primary.url + "?stream=t5&replicas=2&wait-timeout=0.5")
        await one.start()
        await two.start()
        assert await one.check() is None
        assert "fewer than 2 replicas" in str(await two.check())
        await store(one, b"replicated\r\n")
        with pytest.raises(RuntimeError, match="only 1 of 2 replicas"):
            await store(two, b"not enough replicas\r\n")
        messages = await one.messages()
        assert [await m.read_body() for m in messages] == [b"replicated\r\n"]  # the refused one was taken back
        on_replica = RedisStreamQueue(replica.url + "?stream=t5")
        assert "read-only replica" in str(await on_replica.check())
        with pytest.raises(Exception, match="(?i)read.only"):
            await store(on_replica, b"to a replica\r\n")
        assert [m.info.sender for m in await on_replica.messages()] == ["a@x.test"]
        for queue in (one, two, on_replica):
            await queue.close()

    asyncio.run(main())


def test_workers_wait_until_a_message_is_settled(redis_factory: Callable[..., RedisProcess]) -> None:
    """A worker that reads an entry while its receiver still waits for the replicas does
    not deliver it before ``settle``; by then a refused one was taken back."""
    primary = redis_factory("primary")
    replica = redis_factory("replica", replica_of=primary.port)
    replica.wait_replica_synced()

    async def main() -> None:
        good = RedisStreamQueue(primary.url + "?stream=t7&replicas=1")
        refused = RedisStreamQueue(primary.url + "?stream=t7&replicas=2&wait-timeout=0.8")
        worker_queue = RedisStreamQueue(primary.url + "?stream=t7&settle=1.2")
        for queue in (good, refused, worker_queue):
            await queue.start()
        delivered: list[tuple[bytes, float]] = []

        async def deliver(message: QueuedMessage) -> Delivered:
            delivered.append((await message.read_body(), time.monotonic()))
            return Delivered()

        worker = DeliveryWorker(worker_queue, deliver)
        await worker.start()
        with pytest.raises(RuntimeError, match="replicas confirmed"):
            await store(refused, b"refused\r\n")
        stored = time.monotonic()
        await store(good, b"confirmed\r\n")
        await until(lambda: len(delivered) == 1)
        await asyncio.sleep(1.5)
        await worker.stop()
        assert [body for body, _ in delivered] == [b"confirmed\r\n"]
        assert delivered[0][1] - stored >= 1.0
        assert await worker_queue.client.xpending("t7", "smtpgate") == {
            "pending": 0,
            "min": None,
            "max": None,
            "consumers": [],
        }
        for queue in (good, refused, worker_queue):
            await queue.close()

    asyncio.run(main())


def test_redis_down_and_back_without_a_restart(redis_server: RedisProcess) -> None:
    async def main() -> None:
        queue = RedisStreamQueue(redis_server.url + "?stream=t6&timeout=1")
        await queue.start()
        await store(queue, b"before\r\n")
        redis_server.stop()
        with pytest.raises(Exception):  # noqa: B017 - redis-py's ConnectionError
            await store(queue, b"while down\r\n")
        redis_server.start()
        await store(queue, b"after\r\n")
        redis_server.pause()  # hung: every command times out
        started = time.monotonic()
        with pytest.raises(Exception):  # noqa: B017 - redis-py's TimeoutError
            await store(queue, b"while hung\r\n")
        assert time.monotonic() - started < 5
        await asyncio.sleep(1.0)  # past the deadline of the stalled commit
        redis_server.resume()
        await store(queue, b"after the hang\r\n")
        bodies = [await m.read_body() for m in await queue.messages()]
        assert b"before\r\n" in bodies and b"after\r\n" in bodies and b"after the hang\r\n" in bodies
        assert b"while down\r\n" not in bodies
        assert b"while hung\r\n" not in bodies  # reached Redis after the deadline: not added
        await queue.close()

    asyncio.run(main())


def test_tls_and_a_password_file(tmp_path: Path) -> None:
    """rediss:// with the server's CA, and the password read from a file."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    (tmp_path / "password").write_text("s3cret\n")
    tls_port = free_port()
    extra = (
        "--tls-port", str(tls_port),
        "--tls-cert-file", str(tmp_path / "cert.pem"),
        "--tls-key-file", str(tmp_path / "key.pem"),
        "--tls-ca-cert-file", str(tmp_path / "ca.pem"),
        "--tls-auth-clients", "no",
        "--requirepass", "s3cret",
    )  # fmt: skip
    server = RedisProcess(tmp_path / "redis", extra=extra).start()
    try:
        url = f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={tmp_path / 'ca.pem'}&stream=tls"

        async def main() -> None:
            queue = RedisStreamQueue(url + f"&password-file={tmp_path / 'password'}")
            await queue.start()
            assert await queue.check() is None
            message_id = await store(queue, b"over TLS\r\n")
            assert [m.id for m in await queue.claim(1)] == [message_id]
            without = RedisStreamQueue(url + "&timeout=1")
            assert "auth" in str(await without.check()).lower()
            wrong_ca = RedisStreamQueue(f"rediss://127.0.0.1:{tls_port}/0?stream=tls&timeout=1")
            assert await wrong_ca.check() is not None  # the system's CAs do not know this one
            for each in (queue, without, wrong_ca):
                await each.close()

        asyncio.run(main())
    finally:
        server.stop()

"""The local directory queue and the delivery worker, on real files in tmp_path."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpgate.deliver.function import FunctionDeliverer, PermanentFailure
from smtpgate.deliver.sink import SinkDeliverer
from smtpgate.queue import Delivered, Failed, QueuedMessage, Retry
from smtpgate.queue.local import LocalQueue
from smtpgate.queue.worker import DeliveryWorker, backoff_delay
from smtpgate.sinks import MaildirSink, MessageInfo, SinkError, SinkFull

BODY = b"Subject: queued\r\n\r\nline one\r\n.line two\r\n"


def run(coroutine: Awaitable[Any]) -> Any:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


async def started(path: Path, **options: Any) -> LocalQueue:
    queue = LocalQueue(str(path), **options)
    await queue.start()
    return queue


async def enqueue(queue: LocalQueue, body: bytes = BODY, recipients: tuple[str, ...] = ("a@example.test",)) -> str:
    delivery = queue.open(MessageInfo(sender="s@example.org", recipients=recipients, client_address="192.0.2.1"))
    await delivery.write(body[:10])
    await delivery.write(body[10:])
    return await delivery.commit()


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.02)


def test_a_committed_message_survives_a_new_queue_object(tmp_path: Path) -> None:
    async def main() -> None:
        first = await started(tmp_path)
        message_id = await enqueue(first, recipients=("a@example.test", "b@example.test"))
        second = await started(tmp_path)  # a restart
        [message] = await second.messages()
        assert message.id == message_id
        assert message.info.sender == "s@example.org"
        assert message.info.recipients == ("a@example.test", "b@example.test")
        assert message.info.client_address == "192.0.2.1"
        assert message.pending == ("a@example.test", "b@example.test")
        assert await message.read_body() == BODY
        assert b"".join([chunk async for chunk in message.iter_body(7)]) == BODY
        assert message.size == len(BODY)
        [claimed] = await second.claim(10)
        assert claimed.id == message_id

    run(main())


def test_an_aborted_message_leaves_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        queue = await started(tmp_path)
        delivery = queue.open(MessageInfo(sender="", recipients=("a@example.test",)))
        await delivery.write(BODY)
        delivery.abort()
        assert await queue.messages() == []
        assert os.listdir(tmp_path / "tmp") == []

    run(main())


def test_a_held_message_is_not_claimed_twice(tmp_path: Path) -> None:
    async def main() -> None:
        one = await started(tmp_path)
        other = await started(tmp_path)  # another process on the same directory
        await enqueue(one)
        [held] = await one.claim(5)
        assert await other.claim(5) == []
        await one.release(held.id)
        other.rescan_interval = 0.0
        assert [m.id for m in await other.claim(5)] == [held.id]

    run(main())


def test_state_dead_letter_requeue_retry_delete(tmp_path: Path) -> None:
    async def main() -> None:
        queue = await started(tmp_path)
        message_id = await enqueue(queue, recipients=("a@example.test", "b@example.test"))
        [message] = await queue.claim(1)
        later = time.time() + 3600
        first, second = message.recipients
        updated = dataclasses.replace(
            message,
            attempts=1,
            next_attempt=later,
            last_error="b: 451 busy",
            recipients=(dataclasses.replace(first, status="delivered"), dataclasses.replace(second, detail="451")),
        )
        await queue.save(updated)
        assert await queue.claim(1) == []  # not due
        reloaded = await (await started(tmp_path)).get(message_id)
        assert reloaded is not None
        assert (reloaded.attempts, reloaded.next_attempt, reloaded.pending) == (1, later, ("b@example.test",))
        assert await queue.retry_now(message_id) == 1
        [again] = await queue.claim(1)
        failed = dataclasses.replace(again.recipients[1], status="failed", detail="550 no such user")
        await queue.bury(dataclasses.replace(again, recipients=(again.recipients[0], failed)), "b: 550 no such user")
        assert (await queue.stats()).queued == 0
        [dead] = await queue.messages(dead=True)
        assert dead.dead_reason == "b: 550 no such user"
        assert await dead.read_body() == BODY
        assert await queue.requeue("all") == 0  # "all" is the command's word; the API says None
        assert await queue.requeue(None) == 1
        [back] = await queue.claim(1)
        assert back.pending == ("b@example.test",) and back.attempts == 0 and not back.dead
        await queue.release(back.id)
        assert await queue.delete(message_id) == 1
        stats = await queue.stats()
        assert (stats.queued, stats.dead, stats.oldest) == (0, 0, None)

    run(main())


def test_full_queue_refuses_and_loses_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        queue = await started(tmp_path / "count", max_messages=2)
        kept = [await enqueue(queue), await enqueue(queue)]
        with pytest.raises(SinkFull):
            await enqueue(queue)
        assert sorted(m.id for m in await queue.messages()) == sorted(kept)
        assert os.listdir(tmp_path / "count" / "tmp") == []
        small = await started(tmp_path / "size", max_size=2000)
        await enqueue(small)
        with pytest.raises(SinkFull):
            await enqueue(small, body=BODY * 50)
        [only] = await small.messages()
        assert await only.read_body() == BODY

    run(main())


def test_unwritable_queue(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SinkError):
        LocalQueue(str(blocker / "queue"))

    async def main() -> None:
        queue = await started(tmp_path / "q")
        (tmp_path / "q" / "active").rename(tmp_path / "q" / "moved")
        (tmp_path / "q" / "active").write_text("in the way")
        with pytest.raises(OSError):
            await enqueue(queue)
        assert os.listdir(tmp_path / "q" / "tmp") == []

    run(main())


def test_start_cleans_what_a_crash_left(tmp_path: Path) -> None:
    async def main() -> None:
        queue = await started(tmp_path)
        message_id = await enqueue(queue)
        old = time.time() - 7200
        stray = tmp_path / "tmp" / "half-written.msg"
        stray.write_bytes(b"{}\n partial")
        lone_state = tmp_path / "dead" / f"{message_id}.json"  # a bury cut short before the rename
        lone_state.write_text('{"dead_reason": "x"}')
        for path in (stray, lone_state):
            os.utime(path, (old, old))
        restarted = await started(tmp_path)
        assert not stray.exists() and not lone_state.exists()
        [message] = await restarted.messages()
        assert message.id == message_id and not message.dead

    run(main())


def test_an_unreadable_message_is_moved_aside(tmp_path: Path) -> None:
    async def main() -> None:
        queue = await started(tmp_path)
        good = await enqueue(queue)
        (tmp_path / "active" / "0000000000000000bad.msg").write_bytes(b"not json\nbody")
        restarted = await started(tmp_path)
        assert [m.id for m in await restarted.claim(10)] == [good]
        assert os.listdir(tmp_path / "corrupt") == ["0000000000000000bad.msg"]

    run(main())


def worker_for(queue: LocalQueue, deliverer: Any, **options: Any) -> DeliveryWorker:
    options.setdefault("retry_min", 0.02)
    options.setdefault("jitter", 0.0)
    return DeliveryWorker(queue, deliverer, **options)


async def drain(queue: LocalQueue, worker: DeliveryWorker, timeout: float = 20.0) -> None:
    await worker.start()
    try:
        await until(lambda: _empty(queue), timeout)
    finally:
        await worker.stop()


async def _empty(queue: LocalQueue) -> bool:
    return (await queue.stats()).queued == 0


def test_worker_retries_only_the_recipients_still_pending(tmp_path: Path) -> None:
    calls: list[tuple[str, ...]] = []

    async def deliver(message: QueuedMessage) -> Any:
        calls.append(message.pending)
        if len(calls) == 1:
            return {"a@example.test": Delivered("250"), "b@example.test": Retry("451 later")}
        return Delivered("250")

    async def main() -> None:
        queue = await started(tmp_path)
        await enqueue(queue, recipients=("a@example.test", "b@example.test"))
        await drain(queue, worker_for(queue, deliver))
        assert (await queue.stats()).dead == 0

    run(main())
    assert calls == [("a@example.test", "b@example.test"), ("b@example.test",)]


def test_worker_dead_letters_failed_and_expired(tmp_path: Path) -> None:
    async def mixed(message: QueuedMessage) -> Any:
        return {"a@example.test": Delivered(), "b@example.test": Failed("550 5.1.1 unknown")}

    async def always_later(message: QueuedMessage) -> Any:
        return Retry("421 busy")

    async def main() -> None:
        queue = await started(tmp_path / "mixed")
        await enqueue(queue, recipients=("a@example.test", "b@example.test"))
        await drain(queue, worker_for(queue, mixed))
        [dead] = await queue.messages(dead=True)
        assert dead.dead_reason == "b@example.test: 550 5.1.1 unknown"
        assert [r.status for r in dead.recipients] == ["delivered", "failed"]
        old = await started(tmp_path / "old")
        await enqueue(old)
        await drain(old, worker_for(old, always_later, max_age=0.3))
        [expired] = await old.messages(dead=True)
        assert expired.dead_reason.startswith("expired after") and "421 busy" in expired.dead_reason
        assert expired.attempts >= 2

    run(main())


def test_worker_bounds_attempts_in_flight(tmp_path: Path) -> None:
    running = 0
    peak = 0

    async def slow(message: QueuedMessage) -> Any:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1
        return Delivered()

    async def main() -> None:
        queue = await started(tmp_path)
        for _ in range(20):
            await enqueue(queue)
        await drain(queue, worker_for(queue, slow, concurrency=3))

    run(main())
    assert peak == 3


def test_exceptions_and_timeouts_are_retried(tmp_path: Path) -> None:
    calls = 0

    async def flaky(message: QueuedMessage) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("went away")
        if calls == 2:
            await asyncio.sleep(10)
        return Delivered()

    async def main() -> None:
        queue = await started(tmp_path)
        await enqueue(queue)
        await drain(queue, worker_for(queue, flaky, attempt_timeout=0.2))

    run(main())
    assert calls == 3


def test_stop_in_flight_keeps_the_message(tmp_path: Path) -> None:
    async def main() -> None:
        entered = asyncio.Event()

        async def hang(message: QueuedMessage) -> Any:
            entered.set()
            await asyncio.sleep(60)

        queue = await started(tmp_path)
        message_id = await enqueue(queue)
        worker = worker_for(queue, hang)
        await worker.start()
        await asyncio.wait_for(entered.wait(), 10)
        await worker.stop(grace=0.1)
        assert [m.id for m in await queue.messages()] == [message_id]
        delivered: list[str] = []

        async def record(message: QueuedMessage) -> Any:
            delivered.append(message.id)
            return Delivered()

        await drain(queue, worker_for(queue, record))
        assert delivered == [message_id]

    run(main())


def test_function_and_sink_deliverers(tmp_path: Path) -> None:
    seen: list[bytes] = []

    def plain(message: QueuedMessage) -> None:
        with message.open_body() as handle:
            seen.append(handle.read())

    def refuse(message: QueuedMessage) -> None:
        raise PermanentFailure("not for us")

    async def main() -> None:
        queue = await started(tmp_path / "q")
        await enqueue(queue)
        await drain(queue, worker_for(queue, FunctionDeliverer(plain)))
        await enqueue(queue)
        await drain(queue, worker_for(queue, FunctionDeliverer(refuse)))
        [dead] = await queue.messages(dead=True)
        assert "not for us" in dead.dead_reason
        sink = SinkDeliverer(MaildirSink(str(tmp_path / "maildir")))
        await sink.start()
        await enqueue(queue)
        await drain(queue, worker_for(queue, sink))
        await sink.close()

    run(main())
    assert seen == [BODY]
    [stored] = os.listdir(tmp_path / "maildir" / "new")
    assert (tmp_path / "maildir" / "new" / stored).read_bytes() == BODY.replace(b"\r\n", b"\n")


@given(
    attempts=st.integers(min_value=1, max_value=200),
    retry_min=st.floats(min_value=0.01, max_value=3600),
    retry_max=st.floats(min_value=0.01, max_value=86400),
    rand=st.floats(min_value=0, max_value=1),
)
def test_backoff_grows_and_stays_within_bounds(attempts: int, retry_min: float, retry_max: float, rand: float) -> None:
    base = min(retry_max, retry_min * 2.0 ** min(attempts - 1, 60))
    delay = backoff_delay(attempts, retry_min, retry_max, jitter=0.25, rand=lambda: rand)
    assert base * 0.75 - 1e-9 <= delay <= base * 1.25 + 1e-9
    assert backoff_delay(attempts + 1, retry_min, retry_max, jitter=0) >= backoff_delay(
        attempts, retry_min, retry_max, jitter=0
    )


def test_an_outcome_that_cannot_be_stored_holds_the_message_a_while(tmp_path: Path) -> None:
    calls: list[float] = []

    async def deliver(message: QueuedMessage) -> Any:
        calls.append(time.monotonic())
        return Retry("451 later")

    async def main() -> None:
        queue = await started(tmp_path)
        await enqueue(queue)
        (tmp_path / "tmp").rename(tmp_path / "tmp-away")  # state files cannot be written now
        (tmp_path / "tmp").write_text("in the way")
        worker = worker_for(queue, deliver, retry_min=0.5)
        await worker.start()
        await asyncio.sleep(1.2)
        await worker.stop()
        [message] = await queue.messages()
        assert message.attempts == 0  # nothing recorded, the message is still there

    run(main())
    assert 2 <= len(calls) <= 3  # not a tight loop: one attempt per half second

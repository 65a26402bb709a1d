"""The delivery worker: takes due messages from a queue and hands them to a deliverer.

At least once: a message leaves the queue only when every recipient has a final outcome
(delivered: removed; any failed: moved to the dead-letter area with the reasons). A
temporary failure schedules the next attempt with exponential backoff and jitter, starting
at ``retry_min`` and growing to at most ``retry_max``; a message older than ``max_age``
that fails again goes to the dead-letter area. Each attempt logs one line with its outcome.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import sys
import time
from collections.abc import Awaitable, Callable

from .base import (
    Delivered,
    Deliverer,
    DeliveryResult,
    Failed,
    MessageQueue,
    Outcome,
    QueuedMessage,
    RecipientState,
    Retry,
    per_recipient,
)

__all__ = ["DeliveryWorker", "backoff_delay", "DEFAULT_RETRY_MIN", "DEFAULT_RETRY_MAX", "DEFAULT_MAX_AGE"]

logger = logging.getLogger("smtpgate.delivery")

DEFAULT_RETRY_MIN = 60.0
"""Seconds before the first retry."""
DEFAULT_RETRY_MAX = 4 * 3600.0
"""The longest wait between two attempts."""
DEFAULT_MAX_AGE = 5 * 86400.0
"""Seconds a message may stay queued (Postfix's ``maximal_queue_lifetime``)."""
DEFAULT_CONCURRENCY = 10
DEFAULT_ATTEMPT_TIMEOUT = 300.0
_IDLE = 5.0  # longest sleep while nothing is due
_CLAIM_PAUSE = 1.0  # after the queue failed to hand out messages
_RECORD_PAUSE = 60.0  # longest hold of a message whose outcome could not be stored


def backoff_delay(
    attempts: int,
    retry_min: float,
    retry_max: float,
    *,
    jitter: float = 0.25,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: ``retry_min`` doubled
    per attempt, at most ``retry_max``, then spread by ``±jitter`` (a fraction)."""
    exponent = min(max(attempts - 1, 0), 60)
    base = min(retry_max, retry_min * 2.0**exponent)
    return max(0.0, base * (1.0 + jitter * (2.0 * rand() - 1.0)))


def _describe(deliverer: Deliverer) -> str:
    describe = getattr(deliverer, "describe", None)
    if callable(describe):
        return str(describe())
    return getattr(deliverer, "__qualname__", type(deliverer).__name__)


def _one_line(text: str, limit: int = 500) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class DeliveryWorker:
    """Delivers a queue's messages with at most ``concurrency`` attempts in flight.

    ``await worker.start()`` runs it in a task; ``await worker.stop()`` stops taking
    messages, waits up to ``grace`` seconds for attempts in flight and cancels the rest
    (their messages stay queued and are delivered again later). ``on_dead(message,
    reason)`` is called after a message moved to the dead-letter area (a `Bouncer`)."""

    def __init__(
        self,
        queue: MessageQueue,
        deliverer: Deliverer,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        retry_min: float = DEFAULT_RETRY_MIN,
        retry_max: float = DEFAULT_RETRY_MAX,
        max_age: float = DEFAULT_MAX_AGE,
        attempt_timeout: float = DEFAULT_ATTEMPT_TIMEOUT,
        jitter: float = 0.25,
        on_dead: Callable[[QueuedMessage, str], Awaitable[object]] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if retry_min <= 0 or max_age <= 0 or attempt_timeout <= 0:
            raise ValueError("retry_min, max_age and attempt_timeout must be greater than 0")
        self.queue = queue
        self.deliverer = deliverer
        self.concurrency = concurrency
        self.retry_min = retry_min
        self.retry_max = max(retry_max, retry_min)
        self.max_age = max_age
        self.attempt_timeout = attempt_timeout
        self.jitter = jitter
        self.on_dead = on_dead
        self.target = _describe(deliverer)
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()  # a slot freed, the queue has news, or stop
        self._stopping = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._queue_waiter: asyncio.Task[None] | None = None

    @property
    def in_flight(self) -> int:
        """Attempts running now."""
        return len(self._tasks)

    async def start(self) -> None:
        """Run the worker in a background task."""
        if self._runner is None:
            self._runner = asyncio.create_task(self.run(), name="smtpgate-delivery")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; let attempts in flight finish for ``grace`` seconds, then
        cancel them (their messages are released, still queued)."""
        self._stopping.set()
        self._wake.set()
        if self._runner is not None:
            try:
                await self._runner
            except asyncio.CancelledError:
                pass
            self._runner = None
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def run(self) -> None:
        """Claim and deliver until `stop`."""
        try:
            while not self._stopping.is_set():
                if self.concurrency > len(self._tasks):
                    try:
                        batch = await self.queue.claim(self.concurrency - len(self._tasks))
                    except Exception:
                        logger.exception("queue %s: cannot claim messages", self.queue.describe())
                        await asyncio.sleep(_CLAIM_PAUSE)  # not a tight loop of the same error
                        continue
                    for message in batch:
                        task = asyncio.create_task(self._attempt(message), name=f"smtpgate-deliver-{message.id}")
                        self._tasks.add(task)
                        task.add_done_callback(self._done)
                    if batch:
                        continue
                    self._watch_queue()
                # Until a slot frees, the queue has news or `stop`; a wake-up that came
                # while claiming is kept, so none is lost.
                await self._wake.wait()
                self._wake.clear()
        finally:
            waiter, self._queue_waiter = self._queue_waiter, None
            if waiter is not None:
                waiter.cancel()
                await asyncio.gather(waiter, return_exceptions=True)

    def _watch_queue(self) -> None:
        """Wait for the queue's news in one task that lives until it has some (not one
        task per turn of the loop)."""
        if self._queue_waiter is None or self._queue_waiter.done():
            self._queue_waiter = asyncio.create_task(self.queue.wait(_IDLE), name="smtpgate-queue-wait")
            self._queue_waiter.add_done_callback(self._queue_news)

    def _queue_news(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("queue %s: cannot wait for news", self.queue.describe(), exc_info=task.exception())
        self._wake.set()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()

    async def _deliver(self, message: QueuedMessage) -> DeliveryResult:
        """The deliverer's result within ``attempt_timeout`` (raises ``TimeoutError``)."""
        if sys.version_info >= (3, 11):
            async with asyncio.timeout(self.attempt_timeout):  # no extra task, unlike wait_for
                return await self.deliverer(message)
        return await asyncio.wait_for(self.deliverer(message), self.attempt_timeout)

    async def _attempt(self, message: QueuedMessage) -> None:
        """One delivery attempt and its bookkeeping; the message's hold always ends."""
        started = time.time()
        number = message.attempts + 1
        try:
            try:
                if message.pending:
                    result = await self._deliver(message)
                    outcomes = per_recipient(message, result)
                else:  # every outcome was in, the crash came before the removal
                    outcomes = {}
            except asyncio.TimeoutError:
                outcomes = dict.fromkeys(message.pending, Retry(f"no outcome within {self.attempt_timeout:g} seconds"))
            except asyncio.CancelledError:
                raise
            except Exception as error:
                logger.debug("delivery of %s raised", message.id, exc_info=True)
                reason = _one_line(f"{type(error).__name__}: {error}")
                outcomes = dict.fromkeys(message.pending, Retry(reason))
            await self._record(message, outcomes, started, number)
        except asyncio.CancelledError:
            await asyncio.shield(self._release(message))
            raise
        except Exception:
            logger.exception("queue %s: cannot record the outcome of %s", self.queue.describe(), message.id)
            # The queue cannot write (a full disk?): hold the message a while, so that it
            # is not delivered again and again at once, then give it back.
            try:
                await asyncio.sleep(min(self.retry_min, _RECORD_PAUSE))
            finally:
                await asyncio.shield(self._release(message))

    async def _dead(self, message: QueuedMessage, reason: str) -> None:
        """Tell ``on_dead`` (a bouncer); its failure is logged, the message stays dead."""
        if self.on_dead is None:
            return
        try:
            await self.on_dead(message, reason)
        except Exception:
            logger.exception("%s: the dead-letter hook failed", message.id)

    async def _release(self, message: QueuedMessage) -> None:
        try:
            await self.queue.release(message.id)
        except Exception:
            logger.exception("queue %s: cannot release %s", self.queue.describe(), message.id)

    async def _record(self, message: QueuedMessage, outcomes: dict[str, Outcome], started: float, number: int) -> None:
        now = time.time()
        recipients: list[RecipientState] = []
        delays: list[float] = []
        errors: list[str] = []
        for state in message.recipients:
            outcome = outcomes.get(state.address)
            if state.status != "pending" or outcome is None:
                recipients.append(state)
            elif isinstance(outcome, Delivered):
                recipients.append(RecipientState(state.address, "delivered", _one_line(outcome.detail), now))
            elif isinstance(outcome, Failed):
                reason = _one_line(outcome.reason) or "failed"
                recipients.append(RecipientState(state.address, "failed", reason, now))
                errors.append(f"{state.address}: {reason}")
            else:
                reason = _one_line(outcome.reason) or "temporary failure"
                recipients.append(RecipientState(state.address, "pending", reason, now))
                errors.append(f"{state.address}: {reason}")
                if outcome.delay is not None:
                    delays.append(max(0.0, outcome.delay))
        updated = dataclasses.replace(
            message,
            recipients=tuple(recipients),
            attempts=number,
            first_attempt=message.first_attempt if message.first_attempt is not None else started,
            last_attempt=started,
            last_error="; ".join(errors) if errors else message.last_error,
        )
        summary = _summary(outcomes)
        elapsed = now - started
        pending = updated.pending
        if not pending:
            failed = [r for r in updated.recipients if r.status == "failed"]
            if failed:
                reason = "; ".join(f"{r.address}: {r.detail}" for r in failed)
                await self.queue.bury(updated, reason)
                logger.warning(
                    "%s attempt %d to %s: %s; dead-lettered (%.2fs)", message.id, number, self.target, summary, elapsed
                )
                await self._dead(updated, reason)
            else:
                await self.queue.remove(message.id)
                logger.info("%s attempt %d to %s: %s (%.2fs)", message.id, number, self.target, summary, elapsed)
            return
        expires = message.queued + self.max_age
        if now >= expires:
            reason = f"expired after {number} attempts: {updated.last_error}"
            await self.queue.bury(updated, reason)
            logger.warning("%s attempt %d to %s: %s; expired, dead-lettered", message.id, number, self.target, summary)
            await self._dead(updated, reason)
            return
        delay = max(delays) if delays else backoff_delay(number, self.retry_min, self.retry_max, jitter=self.jitter)
        delay = min(delay, self.retry_max)
        next_attempt = min(now + delay, expires)
        await self.queue.save(dataclasses.replace(updated, next_attempt=next_attempt))
        logger.info(
            "%s attempt %d to %s: %s; next attempt in %.1fs (%.2fs)",
            message.id,
            number,
            self.target,
            summary,
            next_attempt - now,
            elapsed,
        )


def _text(outcome: Outcome) -> str:
    if isinstance(outcome, Delivered):
        return f"delivered ({_one_line(outcome.detail)})" if outcome.detail else "delivered"
    if isinstance(outcome, Failed):
        return f"failed ({_one_line(outcome.reason)})"
    return f"deferred ({_one_line(outcome.reason)})"


def _summary(outcomes: dict[str, Outcome]) -> str:
    """The attempt's outcomes in a few words: one per recipient when they differ."""
    texts = {_text(o) for o in outcomes.values()}
    if not texts:
        return "no recipient left"
    if len(texts) == 1:
        return f"{len(outcomes)} recipient(s) {texts.pop()}"
    return ", ".join(f"{address} {_text(outcome)}" for address, outcome in outcomes.items())

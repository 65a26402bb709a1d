"""The Redis Streams queue: every receiver adds to one stream, delivery workers on any host
read it in a consumer group (``smtpgate deliver --from redis://...``).

Keys, all starting with the stream's name ``S``:

* ``S``: the stream; one entry per message waiting for an attempt (fields ``id``,
  ``meta``: the envelope and delivery state as JSON, and ``body`` or ``chunks``).
* ``S:body:ID``: the body of a large message, a list of chunks (written while the
  message arrives, with an expiry that ``commit`` removes).
* ``S:delayed`` and ``S:delayed:ID``: messages waiting for a retry time (a sorted set by
  due time, and the entry's fields); moved back into the stream when due.
* ``S:dead``: the dead-letter stream. ``S:bytes``: bytes of queued bodies.

A receiver answers ``250`` after ``MULTI``/``EXEC`` of ``XADD`` (and, with ``replicas``,
after ``WAIT`` confirmed them). A worker holds an entry while it is in its pending list;
a heartbeat (``XCLAIM ... JUSTID``) keeps it fresh, and ``XAUTOCLAIM`` hands the entries
of a worker silent for ``claim_timeout`` to another: at least once, same message ID.
Every step that ends a hold (retry, done, dead, release) acknowledges and deletes the
entry in the same transaction as its next place, so done entries do not pile up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib
import logging
import os
import socket
import time
from typing import Any

from ..redisconn import open_redis, redact_url
from ..sinks import Delivery, MessageInfo, SinkError
from .base import MessageQueue, QueuedMessage, QueueStats
from .redis_codec import (
    ChunkBody,
    StreamOptions,
    entry_fields,
    message_from_fields,
    parse_spec,
    requeued,
)
from .redis_sink import StreamDelivery

__all__ = ["RedisStreamQueue", "redis_sink", "rediss_sink"]

logger = logging.getLogger("smtpgate.queue")

_WAIT_POLL = 1.0
_UNDO_FOR = 30.0  # seconds a refused (451) message's entry is tried to be taken back
_UNDOING: set[asyncio.Task[None]] = set()  # longest wait() of an idle worker between looks at the delayed set

_PROMOTE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  local key = ARGV[3] .. id
  local fields = redis.call('HGETALL', key)
  if #fields > 0 then redis.call('XADD', KEYS[2], '*', unpack(fields)) end
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], id)
end
return #ids
"""


class _Held:
    """A claimed entry: its stream ID, fields (to put it back as it was) and size."""

    __slots__ = ("entry", "fields", "size")

    def __init__(self, entry: bytes, fields: dict[bytes, bytes], size: int) -> None:
        self.entry = entry
        self.fields = fields
        self.size = size


class RedisStreamQueue(MessageQueue):
    """A `MessageQueue` in a Redis stream (``redis://HOST:PORT/DB``, ``rediss://`` for TLS).

    ```python
    queue = RedisStreamQueue("redis://127.0.0.1:6379/0", StreamOptions(replicas=1))
    ```
    """

    kind = "redis"

    def __init__(self, url: str, options: StreamOptions | None = None) -> None:
        plain, from_url = parse_spec(url)
        super().__init__(redact_url(plain))
        self.url = plain
        self.kind = plain.split(":", 1)[0]
        self.options = options if options is not None else from_url
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        self._client: Any = None
        self._sync: Any = None
        self._promote: Any = None
        self.clock_offset = 0.0
        """Redis's clock minus ours (seconds), measured at `start`."""
        self._held: dict[str, _Held] = {}
        self._settling: dict[bytes, tuple[dict[bytes, bytes], float]] = {}
        self._unreadable: dict[bytes, dict[bytes, bytes]] = {}
        self._cursor = b"0-0"
        self._heartbeat: asyncio.Task[None] | None = None

    def configure(
        self, *, replicas: int | None = None, stream: str | None = None, password_file: str | None = None
    ) -> None:
        """Command-line flags over the spec's parameters (before `start`)."""
        changes: dict[str, Any] = {}
        if replicas:
            changes["replicas"] = replicas
        if stream:
            changes["stream"] = stream
        if password_file:
            changes["password_file"] = password_file
        self.options = dataclasses.replace(self.options, **changes)

    def describe(self) -> str:
        return f"{redact_url(self.url)} stream {self.options.stream}"

    # ------------------------------------------------------------------ life

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                self._client = open_redis(
                    self.url, password_file=self.options.password_file, timeout=self.options.timeout
                )
            except (ValueError, RuntimeError, OSError) as error:
                raise SinkError(f"sink {self.describe()}: {error}") from None
            self._promote = self._client.register_script(_PROMOTE)
        return self._client

    async def start(self) -> None:
        """Connect and make the consumer group. Redis unreachable is not fatal: mail is
        answered ``451`` until it answers (see ``/readyz``)."""
        try:
            before = time.time()
            seconds, micros = await self.client.time()
            self.clock_offset = seconds + micros / 1e6 - (before + time.time()) / 2
            await self._ensure_group()
        except SinkError:
            raise
        except Exception as error:
            logger.warning("queue %s: Redis not reachable yet (%s); answering 451 until it is", self.describe(), error)

    async def _ensure_group(self) -> None:
        try:
            await self.client.xgroup_create(self.options.stream, self.options.group, id="0", mkstream=True)
        except Exception as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def check(self) -> str | None:
        """Readiness: Redis answers and accepts writes (a primary, not a read-only replica)."""
        try:
            info = await self.client.info("replication")
        except Exception as error:
            return f"{self.describe()}: {error}"
        if info.get("role") != "master":
            return f"{self.describe()}: read-only replica"
        if self.options.replicas and int(info.get("connected_slaves", 0)) < self.options.replicas:
            return f"{self.describe()}: fewer than {self.options.replicas} replicas connected"
        return None

    async def close(self) -> None:
        """Put back the entries still settling (so that no worker waits for them to be
        taken over), stop the heartbeat and disconnect."""
        if self._settling and self._client is not None:
            try:
                await self._put_back_settling()
            except Exception as error:
                logger.info("queue %s: settling entries left to be taken over: %s", self.describe(), error)
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    # ------------------------------------------------------------------ sink side

    def open(self, info: MessageInfo) -> Delivery:
        return StreamDelivery(self, info)

    # ------------------------------------------------------------------ worker side

    def _chunk_body(self, message_id: str, chunks: int) -> ChunkBody:
        if self._sync is None:
            redis: Any = importlib.import_module("redis")
            extra: dict[str, Any] = {}
            if self.options.password_file:
                from ..redisconn import read_password_file

                user, sep, password = read_password_file(self.options.password_file).partition(":")
                extra = {"username": user, "password": password} if sep else {"password": user}
            self._sync = redis.Redis.from_url(
                self.url, socket_timeout=self.options.timeout, socket_connect_timeout=self.options.timeout, **extra
            )
        return ChunkBody(self._sync, self.options.body_key(message_id), chunks)

    def _take(self, entry: bytes, fields: dict[bytes, bytes]) -> QueuedMessage | None:
        try:
            message, _ = message_from_fields(fields, self._chunk_body)
        except (KeyError, ValueError, TypeError) as error:
            logger.error("queue %s: entry %r unreadable, moved aside: %s", self.describe(), entry, error)
            self._unreadable[entry] = fields
            return None
        self._held[message.id] = _Held(entry, fields, message.size)
        return message

    async def _move_unreadable(self) -> None:
        """Entries that are not messages (written by something else) go to
        ``STREAM:unreadable``, out of the workers' way."""
        o = self.options
        while self._unreadable:
            entry, fields = next(iter(self._unreadable.items()))
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xadd(f"{o.stream}:unreadable", fields or {b"entry": entry})
                pipe.xack(o.stream, o.group, entry)
                pipe.xdel(o.stream, entry)
                await pipe.execute()
            del self._unreadable[entry]

    async def claim(self, limit: int) -> list[QueuedMessage]:
        o = self.options
        client = self.client
        if self._heartbeat is None:
            self._heartbeat = asyncio.ensure_future(self._beat())
        try:
            await self._promote(keys=[o.delayed, o.stream], args=[time.time(), max(limit, 100), f"{o.delayed}:"])
            await self._move_unreadable()
            claimed = await self._settled(limit)
            result = await client.xautoclaim(
                o.stream, o.group, self.consumer, int(o.claim_timeout * 1000), start_id=self._cursor, count=limit
            )
            self._cursor = result[0]
            for entry, fields in result[1]:
                if fields:
                    message = self._take(entry, fields)
                    if message is not None and not await self._poisonous(entry, message):
                        logger.info("queue %s: took over %s from a silent worker", self.describe(), message.id)
                        claimed.append(message)
            room = limit - len(claimed) - len(self._settling)
            if room > 0:
                streams = await client.xreadgroup(o.group, self.consumer, {o.stream: ">"}, count=room)
                for _, entries in streams or []:
                    for entry, fields in entries:
                        wait = self._settle_time(entry)
                        if wait > 0:
                            self._settling[entry] = (fields, time.monotonic() + wait)
                            continue
                        message = self._take(entry, fields)
                        if message is not None:
                            claimed.append(message)
        except Exception as error:
            if "NOGROUP" in str(error):
                await self._ensure_group()
                return []
            raise
        return claimed

    async def _poisonous(self, entry: bytes, message: QueuedMessage) -> bool:
        """A message whose workers keep dying (handed out more than ``max_attempts`` times
        without an outcome) goes to the dead-letter stream instead of killing the next."""
        o = self.options
        if not o.max_attempts:
            return False
        pending = await self.client.xpending_range(o.stream, o.group, min=entry, max=entry, count=1)
        handed_out = int(pending[0]["times_delivered"]) if pending else 0
        if handed_out <= o.max_attempts:
            return False
        logger.error("queue %s: %s handed out %d times without an outcome", self.describe(), message.id, handed_out)
        await self.bury(message, f"handed out {handed_out} times without an outcome (its workers stopped)")
        return True

    def _settle_time(self, entry: bytes) -> float:
        """Seconds until an entry is old enough to deliver (``settle``): by then the
        receiver that added it knows whether the replicas confirmed it, and has taken it
        back if not."""
        if not self.options.settle:
            return 0.0
        added = int(entry.split(b"-", 1)[0]) / 1000
        age = time.time() + self.clock_offset - added
        return self.options.settle - age

    async def _settled(self, limit: int) -> list[QueuedMessage]:
        """The settling entries whose time came and that are still in the stream."""
        now = time.monotonic()
        due = [entry for entry, (_, when) in self._settling.items() if when <= now][:limit]
        if not due:
            return []
        o = self.options
        async with self.client.pipeline(transaction=False) as pipe:
            for entry in due:
                pipe.xrange(o.stream, min=entry, max=entry)
            found = await pipe.execute()
        taken: list[QueuedMessage] = []
        for entry, still in zip(due, found, strict=True):
            fields, _ = self._settling.pop(entry)
            if not still:  # taken back by its receiver (the client got 451)
                await self.client.xack(o.stream, o.group, entry)
                continue
            message = self._take(entry, fields)
            if message is not None:
                taken.append(message)
        return taken

    async def wait(self, timeout: float) -> None:
        """Until a new entry arrives (``XREAD BLOCK``), at most ``timeout`` (and 1 s, so
        due retries are promoted in time)."""
        block = max(1, int(min(timeout, _WAIT_POLL, self.options.timeout / 2) * 1000))
        try:
            await self.client.xread({self.options.stream: "$"}, block=block, count=1)
        except Exception:
            await asyncio.sleep(min(timeout, _WAIT_POLL))

    async def _beat(self) -> None:
        """Keep held entries fresh so that no other worker takes them over."""
        o = self.options
        while True:
            await asyncio.sleep(o.claim_timeout / 3)
            entries = [held.entry for held in self._held.values()] + list(self._settling)
            if not entries:
                continue
            try:
                await self.client.xclaim(o.stream, o.group, self.consumer, 0, entries, justid=True)
            except Exception as error:
                logger.warning("queue %s: heartbeat failed: %s", self.describe(), error)

    async def _put_back_settling(self) -> None:
        o = self.options
        while self._settling:
            entry, (fields, _) = next(iter(self._settling.items()))
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xadd(o.stream, fields)
                pipe.xack(o.stream, o.group, entry)
                pipe.xdel(o.stream, entry)
                await pipe.execute()
            del self._settling[entry]

    async def _end(self, message_id: str, steps: Any) -> None:
        """One transaction: ``steps(pipeline)`` then acknowledge and delete the held entry."""
        o = self.options
        held = self._held.get(message_id)
        async with self.client.pipeline(transaction=True) as pipe:
            steps(pipe, held)
            if held is not None:
                pipe.xack(o.stream, o.group, held.entry)
                pipe.xdel(o.stream, held.entry)
            await pipe.execute()
        self._held.pop(message_id, None)

    async def save(self, message: QueuedMessage) -> None:
        o = self.options
        if o.max_attempts and message.attempts >= o.max_attempts and message.pending:
            await self.bury(message, f"gave up after {message.attempts} attempts: {message.last_error}")
            return
        held = self._held.get(message.id)
        if held is None:
            raise KeyError(f"message {message.id} is not held by this worker")
        fields = entry_fields(message, *self._body_of(held))

        def steps(pipe: Any, held: _Held | None) -> None:
            key = o.delayed_key(message.id)
            pipe.delete(key)
            pipe.hset(key, mapping=fields)
            pipe.zadd(o.delayed, {message.id: message.next_attempt})

        await self._end(message.id, steps)

    def _body_of(self, held: _Held) -> tuple[bytes | None, int]:
        if b"body" in held.fields:
            return held.fields[b"body"], 0
        return None, int(held.fields.get(b"chunks", b"0"))

    async def remove(self, message_id: str) -> None:
        o = self.options
        size = self._held[message_id].size if message_id in self._held else 0

        def steps(pipe: Any, held: _Held | None) -> None:
            pipe.delete(o.body_key(message_id))
            pipe.decrby(o.bytes_key, size)

        await self._end(message_id, steps)

    async def bury(self, message: QueuedMessage, reason: str) -> None:
        o = self.options
        held = self._held.get(message.id)
        if held is None:
            raise KeyError(f"message {message.id} is not held by this worker")
        dead = dataclasses.replace(message, dead_reason=reason or "failed")
        fields = entry_fields(dead, *self._body_of(held))

        def steps(pipe: Any, held: _Held | None) -> None:
            pipe.xadd(o.dead, fields)
            pipe.decrby(o.bytes_key, message.size)

        await self._end(message.id, steps)

    async def release(self, message_id: str) -> None:
        held = self._held.get(message_id)
        if held is None:
            return

        def steps(pipe: Any, held: _Held | None) -> None:
            assert held is not None
            pipe.xadd(self.options.stream, held.fields)

        await self._end(message_id, steps)

    # ------------------------------------------------------------------ admin side

    async def _entries(self, stream: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
        found: list[tuple[bytes, dict[bytes, bytes]]] = []
        start = b"-"
        while True:
            batch = await self.client.xrange(stream, min=start, max="+", count=500)
            found.extend(batch)
            if len(batch) < 500:
                return found
            start = b"(" + batch[-1][0]

    async def _delayed(self) -> list[dict[bytes, bytes]]:
        ids = await self.client.zrange(self.options.delayed, 0, -1)
        found = []
        for message_id in ids:
            fields = await self.client.hgetall(self.options.delayed_key(message_id.decode()))
            if fields:
                found.append(fields)
        return found

    async def messages(self, *, dead: bool = False) -> list[QueuedMessage]:
        if dead:
            raw = [fields for _, fields in await self._entries(self.options.dead)]
        else:
            raw = [fields for _, fields in await self._entries(self.options.stream)] + await self._delayed()
        found = [message_from_fields(fields, self._chunk_body)[0] for fields in raw]
        return sorted(found, key=lambda m: m.queued)

    async def get(self, message_id: str) -> QueuedMessage | None:
        for dead in (False, True):
            for message in await self.messages(dead=dead):
                if message.id == message_id:
                    return message
        return None

    async def retry_now(self, message_id: str | None = None) -> int:
        ids = [i.decode() for i in await self.client.zrange(self.options.delayed, 0, -1)]
        chosen = [i for i in ids if message_id is None or i == message_id]
        if chosen:
            await self.client.zadd(self.options.delayed, dict.fromkeys(chosen, 0))
        return len(chosen)

    async def delete(self, message_id: str | None = None) -> int:
        o = self.options
        count = 0
        for stream in (o.stream, o.dead):
            for entry, fields in await self._entries(stream):
                found = fields.get(b"id", b"").decode()
                if message_id is None or found == message_id:
                    size = message_from_fields(fields, self._chunk_body)[0].size
                    async with self.client.pipeline(transaction=True) as pipe:
                        pipe.xdel(stream, entry)
                        pipe.delete(o.body_key(found))
                        if stream == o.stream:
                            pipe.xack(o.stream, o.group, entry)
                            pipe.decrby(o.bytes_key, size)
                        await pipe.execute()
                    count += 1
        for fields in await self._delayed():
            found = fields[b"id"].decode()
            if message_id is None or found == message_id:
                size = message_from_fields(fields, self._chunk_body)[0].size
                async with self.client.pipeline(transaction=True) as pipe:
                    pipe.zrem(o.delayed, found)
                    pipe.delete(o.delayed_key(found), o.body_key(found))
                    pipe.decrby(o.bytes_key, size)
                    await pipe.execute()
                count += 1
        return count

    async def requeue(self, message_id: str | None = None) -> int:
        o = self.options
        count = 0
        for entry, fields in await self._entries(o.dead):
            message, chunks = message_from_fields(fields, self._chunk_body)
            if message_id is not None and message.id != message_id:
                continue
            body = None if chunks else fields.get(b"body", b"")
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.xadd(o.stream, entry_fields(requeued(message), body, chunks))
                pipe.xdel(o.dead, entry)
                pipe.incrby(o.bytes_key, message.size)
                await pipe.execute()
            count += 1
        return count

    async def stats(self) -> QueueStats:
        o = self.options
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.xlen(o.stream)
            pipe.zcard(o.delayed)
            pipe.xlen(o.dead)
            pipe.get(o.bytes_key)
            pipe.xrange(o.stream, count=1)
            pipe.zrange(o.delayed, 0, 0)
            queued, delayed, dead, size, first, first_delayed = await pipe.execute()
        oldest: list[float] = []
        if first:
            oldest.append(message_from_fields(first[0][1], self._chunk_body)[0].queued)
        if first_delayed:
            fields = await self.client.hgetall(o.delayed_key(first_delayed[0].decode()))
            if fields:
                oldest.append(message_from_fields(fields, self._chunk_body)[0].queued)
        return QueueStats(
            queued=int(queued) + int(delayed), dead=int(dead), size=int(size or 0), oldest=min(oldest, default=None)
        )


def redis_sink(rest: str) -> RedisStreamQueue:
    """The sink of ``redis://HOST:PORT/DB?stream=...`` (registered with the sinks)."""
    return _make("redis:" + rest)


def rediss_sink(rest: str) -> RedisStreamQueue:
    """The sink of ``rediss://...`` (TLS)."""
    return _make("rediss:" + rest)


def _make(url: str) -> RedisStreamQueue:
    try:
        return RedisStreamQueue(url)
    except ValueError as error:
        raise SinkError(f"invalid sink {redact_url(url)!r}: {error}") from None

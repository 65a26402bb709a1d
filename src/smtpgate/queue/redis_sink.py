"""The receiving side of the Redis stream queue: one message into the stream, answered
``250`` only once it is there (and on enough replicas)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from typing import TYPE_CHECKING

from ..sinks import Delivery, MessageInfo
from .base import new_message_id
from .redis_codec import entry_fields, new_message

if TYPE_CHECKING:
    from .redis import RedisStreamQueue

__all__ = ["StreamDelivery", "COMMIT_SCRIPT", "COMMIT_SHA"]

logger = logging.getLogger("smtpgate.queue")

_PENDING_BODY_TTL_MS = 3600 * 1000  # a body whose message never committed disappears after this
_UNDO_FOR = 30.0  # seconds a refused (451) message's entry is tried to be taken back
_UNDOING: set[asyncio.Task[None]] = set()

# Adds the entry unless the receiver's deadline passed: a command that reaches a stalled
# Redis late (the client already answered 451) adds nothing.
COMMIT_SCRIPT = """
local t = redis.call('TIME')
if tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(ARGV[1]) then return false end
if ARGV[3] == '1' then redis.call('PERSIST', KEYS[3]) end
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 4))
redis.call('INCRBY', KEYS[2], ARGV[2])
return id
"""
COMMIT_SHA = hashlib.sha1(COMMIT_SCRIPT.encode()).hexdigest()


class StreamDelivery(Delivery):
    """One message into the stream: small bodies inline, large ones pushed in chunks as
    they arrive; the entry is added (and replicated) in `commit`."""

    def __init__(self, queue: RedisStreamQueue, info: MessageInfo) -> None:
        self.queue = queue
        self.info = info
        self.id = new_message_id()
        self._buffer = bytearray()
        self._chunks = 0
        self._size = 0
        self._done = False

    async def write(self, chunk: bytes) -> None:
        self._size += len(chunk)
        self._buffer += chunk
        size = self.queue.options.chunk_size
        while len(self._buffer) >= size:
            await self._push(bytes(self._buffer[:size]))
            del self._buffer[:size]

    async def _push(self, data: bytes) -> None:
        key = self.queue.options.body_key(self.id)
        async with self.queue.client.pipeline(transaction=True) as pipe:
            pipe.rpush(key, data)
            pipe.pexpire(key, _PENDING_BODY_TTL_MS)
            await pipe.execute()
        self._chunks += 1

    async def commit(self) -> str:
        queue = self.queue
        o = queue.options
        if self._chunks and self._buffer:
            await self._push(bytes(self._buffer))
            self._buffer.clear()
        body = bytes(self._buffer) if not self._chunks else None
        message = new_message(self.id, self.info, self._size, time.time())
        client = queue.client
        deadline = (time.time() + queue.clock_offset + o.timeout * 0.8) * 1000
        fields = [item for pair in entry_fields(message, body, self._chunks).items() for item in pair]
        keys = [o.stream, o.bytes_key, o.body_key(self.id)]
        args = [int(deadline), self._size, "1" if self._chunks else "0", *fields]
        # The script and WAIT on one connection: WAIT counts the writes of its own connection.
        for attempt in range(2):
            async with client.pipeline(transaction=False) as pipe:
                pipe.evalsha(COMMIT_SHA, len(keys), *keys, *args)
                if o.replicas:
                    pipe.execute_command("WAIT", o.replicas, int(o.wait_timeout * 1000))
                results = await pipe.execute(raise_on_error=False)
            if attempt == 0 and isinstance(results[0], Exception) and type(results[0]).__name__ == "NoScriptError":
                await client.script_load(COMMIT_SCRIPT)  # a new (or restarted, promoted) server
                continue
            break
        entry = results[0]
        if isinstance(entry, Exception):
            raise entry
        if entry is None:
            raise TimeoutError("Redis took too long: the message was not queued")
        self._done = True
        if o.replicas:
            confirmed = results[1]
            if isinstance(confirmed, Exception) or int(confirmed) < o.replicas:
                await self._undo(entry)
                if isinstance(confirmed, Exception):
                    raise confirmed
                raise RuntimeError(f"only {confirmed} of {o.replicas} replicas confirmed the message")
        return self.id

    async def _undo(self, entry: bytes) -> None:
        """The replicas did not confirm: take the entry back before the 451, retrying in
        the background for a while if Redis does not answer now (a failover)."""
        if not await self._try_undo(entry):
            task = asyncio.ensure_future(self._undo_later(entry))
            _UNDOING.add(task)
            task.add_done_callback(_UNDOING.discard)

    async def _try_undo(self, entry: bytes) -> bool:
        o = self.queue.options
        try:
            async with self.queue.client.pipeline(transaction=True) as pipe:
                pipe.xdel(o.stream, entry)
                pipe.delete(o.body_key(self.id))
                pipe.decrby(o.bytes_key, self._size)
                await pipe.execute()
        except Exception as error:
            logger.warning("queue %s: could not take back %s yet: %s", self.queue.describe(), self.id, error)
            return False
        return True

    async def _undo_later(self, entry: bytes) -> None:
        deadline = time.monotonic() + _UNDO_FOR
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            if await self._try_undo(entry):
                return

    def abort(self) -> None:
        if self._done or not self._chunks:
            return
        self._done = True
        key = self.queue.options.body_key(self.id)

        async def drop() -> None:
            with contextlib.suppress(Exception):
                await self.queue.client.delete(key)

        try:
            asyncio.get_running_loop().create_task(drop())
        except RuntimeError:  # no loop: the chunks expire by themselves
            pass

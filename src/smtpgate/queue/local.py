"""The local queue: a directory, one file per message, durable before the ``250``.

Layout of the queue directory::

    tmp/            messages being received (removed at start-up when stale)
    active/ID.msg   a queued message: one JSON line (the envelope), then the message
    active/ID.json  its delivery state, once an attempt was made (absent: never tried)
    dead/ID.msg     a message in the dead-letter area
    dead/ID.json    its final state, with the reason
    corrupt/        files found unreadable in active/ (moved aside, logged)
    wakeup          touched by ``smtpgate queue retry`` so a running worker looks again

A message is in the queue exactly when its ``.msg`` file exists: it is written to
``tmp/``, ``fsync``'d and renamed into ``active/`` (then the directory is ``fsync``'d)
before the commit returns. A state file is valid only next to its ``.msg`` file in the
same folder: every change writes a new state file and renames it over the old one, and a
move (to the dead-letter area or back) writes the state into the destination first,
renames the ``.msg`` file (the atomic step) and then removes the old state. After a crash
at any point the queue holds each message once, with an old or a new state, never none.

A message being delivered is held with an exclusive ``flock`` on its ``.msg`` file, so
several processes (``--workers``) can share one queue directory; the lock of a process
that dies is released by the system.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import heapq
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

from ..sinks import Delivery, MessageInfo, SinkError
from .base import MessageQueue, QueuedMessage, QueueStats
from .localfiles import (
    ACTIVE,
    DEAD,
    QueueDelivery,
    fsync_dir,
    load_message,
    state_to_json,
    unlink_quietly,
    valid_id,
    write_atomic,
)

__all__ = ["LocalQueue", "DEFAULT_MAX_SIZE", "DEFAULT_MAX_MESSAGES"]

logger = logging.getLogger("smtpgate.queue")

DEFAULT_MAX_SIZE = 1024**3
"""Bytes of messages (queued and dead) the queue takes before it answers ``452``."""
DEFAULT_MAX_MESSAGES = 100_000
"""Messages (queued and dead) the queue takes before it answers ``452``."""

CLAIM_IN_MEMORY = 128 * 1024
"""Messages up to this size are read whole when claimed (one trip to a thread for the
batch instead of one more per message); larger ones are read from the file as sent."""
_STALE = 3600.0  # seconds before a stray file in tmp/ or a lone state file is removed at start-up
_RESCAN = 10.0  # seconds between looks at the directory for changes by other processes
_WAKEUP_POLL = 1.0


@dataclass
class _Entry:
    """What the worker keeps in memory of a queued message."""

    next_attempt: float
    size: int
    state_mtime: float


class LocalQueue(MessageQueue):
    """A queue in a directory (see the module's description of the layout).

    ``max_size`` (bytes) and ``max_messages`` bound what the queue holds, dead letters
    included; a commit beyond them raises `SinkFull` (the command answers ``452 4.3.1``).
    The bounds are exact within one process; processes sharing the directory see each
    other's messages within ``rescan`` seconds."""

    kind = "queue"

    def __init__(
        self,
        path: str,
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        rescan: float = _RESCAN,
    ) -> None:
        super().__init__(path)
        self.max_size = max_size
        self.max_messages = max_messages
        self.rescan_interval = rescan
        self._tmp = os.path.join(path, "tmp")
        try:
            for folder in (path, self._tmp, os.path.join(path, ACTIVE), os.path.join(path, DEAD)):
                os.makedirs(folder, exist_ok=True)
        except OSError as error:
            raise SinkError(f"queue {path!r}: {error.strerror or error}") from None
        self._entries: dict[str, _Entry] = {}
        self._dead_sizes: dict[str, int] = {}
        self._heap: list[tuple[float, str]] = []
        self._held: dict[str, int] = {}  # message ID -> locked file descriptor
        self._removals: list[tuple[str, int | None, asyncio.Future[OSError | None]]] = []
        self._remover: asyncio.Task[None] | None = None
        self._bytes = 0
        self._changed: asyncio.Event | None = None
        self._last_scan = 0.0
        self._wakeup_mtime = 0.0

    # ------------------------------------------------------------ sink side

    def describe(self) -> str:
        return f"queue:{self.path}"

    async def start(self) -> None:
        """Check the directory is writable, finish what a crash interrupted and load the
        index of queued messages; raises `SinkError`."""
        probe = os.path.join(self._tmp, f".probe.{os.getpid()}.{os.urandom(4).hex()}")
        try:
            with open(probe, "xb") as handle:
                handle.write(b"x")
            os.unlink(probe)
        except OSError as error:
            raise SinkError(f"queue {self.path!r} is not writable: {error.strerror or error}") from None
        self._changed = asyncio.Event()
        await asyncio.to_thread(self._recover)
        await self._rescan()
        queued, dead = len(self._entries), len(self._dead_sizes)
        if queued or dead:
            logger.info("queue %s: %d queued, %d dead", self.path, queued, dead)

    def open(self, info: MessageInfo) -> Delivery:
        return QueueDelivery(self, info)

    async def close(self) -> None:
        for message_id in list(self._held):
            self._unhold(message_id)

    def has_room(self, size: int) -> bool:
        """Whether one more message of ``size`` bytes stays within the bounds."""
        count = len(self._entries) + len(self._dead_sizes)
        return count < self.max_messages and self._bytes + size <= self.max_size

    def added(self, message_id: str, size: int) -> None:
        """A commit of this process put a new message in ``active/``."""
        self._set_entry(message_id, _Entry(0.0, size, 0.0))
        if self._changed is not None:
            self._changed.set()

    # ------------------------------------------------------------ files

    def _folder(self, area: str) -> str:
        return os.path.join(self.path, area)

    def _msg_path(self, area: str, message_id: str) -> str:
        return os.path.join(self.path, area, message_id + ".msg")

    def _state_path(self, area: str, message_id: str) -> str:
        return os.path.join(self.path, area, message_id + ".json")

    def _ids(self, area: str) -> Iterator[str]:
        for name in os.listdir(self._folder(area)):
            if name.endswith(".msg"):
                yield name[:-4]

    def _recover(self) -> None:
        """Remove stale temporary files and state files left without their message."""
        cutoff = time.time() - _STALE
        for name in os.listdir(self._tmp):
            path = os.path.join(self._tmp, name)
            try:
                if os.stat(path).st_mtime < cutoff:
                    os.unlink(path)
            except FileNotFoundError:
                pass
        for area in (ACTIVE, DEAD):
            for name in os.listdir(self._folder(area)):
                if name.endswith(".json") and not os.path.exists(self._msg_path(area, name[:-5])):
                    path = os.path.join(self._folder(area), name)
                    try:
                        if os.stat(path).st_mtime < cutoff:
                            os.unlink(path)
                    except FileNotFoundError:
                        pass

    def _load(self, area: str, message_id: str, in_memory: int = 0) -> QueuedMessage:
        """Read one message's envelope and state (the body too when it has at most
        ``in_memory`` bytes); raises ``FileNotFoundError`` if gone."""
        msg_path, state_path = self._msg_path(area, message_id), self._state_path(area, message_id)
        return load_message(message_id, msg_path, state_path, in_memory=in_memory)

    def _state_mtime(self, area: str, message_id: str) -> float:
        try:
            return os.stat(self._state_path(area, message_id)).st_mtime
        except FileNotFoundError:
            return 0.0

    def _scan(self) -> tuple[dict[str, _Entry], dict[str, int]]:
        """Read the directory: every queued message's entry and every dead one's size."""
        entries: dict[str, _Entry] = {}
        for message_id in self._ids(ACTIVE):
            known = self._entries.get(message_id)
            mtime = self._state_mtime(ACTIVE, message_id)
            if known is not None and known.state_mtime == mtime:
                entries[message_id] = known
                continue
            try:
                message = self._load(ACTIVE, message_id)
                size = os.stat(self._msg_path(ACTIVE, message_id)).st_size
            except FileNotFoundError:
                continue
            except (ValueError, KeyError, TypeError) as error:
                self._quarantine(message_id, error)
                continue
            entries[message_id] = _Entry(message.next_attempt, size, mtime)
        dead: dict[str, int] = {}
        for message_id in self._ids(DEAD):
            try:
                dead[message_id] = os.stat(self._msg_path(DEAD, message_id)).st_size
            except FileNotFoundError:
                pass
        return entries, dead

    def _quarantine(self, message_id: str, error: Exception) -> None:
        """Move a message whose files cannot be read (not written by smtpgate, or damaged
        on disk) to ``corrupt/``, out of the way, and say so once."""
        folder = os.path.join(self.path, "corrupt")
        logger.error("queue %s: message %s is unreadable (%s): moved to %s", self.path, message_id, error, folder)
        try:
            os.makedirs(folder, exist_ok=True)
            for suffix in (".msg", ".json"):
                source = os.path.join(self._folder(ACTIVE), message_id + suffix)
                if os.path.exists(source):
                    os.rename(source, os.path.join(folder, message_id + suffix))
        except OSError as move_error:
            logger.error("queue %s: cannot move %s aside: %s", self.path, message_id, move_error)

    async def _rescan(self) -> None:
        entries, dead = await asyncio.to_thread(self._scan)
        self._last_scan = time.monotonic()
        for message_id in list(self._entries):
            if message_id not in entries and message_id not in self._held:
                self._drop_entry(message_id)
        for message_id, entry in entries.items():
            if message_id not in self._held:
                self._set_entry(message_id, entry)
        self._bytes = sum(e.size for e in self._entries.values()) + sum(dead.values())
        self._dead_sizes = dead
        # A message another process held may have been released without a change: every
        # queued message not held here gets a fresh place in the schedule.
        self._heap = [(e.next_attempt, i) for i, e in self._entries.items() if i not in self._held]
        heapq.heapify(self._heap)

    def _set_entry(self, message_id: str, entry: _Entry) -> None:
        old = self._entries.get(message_id)
        self._bytes += entry.size - (old.size if old else 0)
        self._entries[message_id] = entry
        if old is None or old.next_attempt != entry.next_attempt:
            heapq.heappush(self._heap, (entry.next_attempt, message_id))

    def _drop_entry(self, message_id: str) -> None:
        old = self._entries.pop(message_id, None)
        if old is not None:
            self._bytes -= old.size

    # ------------------------------------------------------------ holds

    def _try_lock(self, area: str, message_id: str) -> int | None:
        """Lock the message file; None if another holder has it or it is gone."""
        try:
            fd = os.open(self._msg_path(area, message_id), os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return fd

    def _unhold(self, message_id: str) -> None:
        fd = self._held.pop(message_id, None)
        if fd is not None:
            os.close(fd)  # releases the flock

    # ------------------------------------------------------------ worker side

    async def claim(self, limit: int) -> list[QueuedMessage]:
        if time.monotonic() - self._last_scan > self.rescan_interval:
            await self._rescan()
        now = time.time()
        candidates: list[str] = []
        while self._heap and len(candidates) < limit and self._heap[0][0] <= now:
            due, message_id = heapq.heappop(self._heap)
            entry = self._entries.get(message_id)
            if entry is None or entry.next_attempt != due or message_id in self._held:
                continue  # stale heap item
            candidates.append(message_id)
        if not candidates:
            return []

        def lock_and_load() -> list[tuple[str, int | None, QueuedMessage | None]]:
            out: list[tuple[str, int | None, QueuedMessage | None]] = []
            for message_id in candidates:
                fd = self._try_lock(ACTIVE, message_id)
                message = None
                if fd is not None:
                    try:
                        message = self._load(ACTIVE, message_id, CLAIM_IN_MEMORY)
                    except FileNotFoundError:
                        os.close(fd)
                        fd = None
                    except (ValueError, KeyError, TypeError) as error:
                        os.close(fd)
                        fd = None
                        self._quarantine(message_id, error)
                out.append((message_id, fd, message))
            return out

        claimed: list[QueuedMessage] = []
        for message_id, fd, message in await asyncio.to_thread(lock_and_load):
            if fd is None or message is None:
                if not os.path.exists(self._msg_path(ACTIVE, message_id)):
                    self._drop_entry(message_id)  # gone (delivered or deleted elsewhere)
                continue  # held by another process: it will save or release it
            if message.next_attempt > now:  # rescheduled by someone else meanwhile
                os.close(fd)
                known = self._entries.get(message_id)
                size = known.size if known else message.size
                self._set_entry(message_id, _Entry(message.next_attempt, size, self._state_mtime(ACTIVE, message_id)))
                continue
            self._held[message_id] = fd
            claimed.append(message)
        return claimed

    async def wait(self, timeout: float) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        deadline = time.monotonic() + timeout
        if self._heap:
            deadline = min(deadline, time.monotonic() + max(0.0, self._heap[0][0] - time.time()))
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or self._changed.is_set():
                break
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, _WAKEUP_POLL))
            except asyncio.TimeoutError:
                if self._woken():
                    await self._rescan()
                    break
        self._changed.clear()

    def _woken(self) -> bool:
        """``smtpgate queue retry`` touched the wakeup file since the last look."""
        try:
            mtime = os.stat(os.path.join(self.path, "wakeup")).st_mtime
        except FileNotFoundError:
            return False
        if mtime != self._wakeup_mtime:
            self._wakeup_mtime = mtime
            return True
        return False

    async def save(self, message: QueuedMessage) -> None:
        data = state_to_json(message)
        try:
            await asyncio.to_thread(write_atomic, self._folder(ACTIVE), message.id + ".json", data, self._tmp)
            mtime = self._state_mtime(ACTIVE, message.id)
        finally:
            self._unhold(message.id)
        if message.id in self._entries:
            self._set_entry(message.id, _Entry(message.next_attempt, self._entries[message.id].size, mtime))

    async def remove(self, message_id: str) -> None:
        # Removals that come while one trip to a thread is on its way wait for the next
        # trip together: under load, one trip removes several messages.
        done: asyncio.Future[OSError | None] = asyncio.get_running_loop().create_future()
        self._removals.append((message_id, self._held.pop(message_id, None), done))
        if self._remover is None or self._remover.done():
            self._remover = asyncio.create_task(self._remove_pending(), name="smtpgate-queue-remove")
        error = await asyncio.shield(done)
        self._drop_entry(message_id)
        if error is not None:
            raise error

    async def _remove_pending(self) -> None:
        while self._removals:
            batch, self._removals = self._removals, []
            try:
                errors = await asyncio.to_thread(self._drop_files, [(i, fd) for i, fd, _ in batch])
            except BaseException:
                for _, _, done in batch:
                    if not done.done():
                        done.set_result(OSError("the removal was interrupted"))
                raise
            for message_id, _, done in batch:
                if not done.done():
                    done.set_result(errors.get(message_id))

    def _drop_files(self, batch: list[tuple[str, int | None]]) -> dict[str, OSError]:
        """(In a thread.) Remove delivered messages' files, then release their locks. No
        fsync of the folder: should a removal be lost in a crash, the message is delivered
        once more, which at-least-once allows."""
        errors: dict[str, OSError] = {}
        for message_id, fd in batch:
            try:
                unlink_quietly(self._msg_path(ACTIVE, message_id))
                unlink_quietly(self._state_path(ACTIVE, message_id))
            except OSError as error:
                errors[message_id] = error
            if fd is not None:
                try:
                    os.close(fd)  # the last reference: the file's blocks are freed here, off the loop
                except OSError:
                    pass  # the lock is gone with the descriptor either way
        return errors

    async def bury(self, message: QueuedMessage, reason: str) -> None:
        dead = dataclasses.replace(message, dead_reason=reason or "failed")
        try:
            await asyncio.to_thread(self._move, message.id, ACTIVE, DEAD, state_to_json(dead))
        finally:
            self._unhold(message.id)
        entry = self._entries.get(message.id)
        self._drop_entry(message.id)
        size = entry.size if entry else message.size
        self._dead_sizes[message.id] = size
        self._bytes += size

    def _move(self, message_id: str, source: str, target: str, state: bytes) -> None:
        """State into the target first, then the message (the atomic step), then drop the
        old state (see the module's description)."""
        write_atomic(self._folder(target), message_id + ".json", state, self._tmp)
        os.rename(self._msg_path(source, message_id), self._msg_path(target, message_id))
        fsync_dir(self._folder(target))
        unlink_quietly(self._state_path(source, message_id))
        fsync_dir(self._folder(source))

    async def release(self, message_id: str) -> None:
        self._unhold(message_id)
        entry = self._entries.get(message_id)
        if entry is not None:
            heapq.heappush(self._heap, (entry.next_attempt, message_id))

    # ------------------------------------------------------------ admin side

    async def messages(self, *, dead: bool = False) -> list[QueuedMessage]:
        area = DEAD if dead else ACTIVE

        def load_all() -> list[QueuedMessage]:
            out = []
            for message_id in sorted(self._ids(area)):
                try:
                    out.append(self._load(area, message_id))
                except FileNotFoundError:
                    continue
                except (ValueError, KeyError, TypeError) as error:
                    logger.error("queue %s: message %s is unreadable: %s", self.path, message_id, error)
            return out

        return await asyncio.to_thread(load_all)

    async def get(self, message_id: str) -> QueuedMessage | None:
        if not valid_id(message_id):
            return None
        for area in (ACTIVE, DEAD):
            try:
                return await asyncio.to_thread(self._load, area, message_id)
            except FileNotFoundError:
                continue
        return None

    def _targets(self, area: str, message_id: str | None) -> list[str]:
        if message_id is None:
            return sorted(self._ids(area))
        if valid_id(message_id) and os.path.exists(self._msg_path(area, message_id)):
            return [message_id]
        return []

    def _each_locked(self, area: str, message_id: str | None) -> Iterator[tuple[str, int]]:
        """Lock each targeted message in turn (skipping those being delivered)."""
        for target in self._targets(area, message_id):
            fd = self._try_lock(area, target)
            if fd is None:
                continue
            try:
                yield target, fd
            finally:
                os.close(fd)

    def _touch_wakeup(self) -> None:
        path = os.path.join(self.path, "wakeup")
        with open(path, "a"):
            pass
        os.utime(path)

    async def retry_now(self, message_id: str | None = None) -> int:
        def run() -> int:
            count = 0
            now = time.time()
            for target, _fd in self._each_locked(ACTIVE, message_id):
                message = self._load(ACTIVE, target)
                if message.next_attempt > now:
                    data = state_to_json(dataclasses.replace(message, next_attempt=now))
                    write_atomic(self._folder(ACTIVE), target + ".json", data, self._tmp)
                count += 1
            self._touch_wakeup()
            return count

        count = await asyncio.to_thread(run)
        if self._changed is not None:
            await self._rescan()
            self._changed.set()
        return count

    async def delete(self, message_id: str | None = None) -> int:
        def run() -> int:
            count = 0
            for area in (ACTIVE, DEAD):
                for target, _fd in self._each_locked(area, message_id):
                    unlink_quietly(self._msg_path(area, target))
                    unlink_quietly(self._state_path(area, target))
                    count += 1
                fsync_dir(self._folder(area))
            return count

        count = await asyncio.to_thread(run)
        await self._rescan()
        return count

    async def requeue(self, message_id: str | None = None) -> int:
        def run() -> int:
            count = 0
            now = time.time()
            for target, _fd in self._each_locked(DEAD, message_id):
                message = self._load(DEAD, target)
                recipients = tuple(
                    dataclasses.replace(r, status="pending") if r.status == "failed" else r for r in message.recipients
                )
                fresh = dataclasses.replace(
                    message,
                    recipients=recipients,
                    attempts=0,
                    first_attempt=None,
                    last_attempt=None,
                    next_attempt=now,
                    dead_reason="",
                )
                self._move(target, DEAD, ACTIVE, state_to_json(fresh))
                count += 1
            self._touch_wakeup()
            return count

        count = await asyncio.to_thread(run)
        await self._rescan()
        if self._changed is not None:
            self._changed.set()
        return count

    async def stats(self) -> QueueStats:
        def run() -> QueueStats:
            queued = dead = size = 0
            oldest: str | None = None
            for area in (ACTIVE, DEAD):
                for message_id in self._ids(area):
                    try:
                        size += os.stat(self._msg_path(area, message_id)).st_size
                    except FileNotFoundError:
                        continue
                    if area == ACTIVE:
                        queued += 1
                        oldest = message_id if oldest is None else min(oldest, message_id)
                    else:
                        dead += 1
            when = None
            if oldest is not None:
                try:
                    when = self._load(ACTIVE, oldest).queued
                except FileNotFoundError:
                    pass
            return QueueStats(queued=queued, dead=dead, size=size, oldest=when)

        return await asyncio.to_thread(run)

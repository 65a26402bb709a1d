"""The inbox store: every message in one SQLite database, searchable, in mailboxes.

Layout: the database ``PATH`` (WAL mode) holds the parsed message, its mailboxes, tags
and a full-text index; the raw bytes of a message up to `BLOB_LIMIT` are a row of the
``raw`` table, larger ones a file ``PATH.d/ID.eml`` beside it (streamed in through a
spool file in ``PATH.d/tmp/``, renamed into place, streamed out again; never held in
memory).

Durability: `InboxStore.add` returns only after the message is committed. Files are
``fsync``'d and renamed (and their folder ``fsync``'d) *before* the transaction that
records them; the database runs with ``synchronous=FULL``, so every commit ``fsync``'s
the WAL: a commit that returned survives a crash or power loss (``NORMAL`` would not in
WAL mode: it syncs only at checkpoints). A crash before the commit leaves at most a file
without a row, which `open` deletes; deleting commits first and removes files after, so
a crash leaves again only orphans. Writers are batched: one thread owns the only writer
connection and commits every queued change in one transaction (one ``fsync`` for many
messages). Reads use a small pool of reader connections in threads, so the event loop
never waits for the disk.

Mailboxes: a message is filed under each envelope recipient (lowercased), under the base
address of a plus address too (``a+x@d`` → ``a+x@d`` and ``a@d``), and under the AUTH
user. Tags: the part after ``+`` of each recipient (envelope, ``To``, ``Cc``) and the
``X-Tags`` header.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import mmap
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import IO, Any, TypeVar

from ..sinks.base import MessageInfo
from ..sinks.files import unlink_quietly
from .events import Event, Hub, Subscription
from .parse import ParsedMessage, parse_message, rfc3339
from .reads import MAX_PAGE, StoreReads
from .records import (
    RawMessage,
    address_text,
    mailboxes_of,
    new_id,
    smtpgate_version,
    tags_of,
)
from .schema import SchemaError, connect
from .spool import MEMORY_LIMIT, Spool
from .tagging import MAILBOXES_OF, StoreTags, mailbox_set

__all__ = ["InboxStore", "StoreError", "RawMessage", "BLOB_LIMIT", "MAX_PAGE", "new_id"]

T = TypeVar("T")

BLOB_LIMIT = MEMORY_LIMIT
"""Raw messages up to this size live in the database; larger ones in files beside it
(the spool's memory limit decides: a spool that moved to a file becomes the file)."""
_BATCH = 128
STATS_INTERVAL = 0.25
"""Seconds between two ``stats`` events (they follow changes)."""


_Job = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]"]


class StoreError(Exception):
    """The store cannot be opened or used: one clear line."""


@dataclass
class _Op:
    """What a write did besides its result: events to publish, files to remove."""

    events: list[Event] = field(default_factory=list)
    unlink: list[str] = field(default_factory=list)


@dataclass
class _Prepared:
    id: str
    created: int
    parsed: ParsedMessage
    info: MessageInfo
    size: int
    data: bytes | None
    file_name: str | None


class InboxStore(StoreReads, StoreTags):
    """Messages in SQLite: `add` (durable), list/search, read, delete, retention, events.

    ``max_messages`` and ``max_age`` (seconds) prune oldest first; 0 keeps everything.
    Use ``async with InboxStore(path) as store`` or `open`/`close` on one event loop.
    """

    def __init__(self, path: str, *, max_messages: int = 0, max_age: float = 0.0, readers: int = 4) -> None:
        self.path = os.path.abspath(path)
        self.files = self.path + ".d"
        self.max_messages = max_messages
        self.max_age = max_age
        self.hub = Hub()
        self.deleted = 0
        self.accepted = 0
        self.accepted_size = 0
        self.started = time.time()
        self._readers_count = readers
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: queue.Queue[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]] | None] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._readers: concurrent.futures.ThreadPoolExecutor | None = None
        self._reader_connections: list[sqlite3.Connection] = []
        self._local = threading.local()
        self._lock = threading.Lock()
        self._pruner: asyncio.Task[None] | None = None
        self._stats_timer: asyncio.TimerHandle | None = None
        self._lock_file: IO[bytes] | None = None
        self._stats_task: asyncio.Future[None] | None = None

    # ------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> InboxStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Create or migrate the database, remove orphans, start the writer; `StoreError`."""
        self._loop = asyncio.get_running_loop()
        try:
            await asyncio.to_thread(self._prepare_files)
            connection = await asyncio.to_thread(self._connect)
        except (OSError, sqlite3.Error, SchemaError, StoreError) as error:
            self._unlock()
            if isinstance(error, StoreError):
                raise
            raise StoreError(f"cannot open inbox {self.path!r}: {error}") from None
        self._writer = threading.Thread(target=self._write_loop, args=(connection,), name="inbox-writer", daemon=True)
        self._writer.start()
        self._readers = concurrent.futures.ThreadPoolExecutor(self._readers_count, thread_name_prefix="inbox-read")
        if self.max_age:
            self._pruner = asyncio.ensure_future(self._prune_periodically())

    async def close(self) -> None:
        """Finish queued writes and close every connection."""
        if self._stats_timer is not None:
            self._stats_timer.cancel()
            self._stats_timer = None
        if self._stats_task is not None:
            await asyncio.gather(self._stats_task, return_exceptions=True)
        if self._pruner is not None:
            self._pruner.cancel()
            self._pruner = None
        if self._writer is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        with self._lock:
            for connection in self._reader_connections:
                connection.close()
            self._reader_connections.clear()
        self._unlock()

    def _prepare_files(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        os.makedirs(os.path.join(self.files, "tmp"), exist_ok=True)
        self._lock_owner()
        tmp = os.path.join(self.files, "tmp")
        for name in os.listdir(tmp):  # spools of deliveries a crash interrupted
            os.unlink(os.path.join(tmp, name))

    def _lock_owner(self) -> None:
        """One store per inbox at a time (it cleans the spool folder and orphans on open):
        an exclusive lock on ``PATH.d/lock``, released on close or when the process ends."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return
        handle = open(os.path.join(self.files, "lock"), "a+b")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise StoreError(f"inbox {self.path!r} is in use by another process") from None
        self._lock_file = handle

    def _unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _connect(self) -> sqlite3.Connection:
        connection = connect(self.path, writer=True)
        self._remove_orphans(connection)
        return connection

    def _remove_orphans(self, connection: sqlite3.Connection) -> None:
        """Files of messages whose transaction never committed (a crash) go."""
        known = {row[0] for row in connection.execute("SELECT raw_file FROM messages WHERE raw_file IS NOT NULL")}
        for name in os.listdir(self.files):
            if name.endswith(".eml") and name not in known:
                os.unlink(os.path.join(self.files, name))

    def _reader(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = connect(self.path, writer=False)
            self._local.connection = connection
            with self._lock:
                self._reader_connections.append(connection)
        return connection

    async def _read(self, function: Callable[[sqlite3.Connection], T]) -> T:
        if self._readers is None or self._loop is None:
            raise StoreError("the inbox store is not open")
        return await self._loop.run_in_executor(self._readers, lambda: function(self._reader()))

    async def _write(self, function: Callable[[sqlite3.Connection], tuple[T, _Op]]) -> T:
        if self._writer is None or self._loop is None:
            raise StoreError("the inbox store is not open")
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put((function, future))
        return await future

    async def _change(self, function: Callable[[sqlite3.Connection], tuple[T, list[Event]]]) -> T:
        """`_write` for a change whose only side effect is events."""

        def run(connection: sqlite3.Connection) -> tuple[T, _Op]:
            value, events = function(connection)
            return value, _Op(events=events)

        return await self._write(run)

    # ------------------------------------------------------------- the writer thread

    def _write_loop(self, connection: sqlite3.Connection) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                batch = [item]
                while len(batch) < _BATCH:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._queue.put(None)
                        break
                    batch.append(more)
                self._run_batch(connection, batch)
        finally:
            connection.close()

    def _run_batch(
        self, connection: sqlite3.Connection, batch: list[tuple[Callable[..., Any], asyncio.Future[Any]]]
    ) -> None:
        """One transaction for the whole batch (a savepoint per change), retention, then
        the files of deleted messages are removed and the futures settled."""
        results: list[tuple[bool, Any, _Op]] = [(False, None, _Op())] * len(batch)
        pending = list(range(len(batch)))
        extra = _Op()
        while True:  # at most len(batch) + 1 rounds: each repeat drops the change that failed
            aborted = False
            try:
                connection.execute("BEGIN IMMEDIATE")
                for index in pending:
                    connection.execute("SAVEPOINT op")
                    try:
                        value, op = batch[index][0](connection)
                        connection.execute("RELEASE op")
                        results[index] = (True, value, op)
                    except Exception as error:
                        results[index] = (False, error, _Op())
                        if not connection.in_transaction:  # SQLite rolled everything back (disk full)
                            aborted = True
                            pending.remove(index)
                            break
                        connection.execute("ROLLBACK TO op")
                        connection.execute("RELEASE op")
                if aborted:
                    continue  # the others again, in a new transaction
                pruned = self._retention(connection)
                extra = pruned[0] if pruned is not None else _Op()
                connection.execute("COMMIT")
            except Exception as error:
                try:
                    connection.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                for index in pending:
                    results[index] = (False, error, _Op())
                extra = _Op()
            break
        for _, _, op in [*results, (True, None, extra)]:
            for path in op.unlink:
                unlink_quietly(path)
        assert self._loop is not None
        for (_, future), (ok, value, op) in zip(batch, results, strict=True):
            self._loop.call_soon_threadsafe(self._settle, future, ok, value, op.events)
        if extra.events:
            self._loop.call_soon_threadsafe(self._publish, extra.events)

    def _publish(self, events: list[Event]) -> None:
        for event in events:
            self.hub.publish(event)
        if events and self._stats_timer is None and self._loop is not None:
            # one "stats" event at most every STATS_INTERVAL, after the changes (like Mailpit)
            self._stats_timer = self._loop.call_later(STATS_INTERVAL, self._send_stats)

    def _send_stats(self) -> None:
        async def send() -> None:
            try:
                event = await self._read(self._stats_event)
            except Exception:  # closing, or a busy disk: the next change sends them
                return
            finally:
                self._stats_timer = None
            self.hub.publish(event)

        self._stats_task = asyncio.ensure_future(send())

    def _settle(self, future: asyncio.Future[Any], ok: bool, value: Any, events: list[Event]) -> None:
        self._publish(events)
        if future.cancelled():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    @staticmethod
    def _stats_event(connection: sqlite3.Connection) -> Event:
        total, unread = connection.execute("SELECT COUNT(*), COALESCE(SUM(read = 0), 0) FROM messages").fetchone()
        return Event("stats", {"Total": total, "Unread": unread, "Version": smtpgate_version()})

    def _retention(self, connection: sqlite3.Connection) -> tuple[_Op, int] | None:
        seqs: list[int] = []
        if self.max_messages:
            rows = connection.execute(
                "SELECT seq FROM messages ORDER BY seq DESC LIMIT -1 OFFSET ?", (self.max_messages,)
            ).fetchall()
            seqs.extend(row[0] for row in rows)
        if self.max_age:
            cutoff = int((time.time() - self.max_age) * 1000)
            seqs.extend(row[0] for row in connection.execute("SELECT seq FROM messages WHERE created < ?", (cutoff,)))
        if not seqs:
            return None
        op = self._delete_seqs(connection, sorted(set(seqs)), bulk_event="prune")
        return op, len(seqs)

    def _delete_seqs(self, connection: sqlite3.Connection, seqs: list[int], bulk_event: str = "prune") -> _Op:
        op = _Op()
        if not seqs:
            return op
        payload = json.dumps(seqs)
        rows = connection.execute(
            "SELECT m.seq, m.id, m.raw_file, (SELECT json_group_array(mailbox) FROM mailboxes b WHERE b.seq = m.seq) "
            "FROM messages m WHERE m.seq IN (SELECT value FROM json_each(?))",
            (payload,),
        ).fetchall()
        for table in ("messages", "raw", "mailboxes", "tags"):
            connection.execute(f"DELETE FROM {table} WHERE seq IN (SELECT value FROM json_each(?))", (payload,))
        connection.execute("DELETE FROM fts WHERE rowid IN (SELECT value FROM json_each(?))", (payload,))
        self.deleted += len(rows)
        op.unlink.extend(os.path.join(self.files, row[2]) for row in rows if row[2])
        if len(rows) > 200:
            op.events.append(Event(bulk_event))
        else:
            op.events.extend(Event("delete", {"ID": row[1]}, frozenset(json.loads(row[3] or "[]"))) for row in rows)
        return op

    # ------------------------------------------------------------- adding

    async def add(self, spool: Spool, info: MessageInfo) -> str:
        """Store a spooled message durably; returns its ID (the spool is consumed)."""
        prepared = await asyncio.to_thread(self._prepare, spool, info)
        try:
            message_id = await self._write(lambda connection: self._insert(connection, prepared))
        except BaseException:
            if prepared.file_name is not None:
                unlink_quietly(os.path.join(self.files, prepared.file_name))
            raise
        self.accepted += 1
        self.accepted_size += prepared.size
        return message_id

    async def add_bytes(self, raw: bytes, info: MessageInfo | None = None) -> str:
        """Store a whole message given as bytes (CRLF or LF line endings)."""
        spool = Spool(os.path.join(self.files, "tmp"))
        spool.write(raw)
        return await self.add(spool, info or MessageInfo(sender=""))

    def _prepare(self, spool: Spool, info: MessageInfo) -> _Prepared:
        message_id = new_id()
        created = int((info.received or time.time()) * 1000)
        if spool.path is None:
            data = spool.take()
            return _Prepared(message_id, created, parse_message(data), info, len(data), data, None)
        name = f"{message_id}.eml"
        final = os.path.join(self.files, name)
        size = spool.finish_file(final)
        try:
            with open(final, "rb") as handle:
                if size:
                    with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                        parsed = parse_message(mapped)
                else:
                    parsed = parse_message(b"")
        except BaseException:
            unlink_quietly(final)
            raise
        return _Prepared(message_id, created, parsed, info, size, None, name)

    def _insert(self, connection: sqlite3.Connection, item: _Prepared) -> tuple[str, _Op]:
        parsed, info = item.parsed, item.info
        tags = tags_of(info, parsed)
        boxes = mailboxes_of(info)
        created_text = rfc3339(item.created / 1000)
        attachments = len(parsed.attachments)
        summary = {
            "MessageID": parsed.message_id,
            "From": parsed.from_,
            "To": parsed.to,
            "Cc": parsed.cc,
            "Bcc": parsed.bcc,
            "ReplyTo": parsed.reply_to,
            "Subject": parsed.subject,
            "Username": info.user or "",
            "Snippet": parsed.snippet,
        }
        detail = {
            "ReturnPath": parsed.return_path or info.sender,
            "ListUnsubscribe": parsed.list_unsubscribe,
            "Date": parsed.date or created_text,
            "Text": parsed.text,
            "HTML": parsed.html,
            "Inline": parsed.inline,
            "Attachments": parsed.attachments,
        }
        envelope = {
            "From": info.sender,
            "To": list(info.recipients),
            "ClientAddress": info.client_address,
            "ClientName": info.client_name,
            "Secure": info.secure,
            "ParseErrors": parsed.errors,
            "Truncated": parsed.truncated,
        }
        cursor = connection.execute(
            "INSERT INTO messages(id, created, message_id, subject, subject_lc, addr_from, addr_to, addr_cc, addr_bcc,"
            " addr_reply_to, size, attachments, inline, username, summary, detail, envelope, raw_file)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                item.id,
                item.created,
                parsed.message_id,
                parsed.subject,
                parsed.subject.lower(),
                address_text([parsed.from_]),
                address_text(parsed.to),
                address_text(parsed.cc),
                address_text(parsed.bcc),
                address_text(parsed.reply_to),
                item.size,
                attachments,
                len(parsed.inline),
                info.user or "",
                json.dumps(summary),
                json.dumps(detail),
                json.dumps(envelope),
                item.file_name,
            ),
        )
        seq = cursor.lastrowid
        if item.data is not None:
            connection.execute("INSERT INTO raw(seq, data) VALUES (?, ?)", (seq, item.data))
        connection.executemany("INSERT OR IGNORE INTO mailboxes(mailbox, seq) VALUES (?, ?)", [(b, seq) for b in boxes])
        connection.executemany("INSERT OR IGNORE INTO tags(tag, seq) VALUES (?, ?)", [(t, seq) for t in tags])
        connection.execute("INSERT INTO fts(rowid, text) VALUES (?, ?)", (seq, parsed.search_text))
        event_data = {
            "ID": item.id,
            **summary,
            "Read": False,
            "Created": created_text,
            "Tags": sorted(tags, key=str.lower),
            "Size": item.size,
            "Attachments": attachments,
        }
        return item.id, _Op(events=[Event("new", event_data, frozenset(boxes))])

    def subscribe(self) -> Subscription:
        """Events from now on (see `Event`); close the subscription when done."""
        return self.hub.subscribe()

    # ------------------------------------------------------------- changing

    async def set_read(
        self,
        ids: Iterable[str] | None,
        read: bool,
        *,
        query: str = "",
        mailbox: str | None = None,
        tz: tzinfo | None = None,
    ) -> int:
        """Mark messages read or unread: these IDs, or all matching ``query`` in ``mailbox``."""
        condition, params = self._condition(query, mailbox, tz, ids)

        def run(connection: sqlite3.Connection) -> tuple[int, _Op]:
            rows = connection.execute(
                f"SELECT m.seq, m.id, {MAILBOXES_OF} FROM messages m WHERE {condition} AND m.read != ?",
                [*params, int(read)],
            ).fetchall()
            connection.execute(
                "UPDATE messages SET read = ? WHERE seq IN (SELECT value FROM json_each(?))",
                (int(read), json.dumps([r[0] for r in rows])),
            )
            op = _Op()
            if len(rows) > 200:
                op.events.append(Event("prune"))
            else:
                op.events.extend(Event("update", {"ID": r[1], "Read": read}, mailbox_set(r[2])) for r in rows)
            return len(rows), op

        return await self._write(run)

    async def delete(
        self,
        ids: Iterable[str] | None = None,
        *,
        query: str = "",
        mailbox: str | None = None,
        tz: tzinfo | None = None,
    ) -> int:
        """Delete these IDs, or every message matching ``query`` in ``mailbox`` (all of
        them when neither is given); returns how many were deleted."""
        condition, params = self._condition(query, mailbox, tz, ids)
        everything = ids is None and not query and not mailbox

        def run(connection: sqlite3.Connection) -> tuple[int, _Op]:
            seqs = [r[0] for r in connection.execute(f"SELECT m.seq FROM messages m WHERE {condition}", params)]
            op = self._delete_seqs(connection, seqs, bulk_event="prune")
            if everything:
                op.events = [Event("truncate")]
            return len(seqs), op

        return await self._write(run)

    async def prune(self) -> int:
        """Apply the retention limits now; returns how many messages were removed."""

        def run(connection: sqlite3.Connection) -> tuple[int, _Op]:
            pruned = self._retention(connection)
            return (0, _Op()) if pruned is None else (pruned[1], pruned[0])

        return await self._write(run)

    async def _prune_periodically(self) -> None:
        interval = max(1.0, min(60.0, self.max_age / 10))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.prune()
            except Exception:  # a busy disk now: try again next time
                continue

    async def integrity_check(self) -> str:
        """``PRAGMA integrity_check``: ``"ok"`` when the database is sound."""
        return await self._read(lambda connection: str(connection.execute("PRAGMA integrity_check").fetchone()[0]))

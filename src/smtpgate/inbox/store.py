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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any, TypeVar

from ..sinks.base import MessageInfo
from .events import Event, Hub, Subscription
from .parse import ParsedMessage, find_part, header_map, parse_message, rfc3339
from .records import (
    RawMessage,
    address_text,
    mailboxes_of,
    new_id,
    part_chunks,
    summary_json,
    tags_of,
    with_buffer,
)
from .schema import SchemaError, connect
from .search import parse_query, to_sql
from .spool import Spool

__all__ = ["InboxStore", "StoreError", "RawMessage", "BLOB_LIMIT", "MAX_PAGE", "new_id"]

T = TypeVar("T")

BLOB_LIMIT = 256 * 1024
"""Raw messages up to this size live in the database; larger ones in files beside it."""
MAX_PAGE = 1000
"""The largest page of a listing."""
_BATCH = 128


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


class InboxStore:
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
        except (OSError, sqlite3.Error, SchemaError) as error:
            raise StoreError(f"cannot open inbox {self.path!r}: {error}") from None
        self._writer = threading.Thread(target=self._write_loop, args=(connection,), name="inbox-writer", daemon=True)
        self._writer.start()
        self._readers = concurrent.futures.ThreadPoolExecutor(self._readers_count, thread_name_prefix="inbox-read")
        if self.max_age:
            self._pruner = asyncio.ensure_future(self._prune_periodically())

    async def close(self) -> None:
        """Finish queued writes and close every connection."""
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

    def _prepare_files(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        os.makedirs(os.path.join(self.files, "tmp"), exist_ok=True)
        tmp = os.path.join(self.files, "tmp")
        for name in os.listdir(tmp):  # spools of deliveries a crash interrupted
            os.unlink(os.path.join(tmp, name))

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
        results: list[tuple[bool, Any, _Op]] = []
        extra = _Op()
        try:
            connection.execute("BEGIN IMMEDIATE")
            for function, _ in batch:
                connection.execute("SAVEPOINT op")
                try:
                    value, op = function(connection)
                    connection.execute("RELEASE op")
                    results.append((True, value, op))
                except Exception as error:
                    connection.execute("ROLLBACK TO op")
                    connection.execute("RELEASE op")
                    results.append((False, error, _Op()))
            pruned = self._retention(connection)
            if pruned is not None:
                extra = pruned[0]
            connection.execute("COMMIT")
        except Exception as error:
            try:
                connection.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            results = [(False, error, _Op())] * len(batch)
            extra = _Op()
        for _, _, op in [*results, (True, None, extra)]:
            for path in op.unlink:
                _unlink(path)
        if any(ok and op.events for ok, _, op in results) or extra.events:
            stats = self._stats_event(connection)
            if stats is not None:
                extra.events.append(stats)
        assert self._loop is not None
        for (_, future), (ok, value, op) in zip(batch, results, strict=True):
            self._loop.call_soon_threadsafe(self._settle, future, ok, value, op.events)
        if extra.events:
            self._loop.call_soon_threadsafe(self._publish, extra.events)

    def _publish(self, events: list[Event]) -> None:
        for event in events:
            self.hub.publish(event)

    def _settle(self, future: asyncio.Future[Any], ok: bool, value: Any, events: list[Event]) -> None:
        self._publish(events)
        if future.cancelled():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def _stats_event(self, connection: sqlite3.Connection) -> Event | None:
        try:
            total, unread = connection.execute("SELECT COUNT(*), COALESCE(SUM(read = 0), 0) FROM messages").fetchone()
        except sqlite3.Error:
            return None
        return Event("stats", {"Total": total, "Unread": unread, "Version": _version()})

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
            return await self._write(lambda connection: self._insert(connection, prepared))
        except BaseException:
            if prepared.file_name is not None:
                _unlink(os.path.join(self.files, prepared.file_name))
            raise

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
            _unlink(final)
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
        self.accepted += 1
        self.accepted_size += item.size
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

    # ------------------------------------------------------------- reading

    async def list_messages(
        self,
        *,
        query: str = "",
        mailbox: str | None = None,
        start: int = 0,
        limit: int = 50,
        tz: tzinfo | None = None,
        ids: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """A page of summaries, newest first, in Mailpit's ``MessagesSummary`` shape.
        ``query`` is Mailpit's search syntax (`SearchError` when malformed)."""
        condition, params = self._condition(query, mailbox, tz, ids)
        start = max(0, start)
        limit = max(1, min(limit, MAX_PAGE))

        def run(connection: sqlite3.Connection) -> dict[str, Any]:
            scope, scope_params = self._condition("", mailbox, tz, None)
            total, unread = connection.execute(
                f"SELECT COUNT(*), COALESCE(SUM(m.read = 0), 0) FROM messages m WHERE {scope}", scope_params
            ).fetchone()
            if condition == scope:
                count, count_unread = total, unread
            else:
                count, count_unread = connection.execute(
                    f"SELECT COUNT(*), COALESCE(SUM(m.read = 0), 0) FROM messages m WHERE {condition}", params
                ).fetchone()
            rows = connection.execute(
                "SELECT m.seq, m.id, m.created, m.read, m.size, m.attachments, m.summary FROM messages m"
                f" WHERE {condition} ORDER BY m.seq DESC LIMIT ? OFFSET ?",
                [*params, limit, start],
            ).fetchall()
            tags = self._tags_of(connection, [row[0] for row in rows])
            all_tags = [
                r[0]
                for r in connection.execute(
                    f"SELECT DISTINCT t.tag FROM tags t JOIN messages m ON m.seq = t.seq WHERE {scope}"
                    " ORDER BY t.tag COLLATE NOCASE",
                    scope_params,
                )
            ]
            messages = [summary_json(row, tags.get(row[0], [])) for row in rows]
            return {
                "total": total,
                "unread": unread,
                "count": len(messages),
                "messages_count": count,
                "messages_unread": count_unread,
                "start": start,
                "tags": all_tags,
                "messages": messages,
            }

        return await self._read(run)

    @staticmethod
    def _condition(
        query: str, mailbox: str | None, tz: tzinfo | None, ids: Iterable[str] | None
    ) -> tuple[str, list[object]]:
        kwargs = {"tz": tz} if tz is not None else {}
        condition, params = to_sql(parse_query(query), **kwargs)
        if mailbox:
            condition += " AND m.seq IN (SELECT seq FROM mailboxes WHERE mailbox = ?)"
            params.append(mailbox.strip().lower())
        if ids is not None:
            condition += " AND m.id IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(list(ids)))
        return condition, params

    @staticmethod
    def _tags_of(connection: sqlite3.Connection, seqs: list[int]) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        if seqs:
            for seq, tag in connection.execute(
                "SELECT seq, tag FROM tags WHERE seq IN (SELECT value FROM json_each(?)) ORDER BY tag COLLATE NOCASE",
                (json.dumps(seqs),),
            ):
                found.setdefault(seq, []).append(tag)
        return found

    def _resolve(self, connection: sqlite3.Connection, message_id: str, mailbox: str | None) -> tuple[Any, ...] | None:
        columns = "m.seq, m.id, m.created, m.read, m.size, m.attachments, m.summary, m.detail, m.envelope, m.raw_file"
        condition, params = self._condition("", mailbox, None, None)
        if message_id == "latest":
            sql = f"SELECT {columns} FROM messages m WHERE {condition} ORDER BY m.seq DESC LIMIT 1"
            result: tuple[Any, ...] | None = connection.execute(sql, params).fetchone()
        else:
            sql = f"SELECT {columns} FROM messages m WHERE m.id = ? AND {condition}"
            result = connection.execute(sql, [message_id, *params]).fetchone()
        return result

    async def get(
        self, message_id: str, *, mailbox: str | None = None, mark_read: bool = False
    ) -> dict[str, Any] | None:
        """A message in Mailpit's ``Message`` shape (``latest`` works), or None."""

        def run(connection: sqlite3.Connection) -> dict[str, Any] | None:
            row = self._resolve(connection, message_id, mailbox)
            if row is None:
                return None
            seq = row[0]
            summary = summary_json(row[:7], self._tags_of(connection, [seq]).get(seq, []))
            detail = json.loads(row[7])
            boxes = [r[0] for r in connection.execute("SELECT mailbox FROM mailboxes WHERE seq = ? ORDER BY 1", (seq,))]
            message = {key: summary[key] for key in ("ID", "MessageID", "From", "To", "Cc", "Bcc", "ReplyTo")}
            message.update(ReturnPath=detail["ReturnPath"], Subject=summary["Subject"])
            message.update(ListUnsubscribe=detail["ListUnsubscribe"], Date=detail["Date"], Tags=summary["Tags"])
            message.update(Username=summary["Username"], Text=detail["Text"], HTML=detail["HTML"])
            message.update(Size=summary["Size"], Inline=detail["Inline"], Attachments=detail["Attachments"])
            message.update(Read=summary["Read"], Mailboxes=boxes, Envelope=json.loads(row[8]))
            return message

        message = await self._read(run)
        if message is not None and mark_read and not message["Read"]:
            await self.set_read([message["ID"]], True)
        return message

    async def raw(self, message_id: str, *, mailbox: str | None = None) -> RawMessage | None:
        """The raw bytes (small) or the file path (large) of a message, or None."""

        def run(connection: sqlite3.Connection) -> RawMessage | None:
            row = self._resolve(connection, message_id, mailbox)
            if row is None:
                return None
            if row[9]:
                return RawMessage(row[1], row[4], path=os.path.join(self.files, row[9]))
            data = connection.execute("SELECT data FROM raw WHERE seq = ?", (row[0],)).fetchone()
            return RawMessage(row[1], row[4], data=bytes(data[0]) if data else b"")

        return await self._read(run)

    async def headers(self, message_id: str, *, mailbox: str | None = None) -> dict[str, list[str]] | None:
        """The top-level headers (name → values, sorted by name), or None."""
        raw = await self.raw(message_id, mailbox=mailbox)
        if raw is None:
            return None
        return await asyncio.to_thread(with_buffer, raw, header_map)

    async def part(
        self, message_id: str, part_id: str, *, mailbox: str | None = None
    ) -> tuple[dict[str, str], Iterator[bytes]] | None:
        """(``{"ContentType", "FileName"}``, decoded chunks) of one part, or None. The
        chunks must be consumed in a thread (they read the file)."""
        raw = await self.raw(message_id, mailbox=mailbox)
        if raw is None:
            return None

        def describe(buffer: Any) -> dict[str, str] | None:
            location = find_part(buffer, part_id)
            if location is None:
                return None
            try:
                name = location.headers.get_filename() or ""
            except Exception:
                name = ""
            return {"ContentType": location.content_type, "FileName": name}

        meta = await asyncio.to_thread(with_buffer, raw, describe)
        if meta is None:
            return None
        return meta, part_chunks(raw, part_id)

    async def mailboxes(self) -> list[dict[str, Any]]:
        """Every mailbox with its message and unread counts."""

        def run(connection: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = connection.execute(
                "SELECT b.mailbox, COUNT(*), COALESCE(SUM(m.read = 0), 0) FROM mailboxes b"
                " JOIN messages m ON m.seq = b.seq GROUP BY b.mailbox ORDER BY b.mailbox"
            ).fetchall()
            return [{"Mailbox": r[0], "Total": r[1], "Unread": r[2]} for r in rows]

        return await self._read(run)

    async def stats(self) -> dict[str, Any]:
        """Totals for ``/api/v1/info``."""

        def run(connection: sqlite3.Connection) -> dict[str, Any]:
            total, unread = connection.execute("SELECT COUNT(*), COALESCE(SUM(read = 0), 0) FROM messages").fetchone()
            tags = dict(connection.execute("SELECT tag, COUNT(*) FROM tags GROUP BY tag COLLATE NOCASE").fetchall())
            return {"Messages": total, "Unread": unread, "Tags": tags}

        result = await self._read(run)
        size = 0
        for suffix in ("", "-wal"):
            try:
                size += os.path.getsize(self.path + suffix)
            except OSError:
                pass
        result["DatabaseSize"] = size
        return result

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
                f"SELECT m.seq, m.id FROM messages m WHERE {condition} AND m.read != ?", [*params, int(read)]
            ).fetchall()
            connection.execute(
                "UPDATE messages SET read = ? WHERE seq IN (SELECT value FROM json_each(?))",
                (int(read), json.dumps([r[0] for r in rows])),
            )
            op = _Op()
            if len(rows) > 200:
                op.events.append(Event("prune"))
            else:
                op.events.extend(Event("update", {"ID": r[1], "Read": read}) for r in rows)
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


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("smtpgate")
    except Exception:
        return "0"

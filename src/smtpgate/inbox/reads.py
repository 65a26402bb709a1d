"""The store's read side: listings and searches, one message, its raw bytes, headers and
parts, mailboxes and totals. Every query runs on a reader connection in a thread."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from datetime import tzinfo
from typing import Any, TypeVar

from .parse import find_part, header_map
from .records import RawMessage, part_chunks, summary_json, with_buffer
from .search import parse_query, to_sql

__all__ = ["StoreReads", "MAX_PAGE"]

T = TypeVar("T")

MAX_PAGE = 1000
"""The largest page of a listing."""


class StoreReads:
    """Read methods of `InboxStore` (which provides `_read`, `path` and `files`)."""

    path: str
    files: str

    async def _read(self, function: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def list_messages(
        self,
        *,
        query: str = "",
        mailbox: str | None = None,
        start: int = 0,
        limit: int = 50,
        tz: tzinfo | None = None,
        ids: Iterable[str] | None = None,
        before: int | None = None,
        since: int | None = None,
        until: int | None = None,
    ) -> dict[str, Any]:
        """A page of summaries, newest first, in Mailpit's ``MessagesSummary`` shape.
        ``query`` is Mailpit's search syntax (`SearchError` when malformed); ``before``
        (exclusive), ``since`` and ``until`` (inclusive) bound the time received, in
        epoch milliseconds."""
        condition, params = self._condition(query, mailbox, tz, ids)
        for bound, operator in ((before, "<"), (since, ">="), (until, "<=")):
            if bound is not None:
                condition += f" AND m.created {operator} ?"
                params.append(bound)
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

    async def get(self, message_id: str, *, mailbox: str | None = None) -> dict[str, Any] | None:
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

        return await self._read(run)

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

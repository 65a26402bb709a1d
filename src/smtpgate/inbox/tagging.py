"""Editing tags, as Mailpit's ``PUT /api/v1/tags`` and ``PUT``/``DELETE /api/v1/tags/{tag}``.

Tag names are cleaned like Mailpit's: letters, digits, ``-``, ``.``, ``_`` and spaces are
kept, anything else is dropped, runs of spaces become one; names are unique regardless of
case. Every change is one write transaction of the store's writer thread.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable, Iterable
from datetime import tzinfo
from typing import TypeVar

from .events import Event

__all__ = ["StoreTags", "clean_tag", "clean_tags", "mailbox_set", "MAILBOXES_OF", "MAX_TAGS"]

T = TypeVar("T")

MAX_TAGS = 50
"""The most tags one message keeps."""
_SPACES = re.compile(r"\s+")
MAILBOXES_OF = "(SELECT json_group_array(b.mailbox) FROM mailboxes b WHERE b.seq = m.seq)"
"""SQL: the mailboxes of message ``m`` as a JSON array (for the events' mailbox filter)."""
_BULK = 200
"""More changed messages than this are announced with one ``prune`` event."""


def clean_tag(name: str) -> str:
    """``name`` with the characters Mailpit does not allow in a tag removed ("" if none are left)."""
    kept = "".join(ch for ch in name if ch.isascii() and (ch.isalnum() or ch in "-._ "))
    return _SPACES.sub(" ", kept).strip()


def clean_tags(names: Iterable[str]) -> list[str]:
    """Cleaned, without empties and case-insensitive duplicates, in the given order."""
    seen: dict[str, str] = {}
    for name in names:
        tag = clean_tag(name)
        if tag:
            seen.setdefault(tag.lower(), tag)
    return list(seen.values())[:MAX_TAGS]


class StoreTags:
    """Tag-editing methods of `InboxStore` (which provides `_change` and `_condition`)."""

    async def _change(self, function: Callable[[sqlite3.Connection], tuple[T, list[Event]]]) -> T:
        raise NotImplementedError

    @staticmethod
    def _condition(
        query: str, mailbox: str | None, tz: tzinfo | None, ids: Iterable[str] | None
    ) -> tuple[str, list[object]]:
        raise NotImplementedError

    async def set_tags(self, ids: Iterable[str], tags: Iterable[str], *, mailbox: str | None = None) -> int:
        """Replace the tags of these messages (an empty list removes them all); returns
        how many messages were found. Each gets an ``update`` event with its new tags."""
        wanted = clean_tags(tags)
        condition, params = self._condition("", mailbox, None, list(ids))

        def run(connection: sqlite3.Connection) -> tuple[int, list[Event]]:
            rows = connection.execute(
                f"SELECT m.seq, m.id, {MAILBOXES_OF} FROM messages m WHERE {condition}", params
            ).fetchall()
            seqs = json.dumps([row[0] for row in rows])
            connection.execute("DELETE FROM tags WHERE seq IN (SELECT value FROM json_each(?))", (seqs,))
            connection.executemany(
                "INSERT OR IGNORE INTO tags(tag, seq) VALUES (?, ?)", [(tag, row[0]) for row in rows for tag in wanted]
            )
            ordered = sorted(wanted, key=str.lower)
            return len(rows), _updates(rows, ordered)

        return await self._change(run)

    async def rename_tag(self, old: str, new: str) -> int:
        """Rename a tag on every message that has it (merging into ``new`` where it
        exists); returns how many messages had it. Sends one ``prune`` (reload), as Mailpit."""
        name = clean_tag(new)
        if not name:
            raise ValueError(f"invalid tag name {new!r}: use letters, digits, '-', '.', '_' and spaces")

        def run(connection: sqlite3.Connection) -> tuple[int, list[Event]]:
            seqs = [row[0] for row in connection.execute("SELECT seq FROM tags WHERE tag = ?", (old,))]
            payload = json.dumps(seqs)
            connection.execute(
                "DELETE FROM tags WHERE seq IN (SELECT value FROM json_each(?)) AND (tag = ? OR tag = ?)",
                (payload, old, name),
            )
            connection.executemany("INSERT INTO tags(tag, seq) VALUES (?, ?)", [(name, seq) for seq in seqs])
            return len(seqs), [Event("prune")] if seqs else []

        return await self._change(run)

    async def delete_tag(self, tag: str) -> int:
        """Remove a tag from every message (the messages stay); returns how many had it."""

        def run(connection: sqlite3.Connection) -> tuple[int, list[Event]]:
            count = connection.execute("DELETE FROM tags WHERE tag = ?", (tag,)).rowcount
            return count, [Event("prune")] if count else []

        return await self._change(run)


def mailbox_set(json_array: str | None) -> frozenset[str]:
    """The mailboxes from `MAILBOXES_OF`'s JSON array."""
    return frozenset(json.loads(json_array or "[]"))


def _updates(rows: list[tuple[int, str, str]], tags: list[str]) -> list[Event]:
    if len(rows) > _BULK:
        return [Event("prune")]
    return [Event("update", {"ID": row[1], "Tags": tags}, mailbox_set(row[2])) for row in rows]

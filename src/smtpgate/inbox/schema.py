"""The inbox database's schema, its migrations, and opening a connection.

The ``schema_version`` table records every migration applied; `connect` applies the
missing ones in one transaction when the store opens (a newer schema than this code
knows is refused).
"""

from __future__ import annotations

import sqlite3

__all__ = ["SCHEMA_VERSION", "SchemaError", "connect", "migrate"]

SCHEMA_VERSION = 1

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE messages(
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        created INTEGER NOT NULL,
        message_id TEXT NOT NULL,
        subject TEXT NOT NULL,
        subject_lc TEXT NOT NULL,
        addr_from TEXT NOT NULL,
        addr_to TEXT NOT NULL,
        addr_cc TEXT NOT NULL,
        addr_bcc TEXT NOT NULL,
        addr_reply_to TEXT NOT NULL,
        size INTEGER NOT NULL,
        attachments INTEGER NOT NULL,
        inline INTEGER NOT NULL,
        read INTEGER NOT NULL DEFAULT 0,
        username TEXT NOT NULL,
        summary TEXT NOT NULL,
        detail TEXT NOT NULL,
        envelope TEXT NOT NULL,
        raw_file TEXT
    );
    CREATE INDEX messages_created ON messages(created);
    CREATE TABLE raw(seq INTEGER PRIMARY KEY, data BLOB NOT NULL);
    CREATE TABLE mailboxes(mailbox TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY(mailbox, seq)) WITHOUT ROWID;
    CREATE INDEX mailboxes_seq ON mailboxes(seq);
    CREATE TABLE tags(tag TEXT NOT NULL COLLATE NOCASE, seq INTEGER NOT NULL, PRIMARY KEY(tag, seq)) WITHOUT ROWID;
    CREATE INDEX tags_seq ON tags(seq);
    CREATE VIRTUAL TABLE fts USING fts5(text, tokenize='trigram');
    """,
}


class SchemaError(Exception):
    """The database was written by a newer smtpgate."""


def connect(path: str, *, writer: bool) -> sqlite3.Connection:
    """A connection in WAL mode; the writer's syncs every commit (``synchronous=FULL``)
    and migrates the schema, readers are query-only."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    if writer:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        migrate(connection, path)
    else:
        connection.execute("PRAGMA query_only=ON")
    return connection


def migrate(connection: sqlite3.Connection, path: str) -> None:
    """Apply the migrations the database lacks (all or none)."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute("CREATE TABLE IF NOT EXISTS schema_version(version INTEGER NOT NULL)")
        row = connection.execute("SELECT MAX(version) FROM schema_version").fetchone()
        version = row[0] or 0
        if version > SCHEMA_VERSION:
            raise SchemaError(f"inbox {path!r} has schema version {version}, newer than this smtpgate's")
        for number in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[number].split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute("INSERT INTO schema_version(version) VALUES (?)", (number,))
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise

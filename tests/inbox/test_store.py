"""The store on its own: durability layout, mailboxes, retention, migrations, events."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from smtpgate.inbox import InboxStore, StoreError
from smtpgate.inbox.spool import Spool
from smtpgate.sinks import MessageInfo


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def mail(subject: str, body: bytes = b"body") -> bytes:
    return b"From: a@x.test\r\nTo: b@x.test\r\nSubject: " + subject.encode() + b"\r\n\r\n" + body + b"\r\n"


def test_small_in_database_large_in_files(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with InboxStore(str(tmp_path / "i.db")) as store:
            small = await store.add_bytes(mail("small"))
            large_body = b"x" * 76 + b"\r\n"
            large = await store.add_bytes(mail("large", large_body * 10_000))
            assert sorted(os.listdir(store.files)) == sorted(["lock", "tmp", f"{large}.eml"])
            raw_small = await store.raw(small)
            raw_large = await store.raw(large)
            assert raw_small is not None and raw_small.data is not None and raw_small.path is None
            assert raw_large is not None and raw_large.path is not None and raw_large.size > 256 * 1024
            assert raw_large.read() == mail("large", large_body * 10_000)
            assert await store.integrity_check() == "ok"

    run(scenario())


def test_data_survives_reopening_and_schema_is_versioned(tmp_path: Path) -> None:
    path = str(tmp_path / "i.db")

    async def add() -> str:
        async with InboxStore(path) as store:
            return await store.add_bytes(mail("kept"))

    async def read(message_id: str) -> Any:
        async with InboxStore(path) as store:
            return await store.get(message_id)

    message_id = run(add())
    assert run(read(message_id))["Subject"] == "kept"
    connection = sqlite3.connect(path)
    assert connection.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
    assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    connection.execute("INSERT INTO schema_version VALUES (99)")
    connection.commit()
    connection.close()
    with pytest.raises(StoreError, match="newer"):
        run(read(message_id))


def test_orphan_files_and_spools_are_removed_on_open(tmp_path: Path) -> None:
    path = str(tmp_path / "i.db")

    async def scenario() -> None:
        async with InboxStore(path) as store:
            await store.add_bytes(mail("x"))
        Path(path + ".d", "orphan.eml").write_bytes(b"never committed")
        Path(path + ".d", "tmp", "half.spool").write_bytes(b"interrupted")
        async with InboxStore(path) as store:
            assert (
                sorted(os.listdir(store.files)) == ["lock", "tmp"]
                and os.listdir(os.path.join(store.files, "tmp")) == []
            )
            assert (await store.list_messages())["total"] == 1

    run(scenario())


def test_one_store_per_inbox_at_a_time(tmp_path: Path) -> None:
    async def scenario() -> None:
        path = str(tmp_path / "i.db")
        async with InboxStore(path):
            with pytest.raises(StoreError, match="in use by another process"):
                await InboxStore(path).open()
        async with InboxStore(path) as store:  # released on close
            assert (await store.list_messages())["total"] == 0

    run(scenario())


def test_mailboxes_tags_and_auth_user(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with InboxStore(str(tmp_path / "i.db")) as store:
            info = MessageInfo("s@x.test", ("Ann+News@X.test", "bob@x.test"), user="Carol")
            message_id = await store.add_bytes(mail("t"), info)
            boxes = {b["Mailbox"] for b in await store.mailboxes()}
            assert boxes == {"ann+news@x.test", "ann@x.test", "bob@x.test", "carol"}
            message = await store.get(message_id)
            assert message["Tags"] == ["News"] and message["Username"] == "Carol"
            assert (await store.list_messages(mailbox="carol"))["total"] == 1
            assert (await store.list_messages(mailbox="nobody@x.test"))["total"] == 0

    run(scenario())


def test_retention_by_count_and_age(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with InboxStore(str(tmp_path / "i.db"), max_messages=3) as store:
            for number in range(5):
                await store.add_bytes(mail(f"m{number}", b"y" * 300_000))
            page = await store.list_messages()
            assert [m["Subject"] for m in page["messages"]] == ["m4", "m3", "m2"]
            assert len(os.listdir(store.files)) == 5  # lock, tmp and three large files
        async with InboxStore(str(tmp_path / "j.db"), max_age=3600) as store:
            old = MessageInfo("", ("a@x.test",), received=1.0)
            await store.add_bytes(mail("ancient"), old)
            await store.add_bytes(mail("fresh"))
            assert [m["Subject"] for m in (await store.list_messages())["messages"]] == ["fresh"]

    run(scenario())


def test_events(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        async with InboxStore(str(tmp_path / "i.db")) as store:
            with store.subscribe() as subscription:
                message_id = await store.add_bytes(mail("e"), MessageInfo("", ("a@x.test",)))
                await store.set_read([message_id], True)
                await store.delete([message_id])
                await store.add_bytes(mail("f"))
                await store.delete()
                seen = []
                while len([t for t in seen if t != "stats"]) < 5:
                    event = await asyncio.wait_for(subscription.get(), 10)
                    seen.append(event.type)
                    if event.type == "new":
                        assert event.data["Subject"] in ("e", "f")
                return [t for t in seen if t != "stats"]

    assert run(scenario()) == ["new", "update", "delete", "new", "truncate"]


def test_spool_moves_to_a_file_past_its_limit(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path), memory_limit=10)
    spool.write(b"12345")
    assert spool.path is None
    spool.write(b"678901")
    assert spool.path is not None and os.path.exists(spool.path)
    spool.discard()
    assert os.listdir(tmp_path) == []


def test_a_failing_insert_does_not_fail_the_batch(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with InboxStore(str(tmp_path / "i.db")) as store:

            def broken(connection: Any) -> Any:
                connection.execute("INSERT INTO no_such_table VALUES (1)")

            results = await asyncio.gather(
                store.add_bytes(mail("a")), store._write(broken), store.add_bytes(mail("b")), return_exceptions=True
            )
            assert isinstance(results[1], sqlite3.OperationalError)
            assert (await store.list_messages())["total"] == 2

    run(scenario())

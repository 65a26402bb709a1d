"""Many SMTP sessions storing while the API lists, searches and prunes."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from inbox_support import AppThread, make_message

from smtpgate.inbox.client import InboxError


def run_threads(targets: list[Any], timeout: float = 120) -> list[BaseException]:
    errors: list[BaseException] = []

    def guard(target: Any) -> None:
        try:
            target()
        except BaseException as error:  # collected and reported by the test
            errors.append(error)

    threads = [threading.Thread(target=guard, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return errors


def test_storing_while_listing_and_searching(inbox_app: AppThread) -> None:
    senders, per_sender = 8, 15
    done = threading.Event()
    seen_totals: list[int] = []

    def sender(number: int) -> None:
        for index in range(per_sender):
            inbox_app.send(make_message(f"load {number}-{index}", body=f"payload {number} {index}"))

    def reader() -> None:
        client = inbox_app.client()
        for _ in range(2000):
            if done.is_set():
                return
            seen_totals.append(client.messages(limit=20)["total"])
            client.search("payload -subject:nothing")
            time.sleep(0.005)

    reader_thread_errors: list[BaseException] = []
    reader_thread = threading.Thread(target=lambda: reader_thread_errors.extend(run_threads([reader], 300)))
    reader_thread.start()
    errors = run_threads([lambda n=n: sender(n) for n in range(senders)], 300)
    done.set()
    reader_thread.join(60)
    assert errors == [] and reader_thread_errors == []
    assert seen_totals == sorted(seen_totals)  # the total never goes back
    client = inbox_app.client()
    assert client.messages()["total"] == senders * per_sender
    assert client.search('"payload 3 "')["messages_count"] == per_sender


def test_two_mailboxes_stay_isolated_under_parallel_load(inbox_app: AppThread) -> None:
    def test_like_user(name: str) -> None:
        mailbox = f"{name}-{threading.get_ident()}@test.example"
        client = inbox_app.client().for_mailbox(mailbox)
        for index in range(12):
            inbox_app.send(make_message(f"{name} {index}", to=mailbox), to=[mailbox])
            found = client.wait_for(f'subject:"{name} {index}"', timeout=30)
            assert found["Subject"] == f"{name} {index}"
        subjects = {m["Subject"] for m in client.messages(limit=100)["messages"]}
        assert subjects == {f"{name} {i}" for i in range(12)}
        client.delete()
        assert client.messages()["total"] == 0

    errors = run_threads([lambda: test_like_user("alpha"), lambda: test_like_user("beta")])
    assert errors == []


def test_retention_prunes_while_reading(inbox_app_factory: Any) -> None:
    app = inbox_app_factory(inbox_max_messages=10)
    done = threading.Event()
    not_found = []

    def sender() -> None:
        for index in range(60):
            app.send(make_message(f"r{index}", body="z" * (300_000 if index % 7 == 0 else 10)))

    def reader() -> None:
        client = app.client()
        for _ in range(3000):
            if done.is_set():
                return
            for summary in client.messages(limit=5)["messages"]:
                try:
                    assert client.raw(summary["ID"]).startswith(b"Return-Path:")
                    client.message(summary["ID"])
                except InboxError as error:  # pruned between the listing and the read
                    assert error.status == 404
                    not_found.append(summary["ID"])

    reader_errors: list[BaseException] = []
    reading = threading.Thread(target=lambda: reader_errors.extend(run_threads([reader], 300)))
    reading.start()
    errors = run_threads([sender])
    done.set()
    reading.join(60)
    assert errors == [] and reader_errors == []
    page = app.client().messages(limit=100)
    assert page["total"] == 10 and [m["Subject"] for m in page["messages"]] == [f"r{i}" for i in range(59, 49, -1)]
    assert app.call(app.store.integrity_check()) == "ok"
    files = [name for name in os.listdir(app.store.files) if name.endswith(".eml")]
    assert len(files) == sum(1 for i in range(50, 60) if i % 7 == 0)  # pruned messages' files are gone

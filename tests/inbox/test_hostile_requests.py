"""Hostile requests to the API: every one gets a clear answer (JSON, the right status),
nothing is changed by a refused request, and the server keeps serving."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.parse
from typing import Any

from inbox_support import AppThread, make_message
from test_api import http

from smtpgate.inbox.store import MAX_PAGE


def error_of(response: tuple[int, dict[str, str], bytes]) -> tuple[int, str]:
    status, headers, body = response
    assert headers["Content-Type"].startswith("application/json"), (status, body[:200])
    return status, str(json.loads(body)["Error"])


def search(query: str) -> str:
    return "/api/v1/search?query=" + urllib.parse.quote(query)


def test_unknown_ids_and_part_traversal_are_json_404(inbox_app: AppThread) -> None:
    message = make_message("Parts")
    message.add_attachment(b"secret-ish", maintype="application", subtype="octet-stream", filename="a.bin")
    inbox_app.send(message)
    known = inbox_app.client().messages()["messages"][0]["ID"]
    for path in (
        "/api/v1/message/nope",
        "/api/v1/message/nope/headers",
        "/api/v1/message/nope/raw",
        "/api/v1/message/nope/part/1",
        "/view/nope.txt",
        "/api/v1/message/..%2F..%2Finbox.sqlite3/raw",
        "/api/v1/message/%00/raw",
        "/api/v1/message/" + "x" * 5000,
    ):
        assert error_of(http(inbox_app, "GET", path)) == (
            404,
            "message not found" if "part" not in path else "message or part not found",
        ), path
    for part in (
        "0",
        "3",
        "-1",
        "2%00",
        "..%2F..%2Fetc%2Fpasswd",
        "1%2F..%2F..",
        "99999999999999999999999",
        ".".join(["1"] * 2000),
        "%2E%2E",
        "2.1.1",
    ):
        status, text = error_of(http(inbox_app, "GET", f"/api/v1/message/{known}/part/{part}"))
        assert (status, text) == (404, "message or part not found"), part
    assert http(inbox_app, "GET", f"/api/v1/message/{known}/part/2")[2] == b"secret-ish"


def test_malformed_searches_are_400_naming_the_problem(inbox_app: AppThread) -> None:
    cases = {
        '"open': "unterminated quote at position 1",
        "is:maybe": "unknown is: value 'maybe'",
        "from:": "from: needs a value",
        "before:soon": "invalid date 'soon'",
        "larger:huge": "invalid size 'huge'",
        "a" * 2001: "query too long (2001 characters, at most 2000)",
        " ".join(f"w{i}" for i in range(51)): "too many search terms (at most 50)",
    }
    for query, problem in cases.items():
        for method in ("GET", "DELETE"):
            status, text = error_of(http(inbox_app, method, search(query)))
            assert status == 400 and text.startswith("invalid search: ") and problem in text, (query, text)
    status, text = error_of(http(inbox_app, "GET", "/api/v1/search"))
    assert status == 400 and "query" in text
    for path, name in (
        ("/api/v1/messages?start=x", "start"),
        ("/api/v1/messages?limit=-1", "limit"),
        ("/api/v1/search?query=a&tz=Mars/Base", "time zone"),
        ("/api/v1/wait?timeout=nan", "timeout"),
    ):
        status, text = error_of(http(inbox_app, "GET", path))
        assert status == 400 and name in text, path
    status, text = error_of(http(inbox_app, "GET", "/api/v1/messages?start=" + "9" * 5000))
    assert status == 400 and len(text) < 120  # the value is not echoed whole


def test_huge_numbers_are_capped_not_errors(inbox_app: AppThread) -> None:
    async def fill() -> None:
        raw = b"From: a@x.test\r\nTo: b@x.test\r\nSubject: bulk\r\n\r\nbody\r\n"
        await asyncio.gather(*(inbox_app.store.add_bytes(raw) for _ in range(MAX_PAGE + 5)))

    inbox_app.call(fill(), timeout=120)
    for limit in ("5000", "99999999999999999999999999"):
        status, _, body = http(inbox_app, "GET", f"/api/v1/messages?limit={limit}")
        page = json.loads(body)
        assert status == 200 and len(page["messages"]) == MAX_PAGE and page["messages_count"] == MAX_PAGE + 5
    status, _, body = http(inbox_app, "GET", "/api/v1/messages?start=99999999999999999999999")
    assert status == 200 and json.loads(body)["messages"] == []
    status, _, body = http(inbox_app, "GET", search("larger:99999999999999999999999999k"))
    assert status == 200 and json.loads(body)["messages_count"] == 0


def test_bad_bodies_are_400_and_change_nothing(inbox_app: AppThread) -> None:
    inbox_app.send(make_message("Keep me"))
    bodies: list[Any] = [b"{bad", b"\xff\xfe", b"[" * 5000 + b"]" * 5000, b"[1, 2]", b'"text"', b"{" * 100_000]
    for path, method in (
        ("/api/v1/messages", "PUT"),
        ("/api/v1/messages", "DELETE"),
        ("/api/v1/tags", "PUT"),
        ("/api/v1/tags/x", "PUT"),
        ("/api/v1/chaos", "PUT"),
        ("/api/v1/send", "POST"),
    ):
        for body in bodies:
            status, text = error_of(http(inbox_app, method, path, body, {"Content-Type": "application/json"}))
            assert status == 400 and ("JSON" in text or "UTF-8" in text), (method, path, body[:20], text)
    status, text = error_of(http(inbox_app, "PUT", "/api/v1/messages", b"", {"Content-Type": "application/json"}))
    assert (status, text) == (400, "expected a JSON body")
    page = inbox_app.client().messages()
    assert page["total"] == 1 and page["unread"] == 1  # nothing was deleted or marked


def test_long_urls_and_unicode_searches(inbox_app: AppThread) -> None:
    inbox_app.send(make_message("Grüße aus 東京 😀 CAFÉ", body="Ünïcödé body ΣΊΣΥΦΟΣ"))
    for query in ("東京", "grüße", "café", "😀", "ünïcödé", "σίσυφος", 'subject:"aus 東京"', "東", "-東京x"):
        status, _, body = http(inbox_app, "GET", search(query))
        assert status == 200 and json.loads(body)["messages_count"] == 1, query
    assert http(inbox_app, "GET", search("\x00"))[0] == 200
    for query in ("\ufffd\ufffd", "a OR b AND (c)", "%_\\", "' OR 1=1 --"):
        status, _, body = http(inbox_app, "GET", search(query))
        assert status == 200 and json.loads(body)["messages_count"] == 0, query
    status, _, body = http(inbox_app, "GET", "/api/v1/search?query=%ff%fe")  # not UTF-8 in the URL
    assert status == 200
    status, text = error_of(http(inbox_app, "GET", search("x" * 30_000)))  # a long URL: still our JSON
    assert status == 400 and "query too long" in text
    status, _, _ = http(inbox_app, "GET", "/api/v1/messages?pad=" + "x" * 70_000)  # beyond any limit
    assert status in (400, 414)
    assert http(inbox_app, "GET", "/api/v1/messages")[0] == 200  # and the server goes on


def test_deletes_while_listing(inbox_app: AppThread) -> None:
    async def fill() -> list[str]:
        raw = b"From: a@x.test\r\nTo: b@x.test\r\nSubject: %d\r\n\r\nbody\r\n"
        return list(await asyncio.gather(*(inbox_app.store.add_bytes(raw % i) for i in range(300))))

    ids = inbox_app.call(fill(), timeout=120)
    failures: list[Any] = []
    stop = threading.Event()

    def reader(path: str) -> None:
        while not stop.is_set():
            status, _, body = http(inbox_app, "GET", path)
            page = json.loads(body)
            if status != 200 or len(page["messages"]) > page["messages_count"]:
                failures.append((path, status, body[:200]))

    readers = [threading.Thread(target=reader, args=(p,)) for p in ("/api/v1/messages?limit=100", search("body"))]
    for thread in readers:
        thread.start()
    try:
        for start in range(0, 200, 20):  # by ID, some twice and some unknown
            chunk = ids[start : start + 20] + ids[max(0, start - 5) : start] + ["unknown"]
            assert http(inbox_app, "DELETE", "/api/v1/messages", {"IDs": chunk})[0] == 200
            status, _, body = http(inbox_app, "GET", f"/api/v1/message/{ids[start]}")
            assert status == 404
        assert http(inbox_app, "DELETE", search("subject:1"))[0] == 200  # and by search, at once
    finally:
        stop.set()
        for thread in readers:
            thread.join(30)
    assert failures == []
    left = {m["ID"] for m in inbox_app.client().messages(limit=1000)["messages"]}
    expected = {i for n, i in enumerate(ids) if n >= 200 and "1" not in str(n)}
    assert left == expected
    assert inbox_app.call(inbox_app.store.integrity_check()) == "ok"

"""The HTTP API over real HTTP: Mailpit's shapes and status codes, mailboxes, wait."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from inbox_support import AppThread, make_message

from smtpgate.inbox.client import InboxError, InboxTimeout


def http(
    app: AppThread, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(app.url + path, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_list_and_message_shapes(inbox_app: AppThread) -> None:
    message = make_message(
        "Shapes", to="Recipient <rcpt@example.test>", Cc="cc@example.test", Reply_To="r@example.test"
    )
    message.add_alternative("<p>Hello <b>HTML</b></p>", subtype="html")
    message.add_attachment(b"%PDF-1.4 data", maintype="application", subtype="pdf", filename="doc.pdf")
    inbox_app.send(message, to=["rcpt@example.test"])
    client = inbox_app.client()
    page = client.messages()
    assert page["total"] == 1 and page["unread"] == 1 and page["messages_count"] == 1 and page["start"] == 0
    summary = page["messages"][0]
    assert set(summary) >= {"ID", "MessageID", "Read", "From", "To", "Cc", "Bcc", "ReplyTo", "Subject", "Created"}
    assert summary["From"] == {"Name": "Sender Name", "Address": "from@example.test"}
    assert summary["To"] == [{"Name": "Recipient", "Address": "rcpt@example.test"}]
    assert summary["Cc"] == [{"Name": "", "Address": "cc@example.test"}]
    assert summary["ReplyTo"] == [{"Name": "", "Address": "r@example.test"}]
    assert summary["Subject"] == "Shapes" and summary["Read"] is False and summary["Attachments"] == 1
    assert summary["Snippet"] == "Hello there"
    assert summary["Size"] > 0
    full = client.message(summary["ID"])
    assert full["Text"].strip() == "Hello there"
    assert "<b>HTML</b>" in full["HTML"]
    attachment = full["Attachments"][0]
    assert attachment["FileName"] == "doc.pdf" and attachment["ContentType"] == "application/pdf"
    assert attachment["Size"] == len(b"%PDF-1.4 data")
    assert client.part(summary["ID"], attachment["PartID"]) == b"%PDF-1.4 data"
    assert client.messages()["messages"][0]["Read"] is True  # GET message marks it read
    assert client.message("latest")["ID"] == summary["ID"]
    headers = client.headers(summary["ID"])
    assert headers["Subject"] == ["Shapes"] and list(headers) == sorted(headers)
    raw = client.raw(summary["ID"])
    assert b"Subject: Shapes" in raw and raw.startswith(b"Return-Path: <from@example.test>")


def test_unknown_id_is_404_json(inbox_app: AppThread) -> None:
    for path in (
        "/api/v1/message/nope",
        "/api/v1/message/nope/raw",
        "/api/v1/message/nope/headers",
        "/api/v1/message/latest",
        "/api/v1/message/nope/part/1",
    ):
        status, headers, body = http(inbox_app, "GET", path)
        assert status == 404, path
        assert headers["Content-Type"].startswith("application/json")
        assert json.loads(body)["Error"]


def test_malformed_search_is_400_naming_the_problem(inbox_app: AppThread) -> None:
    status, _, body = http(inbox_app, "GET", "/api/v1/search?query=" + urllib.request.quote('subject:"open'))
    assert status == 400 and "unterminated quote" in json.loads(body)["Error"]
    status, _, body = http(inbox_app, "GET", "/api/v1/search?query=is:maybe")
    assert status == 400 and "is:maybe" not in body.decode() and "'maybe'" in json.loads(body)["Error"]
    status, _, body = http(inbox_app, "GET", "/api/v1/search?query=before:someday")
    assert status == 400 and "invalid date" in json.loads(body)["Error"]
    status, _, body = http(inbox_app, "GET", "/api/v1/search")
    assert status == 400 and "query" in json.loads(body)["Error"]
    status, _, body = http(inbox_app, "GET", "/api/v1/messages?limit=many")
    assert status == 400 and "limit" in json.loads(body)["Error"]


def test_page_size_is_capped(inbox_app: AppThread) -> None:
    for number in range(3):
        inbox_app.send(make_message(f"m{number}"))
    page = inbox_app.client().messages(limit=10**9)
    assert page["count"] == 3
    page = inbox_app.client().messages(limit=2, start=1)
    assert [m["Subject"] for m in page["messages"]] == ["m1", "m0"]


def test_search_syntax(inbox_app: AppThread) -> None:
    inbox_app.send(make_message("Invoice 42", to="billing@example.test", body="Total due: 10 EUR"))
    inbox_app.send(make_message("Welcome aboard", to="new+signup@example.test", body="Glad you joined"))
    inbox_app.send(make_message("Invoice 43", to="billing@example.test", body="Paid, thanks"))
    client = inbox_app.client()

    def subjects(query: str) -> list[str]:
        return [m["Subject"] for m in client.search(query)["messages"]]

    assert subjects("invoice") == ["Invoice 43", "Invoice 42"]
    assert subjects("invoice -paid") == ["Invoice 42"]
    assert subjects('"due: 10"') == ["Invoice 42"]
    assert subjects("to:new") == ["Welcome aboard"]
    assert subjects("tag:signup") == ["Welcome aboard"]
    assert subjects('subject:"invoice 43"') == ["Invoice 43"]
    assert subjects("is:unread from:from@example.test") == ["Invoice 43", "Welcome aboard", "Invoice 42"]
    assert subjects("has:attachment") == []
    assert subjects("before:2000-01-01") == []
    result = client.search("invoice")
    assert result["messages_count"] == 2 and result["total"] == 3


def test_mailboxes_scope_listing_search_delete(inbox_app: AppThread) -> None:
    inbox_app.send(make_message("for a"), to=["a-123@test.example"])
    inbox_app.send(make_message("for b"), to=["b-456@test.example"])
    inbox_app.send(make_message("for a plus"), to=["a-123+x@test.example"])
    client = inbox_app.client()
    a = client.for_mailbox("A-123@test.example")
    assert [m["Subject"] for m in a.messages()["messages"]] == ["for a plus", "for a"]
    assert a.messages()["total"] == 2
    assert [m["Subject"] for m in a.search("for")["messages"]] == ["for a plus", "for a"]
    boxes = {box["Mailbox"]: box["Total"] for box in client.mailboxes()}
    assert boxes == {"a-123@test.example": 2, "a-123+x@test.example": 1, "b-456@test.example": 1}
    a.delete()
    assert [m["Subject"] for m in client.messages()["messages"]] == ["for b"]


def test_set_read_and_delete(inbox_app: AppThread) -> None:
    for subject in ("one", "two", "three"):
        inbox_app.send(make_message(subject))
    client = inbox_app.client()
    ids = {m["Subject"]: m["ID"] for m in client.messages()["messages"]}
    client.mark_read([ids["one"]])
    assert client.messages()["unread"] == 2
    client.mark_read(query="subject:two")
    assert client.search("is:read")["messages_count"] == 2
    client.mark_read(read=False)
    assert client.messages()["unread"] == 3
    client.delete([ids["two"]])
    assert client.messages()["total"] == 2
    client.delete(query="subject:three")
    assert [m["Subject"] for m in client.messages()["messages"]] == ["one"]
    client.delete()
    assert client.messages()["total"] == 0
    with pytest.raises(InboxError) as caught:
        client.mark_read([ids["one"]], query="x")
    assert caught.value.status == 400


def test_wait_returns_present_message_at_once(inbox_app: AppThread) -> None:
    inbox_app.send(make_message("ready", to="w@example.test"))
    started = time.monotonic()
    found = inbox_app.client().wait_for("subject:ready", timeout=30)
    assert found["Subject"] == "ready" and found["Text"].strip() == "Hello there"
    assert time.monotonic() - started < 20


def test_wait_returns_message_as_it_arrives(inbox_app: AppThread) -> None:
    client = inbox_app.client().for_mailbox("late@example.test")
    result: dict[str, Any] = {}

    def waiter() -> None:
        result["message"] = client.wait_for("subject:code", timeout=60)

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.5)
    inbox_app.send(make_message("your code", to="other@example.test"))  # another mailbox: ignored
    inbox_app.send(make_message("no match", to="late@example.test"))
    inbox_app.send(make_message("your code 7", to="late@example.test"))
    thread.join(60)
    assert result["message"]["Subject"] == "your code 7"


def test_wait_times_out_with_404_not_a_retried_status(inbox_app: AppThread) -> None:
    status, _, body = http(inbox_app, "GET", "/api/v1/wait?query=subject:never&timeout=0.3")
    assert status == 404
    data = json.loads(body)
    assert data["Timeout"] is True and "never" in data["Error"]
    with pytest.raises(InboxTimeout):
        inbox_app.client().wait_for("subject:never", timeout=0.2)
    status, _, body = http(inbox_app, "GET", "/api/v1/wait?timeout=100000")
    assert status == 400 and "timeout" in json.loads(body)["Error"]


def test_cross_site_writes_are_refused(inbox_app: AppThread) -> None:
    inbox_app.send(make_message("keep me"))
    for headers in ({"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
        status, _, body = http(inbox_app, "DELETE", "/api/v1/messages", b"{}", headers)
        assert status == 403 and "cross-site" in json.loads(body)["Error"]
        status, _, _ = http(inbox_app, "PUT", "/api/v1/messages", {"Read": True}, headers)
        assert status == 403
    assert inbox_app.client().messages()["total"] == 1
    same = {"Origin": inbox_app.url, "Sec-Fetch-Site": "same-origin"}
    status, _, body = http(inbox_app, "DELETE", "/api/v1/messages", b"{}", same)
    assert status == 200 and body == b"ok"
    assert inbox_app.client().messages()["total"] == 0


def test_raw_and_parts_cannot_run_in_the_api_origin(inbox_app: AppThread) -> None:
    message = make_message("html attachment")
    message.add_attachment("<script>alert(1)</script>", subtype="html", filename="x.html")
    inbox_app.send(message)
    found = inbox_app.client().message()
    part = found["Attachments"][0]["PartID"]
    status, headers, body = http(inbox_app, "GET", f"/api/v1/message/{found['ID']}/part/{part}")
    assert status == 200 and b"<script>" in body
    assert "sandbox" in headers["Content-Security-Policy"] and headers["X-Content-Type-Options"] == "nosniff"
    status, headers, _ = http(inbox_app, "GET", f"/api/v1/message/{found['ID']}/raw")
    assert headers["Content-Type"].startswith("text/plain") and headers["X-Content-Type-Options"] == "nosniff"
    html = make_message("html body")
    html.add_alternative('<p onmouseover="x()">hi</p><script>alert(1)</script>', subtype="html")
    inbox_app.send(html)
    status, headers, body = http(inbox_app, "GET", "/view/latest.html")
    assert status == 200 and b"<p" in body and headers["Content-Security-Policy"].startswith("sandbox")
    assert b"alert(1)" not in body and b"onmouseover" not in body  # the UI's view drops scripts too
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    status, _, body = http(inbox_app, "GET", "/view/latest.txt")
    assert status == 200 and body.strip() == b"Hello there"


def test_chaos_triggers_refuse_over_smtp(inbox_app: AppThread) -> None:
    client = inbox_app.client()
    assert client.chaos()["Sender"] == {"ErrorCode": 451, "Probability": 0}
    updated = client.chaos({"Recipient": {"ErrorCode": 550, "Probability": 100}})
    assert updated["Recipient"] == {"ErrorCode": 550, "Probability": 100}
    with pytest.raises(smtplib_errors()) as caught:
        inbox_app.send(make_message("refused"))
    assert "550" in str(caught.value)
    with pytest.raises(InboxError) as bad:
        client.chaos({"Sender": {"ErrorCode": 200, "Probability": 5}})
    assert bad.value.status == 400 and "ErrorCode" in bad.value.text
    client.chaos({})
    inbox_app.send(make_message("accepted"))
    assert client.messages()["total"] == 1


def smtplib_errors() -> tuple[type[Exception], ...]:
    import smtplib

    return (smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException)


def test_info(inbox_app: AppThread) -> None:
    inbox_app.send(make_message("x", to="t+tagged@example.test"))
    info = inbox_app.client().info()
    assert info["Messages"] == 1 and info["Unread"] == 1 and info["Tags"] == {"tagged": 1}
    assert info["Database"].endswith("inbox.sqlite3") and info["DatabaseSize"] > 0
    assert info["RuntimeStats"]["SMTPAccepted"] >= 1


def test_events_websocket(inbox_app: AppThread) -> None:
    import asyncio

    import aiohttp

    async def scenario() -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(inbox_app.url + "/api/events?mailbox=ws@example.test") as socket:
                await asyncio.to_thread(inbox_app.send, make_message("elsewhere"), to=["x@example.test"])
                await asyncio.to_thread(inbox_app.send, make_message("live"), to=["ws@example.test"])
                client = inbox_app.client()
                await asyncio.to_thread(client.delete, query="subject:live")
                deadline = asyncio.get_running_loop().time() + 30
                while not {"delete", "stats"} <= {event["Type"] for event in seen}:
                    remaining = deadline - asyncio.get_running_loop().time()
                    message = await socket.receive(timeout=max(0.1, remaining))
                    seen.append(json.loads(message.data))
        return seen

    events = asyncio.run(scenario())
    new = [e for e in events if e["Type"] == "new"]
    assert [e["Data"]["Subject"] for e in new] == ["live"]  # the other mailbox's message is filtered out
    assert new[0]["Data"]["Read"] is False and new[0]["Data"]["ID"]
    assert any(e["Type"] == "stats" and e["Data"]["Total"] >= 1 for e in events)
    assert [e["Data"]["ID"] for e in events if e["Type"] == "delete"] == [new[0]["Data"]["ID"]]


def test_websocket_from_another_origin_is_refused(inbox_app: AppThread) -> None:
    status, _, body = http(
        inbox_app,
        "GET",
        "/api/events",
        headers={"Origin": "http://evil.example", "Connection": "Upgrade", "Upgrade": "websocket"},
    )
    assert status == 403


def test_basic_auth(inbox_app_factory: Any, tmp_path: Any) -> None:
    from smtpgate.cli.passwords import hash_password

    auth_file = tmp_path / "http-users"
    auth_file.write_text(f"alice:{hash_password('s3cret', n=2**10)}\n")
    app = inbox_app_factory(http_auth_file=str(auth_file))
    status, headers, body = http(app, "GET", "/api/v1/messages")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic") and json.loads(body)["Error"]
    with pytest.raises(InboxError) as caught:
        app.client(auth=("alice", "wrong")).messages()
    assert caught.value.status == 401
    assert app.client(auth=("alice", "s3cret")).messages()["total"] == 0
    auth_file.write_text(f"bob:{hash_password('other', n=2**10)}\n")
    app.loop.call_soon_threadsafe(app.app.reload)  # what SIGHUP does
    deadline = time.monotonic() + 10
    while app.app.http_users is not None and "bob" not in app.app.http_users and time.monotonic() < deadline:
        time.sleep(0.01)
    assert app.client(auth=("bob", "other")).messages()["total"] == 0
    with pytest.raises(InboxError):
        app.client(auth=("alice", "s3cret")).messages()


def test_root_is_a_plain_404_until_the_ui_exists(inbox_app: AppThread) -> None:
    import importlib.util

    status, _, _ = http(inbox_app, "GET", "/")
    if importlib.util.find_spec("smtpgate.inbox.ui") is None:
        assert status == 404
    else:
        assert status == 200


def test_a_full_inbox_answers_452_and_keeps_what_it_has(inbox_app: AppThread) -> None:
    import smtplib

    inbox_app.send(make_message("before"))

    def limit(connection: Any) -> tuple[None, Any]:
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.execute(f"PRAGMA max_page_count = {pages + 1}")
        return None, _no_op()

    inbox_app.call(inbox_app.store._write(limit))
    with pytest.raises(smtplib.SMTPDataError) as caught:
        inbox_app.send(make_message("too much", body="x" * 200_000))
    assert caught.value.smtp_code == 452
    assert [m["Subject"] for m in inbox_app.client().messages()["messages"]] == ["before"]
    assert inbox_app.call(inbox_app.store.integrity_check()) == "ok"


def _no_op() -> Any:
    from smtpgate.inbox.store import _Op

    return _Op()


def test_dns_rebinding_is_refused_on_loopback(inbox_app: AppThread) -> None:
    port = inbox_app.url.rsplit(":", 1)[1]
    status, _, body = http(inbox_app, "GET", "/api/v1/messages", headers={"Host": f"attacker.example:{port}"})
    assert status == 403 and "attacker.example" in json.loads(body)["Error"]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "app.localhost", f"[::1]:{port}"):
        status, _, _ = http(inbox_app, "GET", "/api/v1/messages", headers={"Host": host})
        assert status == 200, host


def test_is_loopback_host() -> None:
    from smtpgate.inbox.api import is_loopback_host

    assert is_loopback_host("127.0.0.1") and is_loopback_host("[::1]:8025") and is_loopback_host("LOCALHOST:1")
    assert not is_loopback_host("0.0.0.0") and not is_loopback_host("example.test:8025") and not is_loopback_host("")


def test_send_over_http(inbox_app: AppThread) -> None:
    import base64

    request = {
        "From": {"Email": "app@example.test", "Name": "The App"},
        "To": [{"Email": "jane+beta@example.test", "Name": "Jane"}],
        "Bcc": ["audit@example.test"],
        "Subject": "Sent over HTTP",
        "Text": "plain words",
        "HTML": '<p>rich <img src="cid:logo"></p>',
        "Tags": ["api"],
        "Headers": {"X-Campaign": "spring"},
        "Attachments": [
            {"Content": base64.b64encode(b"a,b\n").decode(), "Filename": "data.csv"},
            {"Content": base64.b64encode(b"\x89PNG").decode(), "Filename": "logo.png", "ContentID": "logo"},
        ],
    }
    status, _, body = http(inbox_app, "POST", "/api/v1/send", request)
    assert status == 200
    message = inbox_app.client().message(json.loads(body)["ID"])
    assert message["Subject"] == "Sent over HTTP" and message["From"] == {
        "Name": "The App",
        "Address": "app@example.test",
    }
    assert message["Text"].strip() == "plain words" and "rich" in message["HTML"]
    assert sorted(message["Tags"]) == ["api", "beta"]
    assert [a["FileName"] for a in message["Attachments"]] == ["data.csv"]
    assert [(a["FileName"], a["ContentID"]) for a in message["Inline"]] == [("logo.png", "logo")]
    assert set(message["Mailboxes"]) == {"jane+beta@example.test", "jane@example.test", "audit@example.test"}
    assert inbox_app.client().headers(message["ID"])["X-Campaign"] == ["spring"]
    for bad, problem in [
        ({"To": [{"Email": "x@example.test"}]}, "From"),
        ({"From": {"Email": "a@example.test"}}, "recipient"),
        ({**request, "Subject": "two\r\nBcc: evil@example.test"}, "line breaks"),
        ({**request, "Attachments": [{"Content": "%%%", "Filename": "x"}]}, "base64"),
        ({**request, "Headers": {"Bad Name": "x"}}, "invalid header"),
    ]:
        status, _, body = http(inbox_app, "POST", "/api/v1/send", bad)
        assert status == 400 and problem in json.loads(body)["Error"], problem
    status, _, _ = http(inbox_app, "POST", "/api/v1/send", request, {"Origin": "http://evil.example"})
    assert status == 403

"""Mailpit compatibility seen from outside: a second third-party client (PyPI
``mailpit-api-client``), a plain websocket client on ``/api/events``, and the parts of
Mailpit's API v1 that clients use (tags, ``before``, ``latest?query=``, ``/webui``,
Go-style bodies and header names)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from inbox_support import AppThread, make_message
from test_api import http


def dated(subject: str, to: str = "to@example.test", **headers: str) -> Any:
    """A message as real mail has it (Date, Message-ID, Delivered-To)."""
    message = make_message(subject, to=to, **headers)
    message["Date"] = "Tue, 01 Dec 2026 10:00:00 +0000"
    message["Message-ID"] = f"<{subject.replace(' ', '-').lower()}@example.test>"
    message["Delivered-To"] = to
    return message


def body(response: tuple[int, dict[str, str], bytes]) -> Any:
    return json.loads(response[2])


def test_pypi_mailpit_api_client(inbox_app: AppThread) -> None:
    """``mailpit-api-client`` (httpx + dataclasses-json models) as its users call it. It
    sends form-encoded bodies with a lowercase ``ids`` and reads Go's header spelling."""
    api_module = pytest.importorskip("mailpit.client.api")
    first = dated("Invoice 7", to="billing@example.test", Cc="Cee <cc@example.test>")
    first.add_attachment(b"col1,col2\n", maintype="text", subtype="csv", filename="lines.csv")
    inbox_app.send(first)
    inbox_app.send(dated("Welcome"))
    api = api_module.API(inbox_app.url, timeout=30)
    listed = api.get_messages()
    assert (listed.total, listed.unread, listed.count, listed.start) == (2, 2, 2, 0)
    assert [m.subject for m in listed.messages] == ["Welcome", "Invoice 7"]
    assert listed.messages[1].attachments == 1 and listed.messages[0].created.tzinfo is not None
    invoice = api.get_message(listed.messages[1].id)
    assert invoice.subject == "Invoice 7" and invoice.message_id == "invoice-7@example.test"
    assert invoice.from_.address == "from@example.test" and invoice.from_.name == "Sender Name"
    assert [(c.name, c.address) for c in invoice.cc] == [("Cee", "cc@example.test")]
    assert invoice.date == datetime(2026, 12, 1, 10, 0, tzinfo=timezone.utc)
    assert invoice.read is True and invoice.text.strip() == "Hello there"
    (attachment,) = invoice.attachments
    assert (attachment.file_name, attachment.content_type, attachment.size) == ("lines.csv", "text/csv", 10)
    assert api.get_message_attachment(invoice.id, attachment.part_id) == "col1,col2\n"
    headers = api.get_message_headers(invoice.id)  # needs "Message-Id", "Delivered-To", "Date", ...
    assert headers.message_id == ["<invoice-7@example.test>"] and headers.delivered_to == ["billing@example.test"]
    assert headers.additional["Subject"] == ["Invoice 7"]
    api.put_messages([invoice.id], "Read", False)  # form body: ids=...&Read=false
    assert api.get_messages().unread == 2
    api.put_messages([invoice.id], "Read", True)
    assert api.get_messages().unread == 1
    api.delete_messages([invoice.id])  # form body, deletes that one only
    assert [m.subject for m in api.get_messages().messages] == ["Welcome"]
    api.delete_messages([])  # empty: everything, as the client documents
    assert api.get_messages().total == 0
    with pytest.raises(Exception, match="404"):
        api.get_message("no-such-id")


def test_event_stream_with_a_plain_websocket_client(inbox_app: AppThread) -> None:
    """``/api/events`` from ``websocket-client`` (no aiohttp): Mailpit's event shapes."""
    websocket = pytest.importorskip("websocket")
    socket = websocket.create_connection(inbox_app.url.replace("http://", "ws://") + "/api/events", timeout=30)

    def next_event(kind: str) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            event = json.loads(socket.recv())
            assert set(event) == {"Type", "Data"}
            if event["Type"] == kind:
                return dict(event)
        raise AssertionError(f"no {kind} event")

    try:
        inbox_app.send(dated("Live", to="ann+news@example.test"))
        new = next_event("new")["Data"]
        assert new["Subject"] == "Live" and new["Tags"] == ["news"] and new["Read"] is False
        assert {"ID", "MessageID", "From", "To", "Cc", "Bcc", "ReplyTo", "Created", "Size", "Snippet"} <= set(new)
        stats = next_event("stats")["Data"]
        assert stats["Total"] == 1 and stats["Unread"] == 1 and "Version" in stats
        assert http(inbox_app, "PUT", "/api/v1/messages", {"IDs": [new["ID"]], "Read": True})[0] == 200
        assert next_event("update")["Data"] == {"ID": new["ID"], "Read": True}
        assert http(inbox_app, "PUT", "/api/v1/tags", {"IDs": [new["ID"]], "Tags": ["b", "A"]})[0] == 200
        assert next_event("update")["Data"] == {"ID": new["ID"], "Tags": ["A", "b"]}
        assert http(inbox_app, "DELETE", "/api/v1/messages", {"IDs": [new["ID"]]})[0] == 200
        assert next_event("delete")["Data"] == {"ID": new["ID"]}
        inbox_app.send(dated("Another"))
        next_event("new")
        assert http(inbox_app, "DELETE", "/api/v1/messages")[0] == 200
        assert next_event("truncate")["Data"] is None
    finally:
        socket.close()


def test_tags_set_rename_delete(inbox_app: AppThread) -> None:
    inbox_app.send(dated("One", to="ann+news@example.test"))
    inbox_app.send(dated("Two"))
    client = inbox_app.client()
    two, one = (m["ID"] for m in client.messages()["messages"])
    status, headers, text = http(inbox_app, "PUT", "/api/v1/tags", {"IDs": [one, two], "Tags": ["Urgent", "to do"]})
    assert (status, text) == (200, b"ok") and headers["Content-Type"].startswith("text/plain")
    assert client.message(one)["Tags"] == ["to do", "Urgent"]
    assert body(http(inbox_app, "GET", "/api/v1/tags")) == ["to do", "Urgent"]
    assert client.search("tag:urgent")["messages_count"] == 2
    # Mailpit's cleaning: other characters dropped, duplicates (any case) once, empties ignored
    assert http(inbox_app, "PUT", "/api/v1/tags", {"IDs": [two], "Tags": ["a<b>!", "URGENT", "urgent", "  "]})[0] == 200
    assert client.message(two)["Tags"] == ["ab", "URGENT"]
    assert http(inbox_app, "PUT", "/api/v1/tags/Urgent", {"Name": "Later"})[2] == b"ok"
    assert client.message(one)["Tags"] == ["Later", "to do"] and client.message(two)["Tags"] == ["ab", "Later"]
    assert http(inbox_app, "PUT", "/api/v1/tags/to%20do", {"Name": "later"})[0] == 200  # merges into "later"
    assert client.message(one)["Tags"] == ["later"]
    assert http(inbox_app, "DELETE", "/api/v1/tags/later")[2] == b"ok"
    assert client.message(one)["Tags"] == [] and client.messages()["total"] == 2  # the messages stay
    assert http(inbox_app, "PUT", "/api/v1/tags", {"IDs": [two], "Tags": []})[0] == 200
    assert body(http(inbox_app, "GET", "/api/v1/tags")) == []
    # refusals, each naming the problem
    status, _, text = http(inbox_app, "PUT", "/api/v1/tags", {"Tags": ["x"]})
    assert status == 400 and b"IDs" in text
    status, _, text = http(inbox_app, "PUT", "/api/v1/tags", {"IDs": [one], "Tags": "x"})
    assert status == 400 and b"Tags must be an array of strings" in text
    status, _, text = http(inbox_app, "PUT", "/api/v1/tags/nothing", {"Name": "x"})
    assert status == 404 and body((status, {}, text))["Error"] == "no message has the tag 'nothing'"
    status, _, text = http(inbox_app, "PUT", "/api/v1/tags/x", {"Name": "<>"})
    assert status == 400 and b"invalid tag name" in text
    assert http(inbox_app, "DELETE", "/api/v1/tags/nothing")[0] == 404


def test_go_style_bodies(inbox_app: AppThread) -> None:
    """Keys in any case (Go's decoder), null as absent, form bodies; wrong types refused."""
    inbox_app.send(dated("One"))
    inbox_app.send(dated("Two"))
    client = inbox_app.client()
    ids = [m["ID"] for m in client.messages()["messages"]]
    assert http(inbox_app, "PUT", "/api/v1/messages", {"ids": ids[:1], "read": True})[0] == 200
    assert client.messages()["unread"] == 1
    assert http(inbox_app, "PUT", "/api/v1/messages", {"IDs": None, "Read": True})[0] == 200  # null IDs: all
    assert client.messages()["unread"] == 0
    assert http(inbox_app, "PUT", "/api/v1/messages", {"search": "subject:One", "READ": False})[0] == 200
    assert [m["Subject"] for m in client.search("is:unread")["messages"]] == ["One"]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert http(inbox_app, "PUT", "/api/v1/messages", f"IDs={ids[0]}&Read=1".encode(), form)[0] == 200
    assert client.message(ids[0])["Read"] is True
    status, _, text = http(inbox_app, "PUT", "/api/v1/messages", b"Read=maybe", form)
    assert status == 400 and b"Read must be true or false" in text
    status, _, text = http(inbox_app, "PUT", "/api/v1/messages", {"Read": "yes"})
    assert status == 400 and body((status, {}, text))["Error"] == 'Read must be true or false, got "yes"'
    status, _, text = http(inbox_app, "DELETE", "/api/v1/messages", {"IDs": "all"})
    assert status == 400 and b"IDs must be an array of strings" in text
    assert client.messages()["total"] == 2  # nothing deleted by a refused request


def test_before_since_until_and_latest_query(inbox_app: AppThread) -> None:
    inbox_app.send(dated("Old one"))
    time.sleep(0.05)
    middle = datetime.now(timezone.utc)
    time.sleep(0.05)
    inbox_app.send(dated("New one"))
    stamp = middle.isoformat()
    page = body(http(inbox_app, "GET", "/api/v1/messages?before=" + stamp.replace("+", "%2B")))
    assert [m["Subject"] for m in page["messages"]] == ["Old one"]
    page = body(http(inbox_app, "GET", "/api/v1/messages?since=" + stamp.replace("+", "%2B")))
    assert [m["Subject"] for m in page["messages"]] == ["New one"]
    later = int((middle + timedelta(days=1)).timestamp())
    page = body(http(inbox_app, "GET", f"/api/v1/search?query=one&until={later}"))
    assert page["messages_count"] == 2
    status, _, text = http(inbox_app, "GET", "/api/v1/messages?before=soon")
    assert status == 400 and b"before: invalid date 'soon'" in text
    # latest with a query: the newest message matching it, on every message path
    assert body(http(inbox_app, "GET", "/api/v1/message/latest?query=subject:Old"))["Subject"] == "Old one"
    assert body(http(inbox_app, "GET", "/api/v1/message/latest/headers?query=old"))["Subject"] == ["Old one"]
    assert b"Subject: Old one" in http(inbox_app, "GET", "/api/v1/message/latest/raw?query=old")[2]
    assert http(inbox_app, "GET", "/view/latest.txt?query=old")[2].strip() == b"Hello there"
    status, headers, text = http(inbox_app, "GET", "/api/v1/message/latest?query=subject:nothing")
    assert status == 404 and headers["Content-Type"].startswith("application/json")
    assert body((status, {}, text))["Error"] == "no message matches 'subject:nothing'"


def test_webui_and_info_shapes(inbox_app: AppThread) -> None:
    webui = body(http(inbox_app, "GET", "/api/v1/webui"))
    assert webui["MessageRelay"]["Enabled"] is False and webui["SpamAssassin"] is False
    assert webui["ChaosEnabled"] is True and isinstance(webui["Label"], str)
    info = body(http(inbox_app, "GET", "/api/v1/info"))
    assert set(info) >= {"Version", "LatestVersion", "Database", "DatabaseSize", "Messages", "Unread", "Tags"}
    assert set(info["RuntimeStats"]) >= {"Uptime", "Memory", "MessagesDeleted", "SMTPAccepted", "SMTPRejected"}


def test_event_stream_of_one_mailbox_leaves_out_other_mailboxes(inbox_app: AppThread) -> None:
    """With ``?mailbox=``, new, update and delete events of other mailboxes never arrive."""
    websocket = pytest.importorskip("websocket")
    url = inbox_app.url.replace("http://", "ws://") + "/api/events?mailbox=ann@example.test"
    socket = websocket.create_connection(url, timeout=30)
    try:
        inbox_app.send(dated("For Bob", to="bob@example.test"))
        bob = inbox_app.client().messages()["messages"][0]["ID"]
        assert http(inbox_app, "PUT", "/api/v1/messages", {"IDs": [bob], "Read": True})[0] == 200
        assert http(inbox_app, "PUT", "/api/v1/tags", {"IDs": [bob], "Tags": ["x"]})[0] == 200
        assert http(inbox_app, "DELETE", "/api/v1/messages", {"IDs": [bob]})[0] == 200
        inbox_app.send(dated("For Ann", to="ann@example.test"))
        ann = inbox_app.client().messages()["messages"][0]["ID"]
        assert http(inbox_app, "PUT", "/api/v1/messages", {"IDs": [ann], "Read": True})[0] == 200
        seen: list[dict[str, Any]] = []
        for _ in range(50):  # each recv waits 30 s at most
            event = json.loads(socket.recv())
            if event["Type"] != "stats":
                seen.append(event)
            if seen and seen[-1]["Type"] == "update":
                break
        assert [(e["Type"], e["Data"]["ID"]) for e in seen] == [("new", ann), ("update", ann)]
    finally:
        socket.close()


def test_python_client_tags_and_chaos_keys_in_any_case(inbox_app: AppThread) -> None:
    inbox_app.send(dated("Tagged"))
    client = inbox_app.client()
    message_id = client.messages()["messages"][0]["ID"]
    client.set_tags([message_id], ["a/b", "Team X"])
    assert client.tags() == ["ab", "Team X"]
    client.rename_tag("Team X", "Team Y")
    client.delete_tag("ab")
    assert client.message(message_id)["Tags"] == ["Team Y"]
    triggers = client.chaos({"sender": {"errorcode": 452, "probability": 0}})
    assert triggers["Sender"] == {"ErrorCode": 452, "Probability": 0}


PROJECT_USING_MAILPIT_FIXTURE = """
import smtplib

import pytest

URL = "{url}"


@pytest.mark.parametrize("mailpit_api", [URL], indirect=True)
def test_signup_mail(mailpit_api):
    with smtplib.SMTP("127.0.0.1", {port}, timeout=30) as smtp:
        smtp.sendmail("app@example.test", ["new-user@example.test"], b"Subject: Welcome\\r\\n\\r\\nHi\\r\\n")
    messages = mailpit_api.get_messages()
    assert messages.total == 1 and messages.messages[0].subject == "Welcome"
    assert mailpit_api.get_message(messages.messages[0].id).text.strip() == "Hi"
"""


def test_pypi_clients_pytest_fixture(pytester: pytest.Pytester, inbox_app: AppThread) -> None:
    """The ``mailpit_api`` fixture of ``mailpit-api-client`` as a project uses it: its
    teardown deletes the messages it saw (a form-encoded DELETE)."""
    pytest.importorskip("mailpit.testing.pytest")
    pytester.makepyfile(test_project=PROJECT_USING_MAILPIT_FIXTURE.format(url=inbox_app.url, port=inbox_app.smtp_port))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "mailpit.testing.pytest")
    result.assert_outcomes(passed=1)
    assert inbox_app.client().messages()["total"] == 0  # the fixture's teardown emptied the inbox

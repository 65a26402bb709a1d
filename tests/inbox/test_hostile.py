"""Hostile mail through SMTP and the API: stored, listed, searched and viewed, bounded."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

from inbox_support import AppThread

from smtpgate.inbox.parse import MAX_PARTS


def deep(depth: int) -> bytes:
    opening = b"".join(b"Content-Type: multipart/mixed; boundary=d%d\r\n\r\n--d%d\r\n" % (i, i) for i in range(depth))
    return (
        b"From: a@x.test\r\nTo: b@x.test\r\nSubject: deep nesting\r\n"
        + opening
        + b"Content-Type: text/plain\r\n\r\nbottom\r\n"
    )


def many_parts(count: int) -> bytes:
    part = b"--p\r\nContent-Type: application/octet-stream\r\n"
    part += b"Content-Disposition: attachment; filename=f%d.bin\r\n\r\nx\r\n"
    body = b"".join(part % i for i in range(count)) + b"--p--\r\n"
    return b"From: a@x.test\r\nSubject: many parts\r\nContent-Type: multipart/mixed; boundary=p\r\n\r\n" + body


BROKEN = (
    b"From: =?utf-8?b?!!!?= <a@x.test>\r\nSubject: =?koi8-zz?q?broken?= charset\r\n"
    b'Content-Type: multipart/alternative; boundary="q"\r\n\r\n'
    b'--q\r\nContent-Type: text/plain; charset="utf-99"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
    b"caf=C3=A9 =ZZ soft=\r\nbreak\r\n"
    b"--q\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"PGI+Ym9sZDwvYj4=%%%%garbage\r\n"
    b'--q\r\nContent-Type: image/png; name="x.png"\r\nContent-Transfer-Encoding: x-unknown\r\n\r\n\xff\xd8\xff\r\n'
)


def test_hostile_messages_are_stored_listed_searched_viewed(inbox_app: AppThread) -> None:
    client = inbox_app.client()
    inbox_app.send(deep(3000))
    inbox_app.send(many_parts(MAX_PARTS + 500))
    inbox_app.send(BROKEN)
    page = client.messages()
    assert [m["Subject"] for m in page["messages"]] == ["broken charset", "many parts", "deep nesting"]
    broken, many, nested = (client.message(m["ID"]) for m in page["messages"])
    assert broken["Text"].startswith("café") and "<b>bold</b>" in broken["HTML"]
    assert broken["Attachments"][0]["FileName"] == "x.png"
    assert len(many["Attachments"]) == MAX_PARTS and many["Envelope"]["Truncated"] is True
    assert client.part(many["ID"], "9999") == b"x"
    assert nested["Envelope"]["Truncated"] is True
    assert client.search("has:attachment")["messages_count"] == 3
    assert client.search("bottom")["messages_count"] == 0  # the part below the depth cap is not parsed
    assert client.raw(nested["ID"]).endswith(b"bottom\r\n")  # but the raw message is whole
    assert client.search('"f10499.bin"')["messages_count"] == 0
    assert client.search("f9999.bin")["messages_count"] == 1


def test_api_answers_while_a_hostile_message_is_parsed(inbox_app: AppThread) -> None:
    payload = many_parts(MAX_PARTS)
    sender = threading.Thread(target=inbox_app.send, args=(payload,))
    sender.start()
    slowest = 0.0
    while sender.is_alive():
        started = time.monotonic()
        with urllib.request.urlopen(inbox_app.url + "/api/v1/info", timeout=30) as response:
            assert json.loads(response.read())["Version"]
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.01)
    sender.join()
    assert slowest < 10, f"the API stalled {slowest:.1f} s"
    assert inbox_app.client().messages()["total"] == 1

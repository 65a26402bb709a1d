"""Hostile input at the integrated command (--http + --deliver + --verify): garbage, huge
and many-part messages, hang-ups, header injection, non-UTF-8 bytes; what is refused is
stored nowhere, what is accepted is intact and valid JSON everywhere."""

from __future__ import annotations

import json
import smtplib
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from e2e_support import Gate, KnotServer, Receiver, hook_url, subject_of, wait_until

CLEAN = b"From: alice@ok.test\r\nTo: bob@mx.test\r\nSubject: clean\r\n\r\nclean\r\n"


def start(gate: Callable[..., Gate], webhook: Receiver, dns: KnotServer, *extra: str) -> Gate:
    return gate("--deliver", hook_url(webhook), "--retry-min", "1", "--verify", "--dns", dns.address, *extra)


def queue_files(running: Gate) -> list[str]:
    return sorted(str(path.relative_to(running.queue)) for path in running.queue.rglob("*") if path.is_file())


def inbox_files(running: Gate) -> list[str]:
    """The files next to the inbox database (large messages are kept there)."""
    folder = running.cwd / "inbox.sqlite3.d"
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


def send_clean(running: Gate, webhook: Receiver, count: int) -> None:
    """A normal message after the hostile part: the server still works, and once it is in
    the inbox and at the webhook, whatever came before has been dealt with."""
    with smtplib.SMTP("127.0.0.1", running.port, local_hostname="client.ok.test", timeout=30) as client:
        client.sendmail("bounce@ok.test", ["bob@mx.test"], CLEAN)
    wait_until(lambda: len(webhook.delivered_ids()) == count, 30, "the clean message at the webhook")
    wait_until(running.queue_drained, 30, "the queue to drain")


def assert_only_clean(running: Gate, webhook: Receiver) -> None:
    assert [m["Subject"] for m in running.inbox()] == ["clean"]
    assert [subject_of(body) for _, _, body in webhook.requests] == ["clean"]
    assert running.queue_drained()


def greeting(sock: socket.socket) -> bytes:
    """Read the 220 greeting (talking before it is refused as an early talker)."""
    replies = b""
    for _ in range(100):
        if b"\r\n" in replies:
            break
        chunk = sock.recv(4096)
        if not chunk:
            break
        replies += chunk
    assert replies.startswith(b"220 "), replies
    return replies


def talk(port: int, data: bytes, *, until: bytes = b"221 ", timeout: float = 30) -> bytes:
    """Send ``data`` at once (pipelined) and read replies until ``until`` or EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        replies = greeting(sock)
        sock.sendall(data)
        deadline = time.monotonic() + timeout
        while until not in replies and time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            replies += chunk
    return replies


def test_pipelined_garbage_is_refused_and_stores_nothing(
    gate: Callable[..., Gate], webhook: Receiver, dns_server: KnotServer
) -> None:
    running = start(gate, webhook, dns_server)
    garbage = b"EHLO client.ok.test\r\n"
    garbage += b"\x00\xff\xfe GARBAGE \x1b[31m\r\n" * 5
    garbage += b"MAIL FROM:<<<>>>\r\nRCPT TO:<b@mx.test>\r\nDATA\r\n"
    garbage += b"X" * 5000 + b"\r\n"  # a line far beyond the command limit
    garbage += b"MAIL FROM:<a@ok.test> SIZE=abc\r\nBDAT 10 LAST\r\n0123456789"
    garbage += b"QUIT\r\n"
    replies = talk(running.port, garbage)
    codes = [line[:3] for line in replies.split(b"\r\n") if line[:1].isdigit()]
    assert codes[0] == b"220"
    assert any(code.startswith(b"5") for code in codes), replies
    assert b"250 2.6.0" not in replies and b"354" not in replies, replies
    send_clean(running, webhook, 1)
    assert_only_clean(running, webhook)


def many_parts(count: int) -> bytes:
    head = (
        "From: alice@ok.test\r\nTo: bob@mx.test\r\nSubject: many-parts\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
    )
    part = "--b\r\nContent-Type: text/plain\r\n\r\npart {n}\r\n"
    return (head + "".join(part.format(n=n) for n in range(count)) + "--b--\r\n").encode()


def test_ten_thousand_mime_parts_through_verify_into_inbox_and_webhook(
    gate: Callable[..., Gate], webhook: Receiver, dns_server: KnotServer
) -> None:
    running = start(gate, webhook, dns_server)
    message = many_parts(10_000)
    with smtplib.SMTP("127.0.0.1", running.port, local_hostname="client.ok.test", timeout=60) as client:
        client.sendmail("bounce@ok.test", ["bob@mx.test"], message)
    wait_until(lambda: len(webhook.delivered_ids()) == 1, 60, "the webhook delivery")
    ((summary),) = running.inbox()
    assert summary["Subject"] == "many-parts"
    raw = running.inbox_raw(summary["ID"])
    assert raw.endswith(message) and b"Authentication-Results: mx.test;" in raw
    ((_, _, hook_body),) = webhook.requests
    assert hook_body.endswith(raw)
    parsed = running.get_json(f"/api/v1/message/{summary['ID']}")  # answers, and is JSON
    assert parsed["ID"] == summary["ID"]


@pytest.mark.slow
def test_30_mb_over_10_mb_limit_is_refused_and_stored_nowhere(
    gate: Callable[..., Gate], webhook: Receiver, dns_server: KnotServer
) -> None:
    running = start(gate, webhook, dns_server, "--max-size", "10M")
    before = queue_files(running), inbox_files(running)
    line = b"y" * 998 + b"\r\n"
    message = b"From: alice@ok.test\r\nTo: bob@mx.test\r\nSubject: huge\r\n\r\n" + line * (30 * 1024 * 1024 // 1000)
    with smtplib.SMTP("127.0.0.1", running.port, local_hostname="client.ok.test", timeout=120) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as announced:  # SIZE=... in MAIL FROM
            client.sendmail("bounce@ok.test", ["bob@mx.test"], message)
        assert announced.value.smtp_code == 552
        client.rset()
        client.mail("bounce@ok.test")  # no SIZE: the whole 30 MB comes, then the reply
        client.rcpt("bob@mx.test")
        code, reply = client.data(message)
    assert (code, reply[:6]) == (552, b"5.3.4 ")
    assert (queue_files(running), inbox_files(running)) == before  # no spool file left behind either
    assert running.inbox() == []
    send_clean(running, webhook, 1)
    assert_only_clean(running, webhook)


def test_client_gone_mid_data_stores_nothing(
    gate: Callable[..., Gate], webhook: Receiver, dns_server: KnotServer
) -> None:
    running = start(gate, webhook, dns_server)
    for size in (10, 100_000, 3_000_000):
        with socket.create_connection(("127.0.0.1", running.port), timeout=30) as sock:
            greeting(sock)
            sock.sendall(b"EHLO client.ok.test\r\nMAIL FROM:<bounce@ok.test>\r\nRCPT TO:<bob@mx.test>\r\nDATA\r\n")
            replies = b""
            for _ in range(100):
                if b"354 " in replies:
                    break
                replies += sock.recv(4096)
            assert b"354 " in replies, replies
            sock.sendall(b"From: alice@ok.test\r\nSubject: cut\r\n\r\n" + b"z" * size)
    send_clean(running, webhook, 1)
    assert_only_clean(running, webhook)


INJECTIONS = [
    # (MAIL FROM argument, RCPT TO argument): each tries to smuggle a header or a command
    (b"<a\rX-Injected: yes@ok.test>", b"<bob@mx.test>"),
    (b"<a@ok.test>", b"<bob\rX-Injected: yes@mx.test>"),
    (b'<"a\\\rX-Injected: yes"@ok.test>', b"<bob@mx.test>"),
    (b'<"x>X-Injected: yes"@ok.test>', b'<"b\\"ob"@mx.test>'),
    (b"<a@ok.test>", b"<bob@mx.test>\rX-Injected: yes"),
    (b"<a@ok.test\nX-Injected: yes>", b"<bob@mx.test>"),
    (b'<"a\xe2\x80\xa8X-Injected: yes"@ok.test> SMTPUTF8', b"<bob@mx.test>"),
    (b"<a@ok.test> SMTPUTF8", b'<"b\xc2\x85X-Injected: yes"@mx.test>'),
    (b'<"a\tX-Injected: yes"@ok.test>', b"<bob@mx.test>"),
    (b"<caf\xe9@ok.test> SMTPUTF8", b"<b\xff\xfe@mx.test>"),
    (b"<>", b'<"bob\\r\\nX-Injected: yes"@mx.test>'),
]


@pytest.mark.parametrize(("mail_from", "rcpt_to"), INJECTIONS)
def test_header_injection_in_addresses(
    gate: Callable[..., Gate], webhook: Receiver, dns_server: KnotServer, mail_from: bytes, rcpt_to: bytes
) -> None:
    running = start(gate, webhook, dns_server)
    session = b"EHLO client.ok.test\r\nMAIL FROM:" + mail_from + b"\r\nRCPT TO:" + rcpt_to + b"\r\nDATA\r\n"
    with socket.create_connection(("127.0.0.1", running.port), timeout=30) as sock:
        greeting(sock)
        sock.sendall(session)
        replies = b""
        for _ in range(100):
            if b"354 " in replies or b"503" in replies or b"554" in replies:
                break
            chunk = sock.recv(4096)
            if not chunk:
                break
            replies += chunk
        accepted = b"354 " in replies
        if accepted:
            sock.sendall(b"From: alice@ok.test\r\nSubject: injected\r\n\r\nbody\r\n.\r\n")
            end = b""
            for _ in range(100):
                if b"\r\n" in end:
                    break
                end += sock.recv(4096)
            accepted = end.startswith(b"250")
        sock.sendall(b"QUIT\r\n")
    if accepted:
        wait_until(lambda: len(webhook.delivered_ids()) == 1, 30, "the webhook delivery")
        ((summary),) = running.inbox()
        raw = running.inbox_raw(summary["ID"])
        ((_, hook_headers, hook_body),) = webhook.requests
        for where in (raw, hook_body):
            head = where.split(b"\r\n\r\n", 1)[0]
            assert not any(line.startswith(b"X-Injected") for line in head.split(b"\r\n")), head
            assert b"\r" not in head.replace(b"\r\n", b"") and b"\n" not in head.replace(b"\r\n", b"")
        for name, value in hook_headers.items():
            assert "\r" not in value and "\n" not in value, (name, value)
        json.dumps(running.get_json(f"/api/v1/message/{summary['ID']}"))
        send_clean(running, webhook, 2)
    else:
        send_clean(running, webhook, 1)
        assert_only_clean(running, webhook)


NON_UTF8 = (
    b"From: =?bogus?Q?x?= <alice@ok.test>\r\nTo: bob@mx.test\r\n"
    b"Subject: caf\xe9 \xff\xfe \xed\xa0\x80 non-utf8\r\nX-Raw: \x80\x81\x00\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\nbody \xff\xfe caf\xe9\r\n"
)


def strict_json(data: bytes) -> Any:
    """JSON that is valid UTF-8 and holds no lone surrogate (which no JSON reader in
    another language would take)."""
    text = data.decode("utf-8")  # strict
    value = json.loads(text)
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # raises on a lone surrogate
    return value


@pytest.mark.parametrize("webhook_format", ["raw", "json"])
def test_non_utf8_headers_through_the_whole_chain(
    gate: Callable[..., Gate], webhook: Receiver, dns_server: KnotServer, webhook_format: str, tmp_path: Path
) -> None:
    running = start(gate, webhook, dns_server, "--webhook-format", webhook_format)
    with smtplib.SMTP("127.0.0.1", running.port, local_hostname="client.ok.test", timeout=30) as client:
        client.sendmail("bounce@ok.test", ["bob@mx.test"], NON_UTF8)
    wait_until(lambda: len(webhook.delivered_ids()) == 1, 30, "the webhook delivery")
    listing = strict_json(running.get("/api/v1/messages"))
    ((summary),) = listing["messages"]
    assert "non-utf8" in summary["Subject"]
    message = strict_json(running.get(f"/api/v1/message/{summary['ID']}"))
    assert "body" in message["Text"]
    strict_json(running.get(f"/api/v1/message/{summary['ID']}/headers"))
    strict_json(running.get("/api/v1/search?query=non-utf8"))
    raw = running.inbox_raw(summary["ID"])
    assert raw.endswith(NON_UTF8)  # the bytes are kept exactly
    ((_, headers, body),) = webhook.requests
    if webhook_format == "json":
        payload = strict_json(body)
        assert "non-utf8" in json.dumps(payload)
    else:
        assert body.endswith(raw)
    wait_until(running.queue_drained, 30, "the queue to drain")


@pytest.mark.parametrize(
    "header",
    [
        b"From: \xc0\xaf <alice@ok.test>\r\nTo: bob@mx.test",
        b"From: alice@ok.test\r\nTo: b\xf6b <bob@mx.test>",
        b"From: =?utf-8?b?/w==?= <alice@ok.test>\r\nTo: bob@mx.test",  # plain ASCII on the wire
        b"From: alice@ok.test\r\nTo: bob@mx.test\r\nCc: b\xf6b@mx.test",
    ],
)
def test_non_utf8_display_names_are_accepted(
    gate: Callable[..., Gate], webhook: Receiver, dns_server: KnotServer, header: bytes
) -> None:
    running = start(gate, webhook, dns_server)
    message = header + b"\r\nSubject: latin-1 name\r\n\r\nbody\r\n"
    with smtplib.SMTP("127.0.0.1", running.port, local_hostname="client.ok.test", timeout=30) as client:
        client.sendmail("bounce@ok.test", ["bob@mx.test"], message)
    wait_until(lambda: len(webhook.delivered_ids()) == 1, 30, "the webhook delivery")
    ((summary),) = strict_json(running.get("/api/v1/messages"))["messages"]
    assert running.inbox_raw(summary["ID"]).endswith(message)


@pytest.mark.parametrize(
    "header", [b"From: \xc0\xaf <alice@ok.test>\r\nTo: bob@mx.test", b"From: alice@ok.test\r\nTo: b\xf6b <bob@mx.test>"]
)
def test_whatever_the_reply_inbox_and_webhook_agree_with_it(
    gate: Callable[..., Gate], webhook: Receiver, dns_server: KnotServer, header: bytes
) -> None:
    """250: in the inbox and at the webhook; anything else: in neither (a refused message
    handed on would reach the app again with each retry of the client)."""
    running = start(gate, webhook, dns_server)
    with smtplib.SMTP("127.0.0.1", running.port, local_hostname="client.ok.test", timeout=30) as client:
        client.ehlo()
        client.mail("bounce@ok.test")
        client.rcpt("bob@mx.test")
        code, _ = client.data(header + b"\r\nSubject: agree\r\n\r\nbody\r\n")
    send_clean(running, webhook, 2 if code == 250 else 1)
    subjects = sorted(m["Subject"] for m in running.inbox())
    assert subjects == (["agree", "clean"] if code == 250 else ["clean"])
    assert sorted(subject_of(body) for _, _, body in webhook.requests) == subjects


def test_bdat_chunks_with_binary_bytes_through_the_chain(
    gate: Callable[..., Gate], webhook: Receiver, dns_server: KnotServer
) -> None:
    running = start(gate, webhook, dns_server, "--webhook-format", "json")
    body = (
        b"From: alice@ok.test\r\nTo: bob@mx.test\r\nSubject: chunked\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        + bytes(range(256)) * 40
        + b"\r\n"
    )
    chunks = [body[:100], body[100:101], body[101:5000], body[5000:]]
    session = b"EHLO client.ok.test\r\nMAIL FROM:<bounce@ok.test> BODY=BINARYMIME\r\nRCPT TO:<bob@mx.test>\r\n"
    for index, chunk in enumerate(chunks):  # pipelined: every chunk sent before any reply is read
        last = b" LAST" if index == len(chunks) - 1 else b""
        session += b"BDAT %d%s\r\n" % (len(chunk), last) + chunk
    replies = talk(running.port, session + b"QUIT\r\n")
    assert b"250 2.6.0 Stored as" in replies, replies
    wait_until(lambda: len(webhook.delivered_ids()) == 1, 30, "the delivery")
    ((summary),) = strict_json(running.get("/api/v1/messages"))["messages"]
    assert running.inbox_raw(summary["ID"]).endswith(body)
    strict_json(running.get(f"/api/v1/message/{summary['ID']}"))
    ((_, _, payload),) = webhook.requests
    assert strict_json(payload)


@pytest.mark.parametrize(
    "header",
    [
        b"From: \xc0\xaf <alice@ok.test>\r\nTo: bob@mx.test",
        b"From: alice@ok.test\r\nTo: b\xf6b <bob@mx.test>",
        b"From: =?utf-8?b?/w==?= <alice@ok.test>\r\nTo: =?x-unknown?q?a?= <bob@mx.test>",
        b"From: alice@ok.test\r\nTo: bob@mx.test\r\nContent-Type: text/plain; charset=x-no-such",
    ],
)
def test_json_webhook_of_odd_headers_without_the_inbox(
    gate: Callable[..., Gate], webhook: Receiver, dns_server: KnotServer, header: bytes
) -> None:
    running = gate(
        "--sink", "dir:out", "--deliver", hook_url(webhook), "--webhook-format", "json", "--verify", "--dns",
        dns_server.address, http=False,
    )  # fmt: skip
    message = header + b"\r\nSubject: odd \xe9\r\n\r\nbody \xff\r\n"
    with smtplib.SMTP("127.0.0.1", running.port, local_hostname="client.ok.test", timeout=30) as client:
        client.sendmail("bounce@ok.test", ["bob@mx.test"], message)
    wait_until(lambda: len(webhook.delivered_ids()) == 1, 30, "the delivery")
    ((_, _, payload),) = webhook.requests
    assert strict_json(payload)
    wait_until(running.queue_drained, 30, "the queue to drain")

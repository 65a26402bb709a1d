"""The command with --http: flags, crash safety (kill -9), and a 100 MB message."""

from __future__ import annotations

import smtplib
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from inbox_support import CommandProcess

from smtpgate.cli.config import UsageError, parse_settings
from smtpgate.inbox.client import InboxClient
from support import free_port


def test_http_flags() -> None:
    settings = parse_settings(["--http", "8025"])
    assert settings.http == ("127.0.0.1", 8025) and settings.sink == "inbox:./inbox.sqlite3"
    assert parse_settings(["--http", ":9000"]).http == ("127.0.0.1", 9000)
    assert parse_settings(["--http", "[::1]:9000"]).http == ("::1", 9000)
    assert parse_settings(["--http", "0.0.0.0:1", "--sink", "maildir:m"]).sink == "maildir:m"
    assert parse_settings([]).http is None and parse_settings([]).sink == "maildir:./maildir"
    settings = parse_settings(["--http", "1", "--inbox-max-messages", "500", "--inbox-max-age", "7d"])
    assert settings.inbox_max_messages == 500 and settings.inbox_max_age == 7 * 86400
    with pytest.raises(UsageError, match="--http needs a single process"):
        parse_settings(["--http", "8025", "--workers", "2"])
    with pytest.raises(UsageError, match="the inbox sink needs a single process"):
        parse_settings(["--sink", "inbox:x.sqlite3", "--workers", "2"])
    with pytest.raises(UsageError, match="--http-auth-file needs --http"):
        parse_settings(["--http-auth-file", "f"])
    with pytest.raises(UsageError, match="invalid duration"):
        parse_settings(["--http", "1", "--inbox-max-age", "soon"])


def test_http_in_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "smtpgate.toml"
    config.write_text('http = "127.0.0.1:8125"\ninbox-max-age = "24h"\n')
    settings = parse_settings(["--config", str(config)])
    assert settings.http == ("127.0.0.1", 8125) and settings.inbox_max_age == 86400


def message(subject: str, size: int = 0) -> bytes:
    body = (b"y" * 78 + b"\r\n") * (size // 80 + 1) if size else b"short body\r\n"
    return b"From: a@x.test\r\nTo: b@x.test\r\nSubject: " + subject.encode() + b"\r\n\r\n" + body


def start(tmp_path: Path, *extra: str) -> tuple[CommandProcess, int, InboxClient]:
    smtp_port, http_port = free_port(), free_port()
    args = ["--port", str(smtp_port), "--http", f"127.0.0.1:{http_port}", "--sink", "inbox:inbox.sqlite3", *extra]
    command = CommandProcess(args, tmp_path).wait_ready()
    return command, smtp_port, InboxClient(f"http://127.0.0.1:{http_port}")


def test_kill_9_while_storing_loses_no_acknowledged_message(tmp_path: Path) -> None:
    command, smtp_port, _ = start(tmp_path)
    acknowledged: list[str] = []
    lock = threading.Lock()

    def sender(number: int) -> None:
        for index in range(1000):
            subject = f"crash {number}-{index}"
            try:
                with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as smtp:
                    smtp.sendmail("a@x.test", ["b@x.test"], message(subject, 300_000 if index % 4 == 0 else 0))
            except (OSError, smtplib.SMTPException):
                return  # the server is gone
            with lock:
                acknowledged.append(subject)

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 40 and time.monotonic() < deadline:
        time.sleep(0.02)
    command.kill()
    for thread in threads:
        thread.join(60)
    assert len(acknowledged) >= 40
    restarted, _, client = start(tmp_path)
    try:
        stored = {m["Subject"]: m for m in client.messages(limit=1000)["messages"]}
        missing = set(acknowledged) - set(stored)
        assert not missing, f"acknowledged but lost: {sorted(missing)[:5]}"
        for subject in acknowledged[:: max(1, len(acknowledged) // 10)]:
            raw = client.raw(stored[subject]["ID"])
            assert raw.endswith(message(subject, 300_000 if subject.endswith(("-0", "-4", "-8")) else 0)[-40:])
        connection = sqlite3.connect(tmp_path / "inbox.sqlite3")
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        connection.close()
    finally:
        assert restarted.terminate() == 0


@pytest.mark.slow
def test_100_mb_attachment_with_bounded_memory(tmp_path: Path) -> None:
    command, smtp_port, client = start(tmp_path, "--max-size", "0")
    sampler = command.sample_anonymous_memory()
    try:
        line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0NTY3ODkrLw==\r\n"
        head = (
            b"From: a@x.test\r\nTo: big@x.test\r\nSubject: huge\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
            b"--B\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n"
            b"--B\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Disposition: attachment; filename=big.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        )
        count = 100 * 1024 * 1024 // len(line)

        data = head + line * count + b"--B--\r\n"
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=300) as smtp:
            smtp.sendmail("a@x.test", ["big@x.test"], data)
        del data  # smtplib wants the whole message as bytes: the client holds it, not the server
        found = client.wait_for("subject:huge", timeout=60)
        size = found["Attachments"][0]["Size"]
        assert size == count * 64
        assert client.search("has:attachment huge")["messages_count"] == 1
        assert client.messages()["messages"][0]["Size"] > 100 * 1024 * 1024
        downloaded = 0
        import urllib.request

        url = f"{client.url}/api/v1/message/{found['ID']}/part/{found['Attachments'][0]['PartID']}"
        with urllib.request.urlopen(url, timeout=300) as response:
            while chunk := response.read(1 << 20):
                downloaded += len(chunk)
        assert downloaded == size
        peak = sampler.stop()  # file pages of the mapped message are the page cache's, not ours
        assert peak < 80 * 1024 * 1024, f"peak anonymous memory {peak / 2**20:.0f} MiB"
    finally:
        command.terminate()


def test_startup_line_and_a_taken_http_port(tmp_path: Path) -> None:
    command, _, client = start(tmp_path)
    try:
        assert f"inbox UI and API on {client.url}/" in command.stderr
        assert "storing to inbox:inbox.sqlite3" in command.stderr
        taken = client.url.rsplit(":", 1)[1]
        second = CommandProcess(
            ["--port", str(free_port()), "--http", taken, "--sink", "inbox:other.sqlite3"], tmp_path
        )
        assert second.process.wait(30) == 1
        lines = second.stderr.strip().splitlines()
        assert lines[-1] == f"smtpgate: error: --http 127.0.0.1:{taken}: Address already in use"
    finally:
        assert command.terminate() == 0


def test_http_with_another_sink_also_fills_the_inbox(tmp_path: Path) -> None:
    http_port, smtp_port = free_port(), free_port()
    args = ["--port", str(smtp_port), "--http", str(http_port), "--sink", "maildir:mail"]
    command = CommandProcess(args, tmp_path).wait_ready()
    try:
        assert "storing to maildir:mail and inbox:./inbox.sqlite3" in command.stderr
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as smtp:
            smtp.sendmail("a@x.test", ["b@x.test"], message("both"))
        assert InboxClient(f"http://127.0.0.1:{http_port}").wait_for("subject:both", timeout=30)
        assert len(list((tmp_path / "mail" / "new").iterdir())) == 1
    finally:
        assert command.terminate() == 0

"""``smtpgate --deliver`` and ``smtpgate queue`` as subprocesses: webhooks delivered at
least once through kill -9 and restarts, 452 when full, 451 (never 250) when the queue
cannot store, and the queue command."""

from __future__ import annotations

import base64
import json
import os
import resource
import signal
import smtplib
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import standardwebhooks
from webhook_receiver import ThreadedReceiver

from support import free_port, wait_until

SECRET = "whsec_" + base64.b64encode(b"another secret, 32 bytes long..!").decode()
MESSAGE = b"From: a@example.org\r\nTo: app@example.test\r\nSubject: via the queue\r\n\r\nHello\r\n"


class Server:
    """``python -m smtpgate`` in its own session, output in a file."""

    def __init__(self, cwd: Path, args: list[str], limit_file_size: int | None = None) -> None:
        self.cwd = cwd
        self.port = free_port()
        self.log = cwd / f"smtpgate-{self.port}.log"
        with open(self.log, "wb") as out:

            def limits() -> None:
                if limit_file_size is not None:  # a "disk" that fills up beyond this many bytes per file
                    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                    resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_size, limit_file_size))

            self.process = subprocess.Popen(
                [sys.executable, "-m", "smtpgate", "--port", str(self.port), *args],
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
                start_new_session=True,
                preexec_fn=limits,
            )
        try:
            wait_until(lambda: self.listening or self.process.poll() is not None, timeout=30, what="start-up")
            assert self.process.poll() is None, self.output
        except BaseException:
            self.kill()  # the fixture never gets it: stop it here
            raise

    @property
    def listening(self) -> bool:
        output = self.output
        return "Ctrl-C to stop" in output or "workers listening on" in output

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def send(self, body: bytes = MESSAGE, recipients: tuple[str, ...] = ("app@example.test",)) -> tuple[int, str]:
        """One message; the reply to the data (or the refusal before it)."""
        with smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.test", timeout=30) as client:
            try:
                client.sendmail("a@example.org", list(recipients), body)
            except smtplib.SMTPDataError as error:
                return error.smtp_code, error.smtp_error.decode()
            return 250, ""

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(*args: str, limit_file_size: int | None = None) -> Server:
        server = Server(tmp_path, list(args), limit_file_size)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


def queue_command(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "smtpgate", "queue", "--queue", str(tmp_path / "queue"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def ids_in(output: str) -> list[str]:
    return [line.split()[-1].removeprefix("stored=") for line in output.splitlines() if " stored=" in line]


@pytest.mark.slow
def test_kill_9_during_delivery_and_during_retries(tmp_path: Path, serve: Callable[..., Server]) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    with ThreadedReceiver(["timeout"]) as receiver:
        args = [
            "--deliver",
            f"http://127.0.0.1:{receiver.port}/hook",
            "--queue",
            str(tmp_path / "queue"),
            "--webhook-secret-file",
            str(secret_file),
            "--retry-min",
            "0.2",
        ]
        first = serve(*args)
        for _ in range(3):
            assert first.send()[0] == 250
        wait_until(lambda: len(receiver.requests) >= 1, timeout=30, what="a delivery in flight")
        first.kill()  # kill -9 while the receiver holds a delivery
        acknowledged = ids_in(first.output)
        assert len(acknowledged) == 3
        receiver.script = ["500"]  # then the endpoint fails: the messages wait for retries
        second = serve(*args)
        assert second.send()[0] == 250
        acknowledged += ids_in(second.output)
        wait_until(lambda: "next attempt in" in second.output, timeout=30, what="a deferred delivery")
        second.kill()  # kill -9 during retries
        receiver.script = ["200"]
        third = serve(*args)
        wait_until(lambda: set(acknowledged) <= receiver.delivered_ids(), timeout=30, what="every message delivered")
        wait_until(
            lambda: "Mail queue is empty" in queue_command(tmp_path, "list").stdout, timeout=30, what="an empty queue"
        )
        third.kill()
    # at least once, and a duplicate carries the same ID as the first try
    assert set(acknowledged) == receiver.delivered_ids()
    by_id: dict[str, set[bytes]] = {}
    for _, headers, body in receiver.requests:
        by_id.setdefault(headers["webhook-id"], set()).add(body)
        when = int(headers["webhook-timestamp"])
        expected = standardwebhooks.Webhook(SECRET).sign(
            headers["webhook-id"], _datetime(when), body.decode("utf-8", "surrogateescape")
        )
        assert headers["webhook-signature"] == expected
    assert all(len(bodies) == 1 for bodies in by_id.values())  # same ID, same bytes
    first_try = receiver.requests[0][1]["webhook-id"]  # the delivery the kill interrupted...
    assert sum(1 for _, headers, _ in receiver.requests if headers["webhook-id"] == first_try) >= 2  # ...came again


def _datetime(stamp: int):  # type: ignore[no-untyped-def]
    from datetime import datetime, timezone

    return datetime.fromtimestamp(stamp, tz=timezone.utc)


def test_full_queue_answers_452_and_keeps_what_it_has(tmp_path: Path, serve: Callable[..., Server]) -> None:
    server = serve(
        "--deliver",
        f"http://127.0.0.1:{free_port()}/nobody-listens",
        "--queue",
        str(tmp_path / "queue"),
        "--queue-max-messages",
        "2",
    )
    assert server.send()[0] == 250
    assert server.send()[0] == 250
    code, text = server.send()
    assert code == 452 and "4.3.1" in text
    listing = queue_command(tmp_path, "--json", "list")
    records = [json.loads(line) for line in listing.stdout.splitlines()]
    assert sorted(r["id"] for r in records) == sorted(ids_in(server.output))
    assert len(records) == 2


def test_unwritable_queue_answers_451_never_250(tmp_path: Path, serve: Callable[..., Server]) -> None:
    server = serve("--deliver", f"http://127.0.0.1:{free_port()}/x", "--queue", str(tmp_path / "queue"))
    assert server.send()[0] == 250
    (tmp_path / "queue" / "tmp").rename(tmp_path / "queue" / "tmp-away")
    (tmp_path / "queue" / "tmp").write_text("a file where the folder was")
    code, text = server.send()
    assert code == 451 and "4.3.0" in text
    assert len(ids_in(server.output)) == 1


def test_full_disk_answers_451_never_250(tmp_path: Path, serve: Callable[..., Server]) -> None:
    server = serve(
        "--deliver", f"http://127.0.0.1:{free_port()}/x", "--queue", str(tmp_path / "queue"), limit_file_size=64 * 1024
    )
    assert server.send()[0] == 250
    code, text = server.send(MESSAGE + b"x" * 200_000 + b"\r\n")
    assert code == 451 and "4.3.0" in text
    assert len(ids_in(server.output)) == 1
    assert [name for name in os.listdir(tmp_path / "queue" / "tmp") if name.endswith(".msg")] == []


def test_queue_command_with_a_running_server(tmp_path: Path, serve: Callable[..., Server]) -> None:
    with ThreadedReceiver(["406"]) as receiver:
        server = serve(
            "--deliver",
            f"http://127.0.0.1:{receiver.port}/hook",
            "--queue",
            str(tmp_path / "queue"),
            "--sink",
            f"maildir:{tmp_path / 'maildir'}",
            "--webhook-format",
            "json",
        )
        assert server.send()[0] == 250
        wait_until(lambda: "dead-lettered" in server.output, timeout=30, what="a dead letter")
        [record] = [json.loads(line) for line in queue_command(tmp_path, "--json", "list").stdout.splitlines()]
        message_id = record["id"]
        assert record["state"] == "dead" and record["dead_reason"].startswith("app@example.test: HTTP 406")
        listing = queue_command(tmp_path, "list")
        assert listing.returncode == 0
        assert f"{message_id}!" in listing.stdout and "HTTP 406" in listing.stdout
        assert "0 queued, 1 dead" in listing.stdout
        shown = queue_command(tmp_path, "show", message_id)
        assert shown.returncode == 0 and "state: dead" in shown.stdout
        assert "recipient: <app@example.test> failed (HTTP 406" in shown.stdout
        assert "Subject: via the queue" in shown.stdout and "Hello" not in shown.stdout
        assert "Hello" in queue_command(tmp_path, "show", message_id, "--body").stdout
        assert len(os.listdir(tmp_path / "maildir" / "new")) == 1  # --sink kept a copy
        receiver.script = ["200"]
        requeued = queue_command(tmp_path, "requeue", message_id)
        assert requeued.returncode == 0 and "1 message(s) requeued" in requeued.stdout
        wait_until(lambda: message_id in receiver.delivered_ids(), timeout=30, what="the requeued delivery")
        body = json.loads(receiver.requests[-1][2])
        assert body["id"] == message_id and body["subject"] == "via the queue"
        assert queue_command(tmp_path, "delete", message_id).returncode == 1  # gone already
        assert "no such message" in queue_command(tmp_path, "delete", message_id).stderr


def test_bad_delivery_settings_fail_with_one_line(tmp_path: Path) -> None:
    def start(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "smtpgate", "--port", str(free_port()), *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    bad_url = start("--deliver", "gopher://x")
    assert bad_url.returncode == 1 and "invalid delivery URL" in bad_url.stderr
    missing = start("--deliver", "https://example.test/", "--webhook-secret-file", str(tmp_path / "none"))
    assert missing.returncode == 1 and "cannot read the webhook secret file" in missing.stderr
    age = start("--deliver", "https://example.test/", "--retry-max-age", "soon")
    assert age.returncode == 2 and "invalid duration" in age.stderr
    no_queue = queue_command(tmp_path, "list")
    assert no_queue.returncode == 1 and "no queue directory" in no_queue.stderr


@pytest.mark.slow
def test_workers_share_one_queue(tmp_path: Path, serve: Callable[..., Server]) -> None:
    with ThreadedReceiver(["200"]) as receiver:
        server = serve(
            "--workers", "2", "--deliver", f"http://127.0.0.1:{receiver.port}/hook", "--queue", str(tmp_path / "queue")
        )
        for _ in range(12):
            assert server.send()[0] == 250
        acknowledged = set(ids_in(server.output))
        assert len(acknowledged) == 12
        wait_until(lambda: acknowledged <= receiver.delivered_ids(), timeout=30, what="every message delivered")
        wait_until(
            lambda: "Mail queue is empty" in queue_command(tmp_path, "list").stdout, timeout=30, what="an empty queue"
        )
    assert len(receiver.ok_ids) == 12  # each once: a held message is not taken by the other worker


def test_unusable_queue_directory_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "smtpgate",
            "--port",
            str(free_port()),
            "--deliver",
            "https://example.test/",
            "--queue",
            str(tmp_path / "file" / "queue"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "queue" in result.stderr

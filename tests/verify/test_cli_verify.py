"""The command with --verify, --verify=enforce, --dns and --dnsbl: a real smtpgate process,
smtplib as the client, Knot as the DNS."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import authres
import pytest
from dnsserver import KnotServer, free_port, txt, zone

ZONES = {
    "ok.test": f"@ TXT {txt('v=spf1 ip4:127.0.0.1 -all')}\n_dmarc TXT {txt('v=DMARC1; p=reject')}",
    "deny.test": f"@ TXT {txt('v=spf1 -all')}\n_dmarc TXT {txt('v=DMARC1; p=reject')}",
    "bl.test": "1.0.0.127 A 127.0.0.2\n1.0.0.127 TXT " + txt("listed: see https://bl.test/q?127.0.0.1"),
}
MESSAGE = b"From: alice@%s\r\nTo: bob@mx.test\r\nSubject: hi\r\n\r\nHello.\r\n"


@pytest.fixture(scope="module")
def dns_server(knot: Callable[[dict[str, str | None]], KnotServer]) -> KnotServer:
    return knot({origin: zone(origin, records) for origin, records in ZONES.items()} | {"broken.test": None})


class Running:
    def __init__(self, args: list[str], cwd: Path) -> None:
        self.port = free_port()
        self.stderr_path = cwd / "stderr.txt"
        with open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "smtpgate", "--port", str(self.port), "--name", "mx.test", *args],
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
                start_new_session=True,
            )

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def ready(self) -> bool:
        text = self.stderr
        workers = re.search(r"; (\d+) workers", text)
        if workers is None:
            return "Ctrl-C to stop" in text
        return len(re.findall(r"worker \d+ listening", text)) >= int(workers.group(1))

    def wait_listening(self, timeout: float = 30.0) -> Running:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"smtpgate did not start:\n{self.stderr}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def send(self, mail_from: str, author: str) -> None:
        with smtplib.SMTP("127.0.0.1", self.port, local_hostname="client.ok.test", timeout=30) as client:
            client.sendmail(mail_from, ["bob@mx.test"], MESSAGE % author.encode())


@pytest.fixture
def smtpgate(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(*args: str) -> Running:
        running = Running(list(args), tmp_path)
        started.append(running)
        return running.wait_listening()

    yield start
    for running in started:
        running.stop()


def stored(directory: Path) -> list[bytes]:
    return [path.read_bytes() for path in sorted(directory.glob("*.eml"))]


def test_verify_adds_the_header(smtpgate: Callable[..., Running], dns_server: KnotServer, tmp_path: Path) -> None:
    running = smtpgate("--sink", f"dir:{tmp_path / 'out'}", "--verify", "--dns", dns_server.address)
    assert "verifying senders" in running.stderr
    running.send("bounce@ok.test", "deny.test")
    (message,) = stored(tmp_path / "out")
    head = message.split(b"\r\n\r\n", 1)[0].decode()
    names = [line.split(":", 1)[0] for line in head.split("\r\n") if line and not line[0].isspace()]
    assert names[:3] == ["Return-Path", "Received", "Authentication-Results"]
    field = head[head.index("Authentication-Results:") :].split("\r\nFrom:", 1)[0]
    header = authres.AuthenticationResultsHeader.parse(field.replace("\r\n\t", " "))
    assert header.authserv_id == "mx.test"
    assert [(r.method, r.result) for r in header.results] == [
        ("spf", "pass"),
        ("spf", "none"),  # HELO client.ok.test publishes no SPF record
        ("dkim", "none"),
        ("dmarc", "fail"),
        ("arc", "none"),
    ]
    assert message.endswith(MESSAGE % b"deny.test")


def test_enforce_refuses(smtpgate: Callable[..., Running], dns_server: KnotServer, tmp_path: Path) -> None:
    running = smtpgate("--sink", f"dir:{tmp_path / 'out'}", "--verify=enforce", "--dns", dns_server.address)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        running.send("bounce@deny.test", "ok.test")
    assert refused.value.recipients["bob@mx.test"][0] == 550
    with pytest.raises(smtplib.SMTPDataError) as rejected:
        running.send("bounce@ok.test", "deny.test")
    assert (rejected.value.smtp_code, rejected.value.smtp_error[:6]) == (550, b"5.7.1 ")
    with pytest.raises(smtplib.SMTPDataError) as deferred:
        running.send("bounce@ok.test", "x.broken.test")
    assert deferred.value.smtp_code == 451
    assert stored(tmp_path / "out") == []
    running.send("bounce@ok.test", "ok.test")
    assert len(stored(tmp_path / "out")) == 1


def test_enforce_with_unanswering_dns_defers(smtpgate: Callable[..., Running], tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        running = smtpgate(
            "--sink", f"dir:{tmp_path / 'out'}", "--verify=enforce", "--dns", address, "--dns-timeout", "0.5"
        )
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            running.send("bounce@ok.test", "ok.test")
    code, text = refused.value.recipients["bob@mx.test"]
    assert code == 451 and text.startswith(b"4.7.")
    assert stored(tmp_path / "out") == []


def test_dnsbl_refuses_at_connect(smtpgate: Callable[..., Running], dns_server: KnotServer, tmp_path: Path) -> None:
    running = smtpgate("--sink", f"dir:{tmp_path / 'out'}", "--dns", dns_server.address, "--dnsbl", "bl.test=2")
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        smtplib.SMTP("127.0.0.1", running.port, timeout=30)
    assert refused.value.smtp_code == 554
    assert b"blocked using bl.test; listed: see https://bl.test/q?127.0.0.1" in refused.value.smtp_error


def test_dnsbl_below_threshold_and_config_file(
    smtpgate: Callable[..., Running], dns_server: KnotServer, tmp_path: Path
) -> None:
    config = tmp_path / "smtpgate.toml"
    config.write_text(
        f'sink = "dir:out"\nverify = true\ndns = ["{dns_server.address}"]\n'
        'dnsbl = ["bl.test=0.5"]\ndnsbl_threshold = 1\nauthserv_id = "auth.mx.test"\n'
    )
    running = smtpgate("--config", str(config))
    running.send("bounce@ok.test", "ok.test")
    (message,) = stored(tmp_path / "out")
    assert b"Authentication-Results: auth.mx.test;" in message


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--verify", "--dns", "dns.example"], "name server must be an IP address"),
        (["--dnsbl", "nodot"], "invalid DNS blocklist zone"),
        (["--verify=maybe"], "invalid choice"),
        (["--dnsbl-threshold", "0"], "must be greater than 0"),
    ],
)
def test_bad_flags(tmp_path: Path, args: list[str], error: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "smtpgate", "--port", str(free_port()), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode in (1, 2)
    assert error in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_verify_with_worker_processes(smtpgate: Callable[..., Running], dns_server: KnotServer, tmp_path: Path) -> None:
    running = smtpgate("--sink", f"dir:{tmp_path / 'out'}", "--verify", "--dns", dns_server.address, "--workers", "2")
    for _ in range(4):
        running.send("bounce@ok.test", "ok.test")
    messages = stored(tmp_path / "out")
    assert len(messages) == 4
    assert all(b"spf=pass smtp.mailfrom=bounce@ok.test" in m and b"dmarc=pass" in m for m in messages)

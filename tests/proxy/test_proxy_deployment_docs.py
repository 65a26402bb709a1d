"""docs/deployment.md, run: the gateway's spool handler (250 only once the message is on
disk; nothing left behind on failures), the small reuse_port worker as two processes, and
the HAProxy configuration in front of two gateway processes with real clients on the
three ports, quiet health checks included.

The code and the configuration are read from the page itself, so the page cannot drift
from what was tested; only addresses, ports, paths and the check interval are substituted.
"""

from __future__ import annotations

import importlib.util
import json
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from proxy_support import HAProxy, require_haproxy

from support import Recorder, free_port, wait_until

pytestmark = pytest.mark.timeout(90)

DOC = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
MESSAGE = b"Subject: spooled\r\nMessage-ID: <1@example.org>\r\n\r\nkept safe\r\n"


def code_block(starts_with: str) -> str:
    """The fenced block of the deployment guide whose code starts with ``starts_with``."""
    for match in re.finditer(r"^```[a-z]*\n(.*?)^```", DOC.read_text(), re.S | re.M):
        if match.group(1).startswith(starts_with):
            return match.group(1)
    raise AssertionError(f"docs/deployment.md has no code block starting with {starts_with!r}")


def substitute(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert old in text, f"docs/deployment.md no longer contains {old!r}; update the test with the page"
        text = text.replace(old, new)
    return text


def make_spool(folder: Path) -> Path:
    for sub in ("tmp", "new"):
        (folder / sub).mkdir(parents=True)
    return folder


def spooled(spool: Path) -> list[tuple[dict, bytes]]:
    found = []
    for path in sorted((spool / "new").iterdir()):
        head, _, body = path.read_bytes().partition(b"\n")
        found.append((json.loads(head), body))
    return found


def tls_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the workers use generated development certificates
    return context


# ----------------------------------------------------------------------------- the spool handler


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[ModuleType]:
    """gateway.py from the page, imported, its spool in tmp_path."""
    source = tmp_path / "docs_gateway.py"
    source.write_text(code_block('"""gateway.py'))
    spec = importlib.util.spec_from_file_location("docs_gateway", source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.SPOOL = make_spool(tmp_path / "spool")
    yield module


def test_spool_holds_the_message_when_250_arrives(start_server, gateway):
    running = start_server(on_data=gateway.on_data)
    with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
        client.ehlo("client.example")
        client.mail("a@example.org")
        client.rcpt("b@example.com")
        code, text = client.data(MESSAGE)
        assert code == 250 and text.startswith(b"2.6.0 Queued as ")
        name = text.decode().rsplit(" ", 1)[1]
        # the moment the client has its 250, the message is in new/ (no waiting)
        assert (gateway.SPOOL / "new" / name).exists()
        client_port = client.sock.getsockname()[1]
    [(head, body)] = spooled(gateway.SPOOL)
    assert body == MESSAGE
    assert head["mail_from"] == "a@example.org" and head["rcpt_to"] == ["b@example.com"]
    assert (head["client_address"], head["client_port"], head["helo"]) == ("127.0.0.1", client_port, "client.example")
    assert list((gateway.SPOOL / "tmp").iterdir()) == []


def test_client_gone_mid_message_leaves_nothing(start_server, raw_client, gateway):
    closes = Recorder()
    running = start_server(on_data=gateway.on_data, on_close=closes.add)
    client = raw_client(running.port)
    assert client.reply()[0] == 220
    for command in ("EHLO client.example", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.com>"):
        assert client.command(command)[0] == 250
    assert client.command("DATA")[0] == 354
    # a body bigger than what the server buffers for a handler, so on_data is surely writing
    client.send(b"Subject: cut\r\n\r\n" + (b"x" * 998 + b"\r\n") * 1024)
    wait_until(lambda: list((gateway.SPOOL / "tmp").iterdir()), what="the temporary file")
    client.close()
    closes.wait_for(1)  # on_close runs after on_data finished
    assert list((gateway.SPOOL / "tmp").iterdir()) == []
    assert list((gateway.SPOOL / "new").iterdir()) == []


def test_oversized_message_is_refused_and_not_stored(start_server, gateway):
    running = start_server(on_data=gateway.on_data, size=1000)
    with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
        client.ehlo()
        client.mail("a@example.org")
        client.rcpt("b@example.com")
        code, _ = client.data(b"Subject: big\r\n\r\n" + b"y" * 5000 + b"\r\n")
        assert code == 552
    assert list((gateway.SPOOL / "tmp").iterdir()) == []
    assert list((gateway.SPOOL / "new").iterdir()) == []


def test_disk_failure_is_a_temporary_error_and_leaves_nothing(start_server, gateway, monkeypatch):
    def full_disk(file, tmp, final):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gateway, "commit", full_disk)
    running = start_server(on_data=gateway.on_data)
    with smtplib.SMTP("127.0.0.1", running.port, timeout=10) as client:
        client.ehlo()
        client.mail("a@example.org")
        client.rcpt("b@example.com")
        code, text = client.data(MESSAGE)
        assert code == 451 and b"4.3.0" in text, "the sender keeps the message and retries"
    assert list((gateway.SPOOL / "tmp").iterdir()) == []
    assert list((gateway.SPOOL / "new").iterdir()) == []


# ----------------------------------------------------------------------------- the small worker


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> list[int | None]:
    """SIGTERM, wait, kill what is left; the exit codes after SIGTERM (None: had to be killed)."""
    codes: list[int | None] = []
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            codes.append(process.wait(timeout=20))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
            codes.append(None)
    return codes


def test_small_worker_runs_as_several_processes_on_one_port(tmp_path: Path):
    port = free_port()
    script = tmp_path / "worker.py"
    script.write_text(
        substitute(
            code_block("import os\nfrom smtpgate import SMTPServer"),
            {"server.run(2525, reuse_port=True)": f'server.run({port}, host="127.0.0.1", reuse_port=True)'},
        )
    )
    workers = [
        subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(2)
    ]
    try:
        pids = {str(worker.pid) for worker in workers}
        seen: set[str] = set()
        deadline = time.monotonic() + 30
        while seen != pids:
            assert time.monotonic() < deadline, f"greeted by {seen}, expected {pids}"
            assert all(worker.poll() is None for worker in workers), "a worker exited"
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                    line = client.makefile("rb").readline().decode()
            except OSError:
                time.sleep(0.05)  # not listening yet
                continue
            assert line.startswith("220 ") and " worker " in line, line
            seen.add(line.split()[-1])
    finally:
        codes = stop_processes(workers)
    assert codes == [0, 0], "both workers stop cleanly on SIGTERM"


# ----------------------------------------------------------------------------- HAProxy + gateway

WRAPPER = """\
import asyncio, json, sys
from pathlib import Path

sys.path.insert(0, {folder!r})
import docs_gateway as gateway

config = json.loads(sys.argv[1])
gateway.HOST = "127.0.0.1"
gateway.PORTS = config["ports"]
gateway.PROXIES = ["127.0.0.1"]
gateway.TLS = {{}}  # the generated development certificate
gateway.SPOOL = Path(config["spool"])
gateway.check_password = lambda username, password: (username, password) == ("alice", "s3cret")


class Recording(gateway.SMTPServer):
    def __init__(self, **options):
        super().__init__(**options)
        self.on("connect", self.record)

    def record(self, session):
        with open(config["connects"], "a") as out:
            out.write(f"{{session.local_port}} {{session.remote_address}} {{session.remote_port}}\\n")


gateway.SMTPServer = Recording
asyncio.run(gateway.main())
"""


def quiet_lines(path: Path) -> list[str]:
    """A worker's log lines, minus the start-up ones."""
    lines = path.read_text(errors="replace").splitlines()
    return [line for line in lines if "listening on" not in line and "self-signed certificate" not in line]


def test_documented_haproxy_in_front_of_two_gateway_processes(tmp_path: Path):
    require_haproxy()
    spool = make_spool(tmp_path / "spool")
    (tmp_path / "docs_gateway.py").write_text(code_block('"""gateway.py'))
    wrapper = tmp_path / "run_gateway.py"
    wrapper.write_text(WRAPPER.format(folder=str(tmp_path)))
    ports = {"mx": free_port(), "submissions": free_port(), "submission": free_port()}
    connects = tmp_path / "connects.log"
    connects.touch()
    config = json.dumps({"ports": ports, "spool": str(spool), "connects": str(connects)})
    logs = [tmp_path / f"gateway{index}.log" for index in range(2)]
    workers = []
    for log in logs:
        with open(log, "wb") as out:
            workers.append(
                subprocess.Popen([sys.executable, str(wrapper), config], stdout=out, stderr=subprocess.STDOUT)
            )
    fronts = {25: free_port(), 465: free_port(), 587: free_port()}
    haproxy_config = substitute(
        code_block("global\n"),
        {
            "bind :25\n": f"bind 127.0.0.1:{fronts[25]}\n",
            "bind :465\n": f"bind 127.0.0.1:{fronts[465]}\n",
            "bind :587\n": f"bind 127.0.0.1:{fronts[587]}\n",
            "10.0.0.11:2525": f"127.0.0.1:{ports['mx']}",
            "10.0.0.12:2525": f"127.0.0.1:{ports['mx']}",
            "10.0.0.11:4465": f"127.0.0.1:{ports['submissions']}",
            "10.0.0.12:4465": f"127.0.0.1:{ports['submissions']}",
            "10.0.0.11:5587": f"127.0.0.1:{ports['submission']}",
            "10.0.0.12:5587": f"127.0.0.1:{ports['submission']}",
            "inter 5s": "inter 200ms",
        },
    )
    folder = tmp_path / "haproxy"
    folder.mkdir()
    proxy = HAProxy(folder, haproxy_config, fronts[25])
    try:
        for log in logs:
            wait_until(lambda log=log: log.read_text().count("listening on") == 3, 30, f"{log.name} listening")
        proxy.start()

        # Health checks: several per port, and not a line in the workers' INFO logs.
        def checks_per_port() -> dict[int, int]:
            counted = {port: 0 for port in ports.values()}
            for line in connects.read_text().splitlines():
                counted[int(line.split()[0])] += 1
            return counted

        wait_until(lambda: min(checks_per_port().values()) >= 4, 30, "health checks on every port")
        for log in logs:
            assert quiet_lines(log) == [], f"{log.name}: health checks were logged"
        assert "is DOWN" not in proxy.log()

        # Port 25: an MX delivery, and a refused foreign recipient.
        with smtplib.SMTP("127.0.0.1", fronts[25], timeout=10) as client:
            client.ehlo("mx.sender.example")
            mx_client = client.sock.getsockname()
            assert client.has_extn("starttls") and not client.has_extn("auth")
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                client.sendmail("a@sender.example", ["someone@elsewhere.example"], MESSAGE)
            assert client.sendmail("a@sender.example", ["bob@example.com"], MESSAGE) == {}

        # Port 465: implicit TLS behind HAProxy, AUTH.
        with smtplib.SMTP_SSL("127.0.0.1", fronts[465], timeout=10, context=tls_context()) as client:
            submissions_client = client.sock.getsockname()
            client.login("alice", "s3cret")
            assert client.sendmail("alice@example.com", ["x@elsewhere.example"], MESSAGE) == {}

        # Port 587: nothing before STARTTLS, then AUTH.
        with smtplib.SMTP("127.0.0.1", fronts[587], timeout=10) as client:
            client.ehlo()
            assert client.mail("alice@example.com")[0] == 530
            client.starttls(context=tls_context())
            client.ehlo()
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login("alice", "wrong")
            client.login("alice", "s3cret")
            submission_client = client.sock.getsockname()
            assert client.sendmail("alice@example.com", ["y@elsewhere.example"], MESSAGE) == {}

        stored = {(head["client_address"], head["client_port"]): head for head, _ in spooled(spool)}
        assert set(stored) == {mx_client, submissions_client, submission_client}
        assert stored[mx_client]["rcpt_to"] == ["bob@example.com"] and stored[mx_client]["user"] is None
        assert stored[submissions_client]["secure"] is True and stored[submissions_client]["user"] == "alice"
        assert stored[submission_client]["secure"] is True and stored[submission_client]["user"] == "alice"
        assert all(body == MESSAGE for _, body in spooled(spool))
        assert list((spool / "tmp").iterdir()) == []
    finally:
        proxy.stop()
        codes = stop_processes(workers)
    assert codes == [0, 0], "gateway workers stop cleanly on SIGTERM: " + " | ".join(
        log.read_text(errors="replace")[-2000:] for log in logs
    )

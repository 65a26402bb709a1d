"""SMTPServer.run(): serve until SIGINT or SIGTERM, then close gracefully (a real process)."""

from __future__ import annotations

import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

SCRIPT = """
import logging
import sys

from smtpgate import DataStream, Session, SMTPServer

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
store = sys.argv[1]


async def on_data(stream: DataStream, session: Session) -> None:
    body = await stream.read()
    with open(store, "ab") as handle:
        handle.write(body)


def on_close(session: Session) -> None:
    print("closed", session.id, flush=True)


server = SMTPServer(name="mx.test", disable_reverse_lookup=True, close_timeout=20, on_data=on_data, on_close=on_close)
server.on("listening", lambda server: print("listening", server.port, flush=True))
loop_factory = None
if sys.argv[2] == "uvloop":
    import uvloop

    loop_factory = uvloop.new_event_loop
server.run(0, host="127.0.0.1", loop_factory=loop_factory)
print("run returned", flush=True)
"""


def _closed_on(command: Callable[[], tuple[int, bytes]]) -> bool:
    """The server answered ``421`` and closed (or had closed already)."""
    try:
        return command()[0] == 421
    except smtplib.SMTPServerDisconnected:
        return True


def _wait_for(path: Path, text: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} in output: {content!r}")
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("signum", "loop"), [(signal.SIGINT, "asyncio"), (signal.SIGTERM, "asyncio"), (signal.SIGTERM, "uvloop")]
)
def test_run_closes_gracefully_on_signal(tmp_path: Path, signum: signal.Signals, loop: str) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    script = tmp_path / "server.py"
    script.write_text(SCRIPT)
    store, out, err = tmp_path / "store.eml", tmp_path / "out.txt", tmp_path / "err.txt"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(script), str(store), loop], stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL
        )
    try:
        port = int(_wait_for(out, "listening ", process).split("listening ", 1)[1].split()[0])
        busy = smtplib.SMTP("127.0.0.1", port, timeout=20)
        busy.ehlo("client.test")
        busy.mail("a@example.com")
        busy.rcpt("b@example.com")
        idle = socket.create_connection(("127.0.0.1", port), timeout=20)
        assert idle.recv(1024).startswith(b"220 ")

        process.send_signal(signum)
        _wait_for(err, f"{signum.name}: closing", process)
        # The idle session is told at once; the one in a transaction may finish it.
        assert idle.recv(1024).startswith(b"421 ")
        idle.close()
        code, _ = busy.data(b"Subject: last one\r\n\r\nstill delivered\r\n")
        assert code == 250
        assert _closed_on(lambda: busy.noop())
        busy.close()

        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    output, errors = out.read_text(), err.read_text()
    assert "Traceback" not in errors and "Traceback" not in output
    assert output.count("closed ") == 2 and output.rstrip().endswith("run returned")
    assert store.read_bytes() == b"Subject: last one\r\n\r\nstill delivered\r\n"


def test_run_second_signal_ends_sessions_at_once(tmp_path: Path) -> None:
    script = tmp_path / "server.py"
    script.write_text(SCRIPT)
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "store.eml"), "asyncio"], stdout=stdout, stderr=stderr
        )
    try:
        port = int(_wait_for(out, "listening ", process).split("listening ", 1)[1].split()[0])
        busy = smtplib.SMTP("127.0.0.1", port, timeout=20)
        busy.ehlo("client.test")
        busy.mail("a@example.com")
        process.send_signal(signal.SIGTERM)
        _wait_for(err, "SIGTERM: closing", process)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.wait(15) == 0
        assert time.monotonic() - started < 10  # not the close_timeout of 20 s
        assert _closed_on(lambda: busy.rcpt("b@example.com"))
        busy.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert "SIGINT again: closing 1 sessions now" in err.read_text()
    assert "Traceback" not in err.read_text()


def test_run_raises_what_listen_raises_and_leaves_no_loop_behind() -> None:
    from smtpgate import SMTPServer

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            SMTPServer(name="mx.test").run(port, host="127.0.0.1")

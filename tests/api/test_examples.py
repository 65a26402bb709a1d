"""examples/print_server.py runs as written: prints a message, stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "print_server.py"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(path: Path, text: str, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} in {path.read_text()!r}")
        time.sleep(0.02)


def test_print_server_example(tmp_path: Path) -> None:
    port = _free_port()
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-u", str(EXAMPLE), "--port", str(port)], stdout=stdout, stderr=stderr
        )
    try:
        _wait_for(out, "Ctrl-C to stop", process)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("me@example.com", ["you@example.com"], b"Subject: hi there\r\n\r\nhello\r\n")
        _wait_for(out, "subject: hi there", process)
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert "Traceback" not in err.read_text()
    assert "to:      you@example.com" in out.read_text()

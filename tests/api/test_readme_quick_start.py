"""The README's quick start, run as written (on a free port): it serves, refuses an
unknown domain, and Ctrl-C (SIGINT) ends it cleanly."""

from __future__ import annotations

import re
import signal
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
RUN = 'server.run(2525, host="127.0.0.1")'


def _quick_start() -> str:
    section = README.read_text().split("## Quick start", 1)[1]
    match = re.search(r"^```python\n(.*?)^```", section, re.S | re.M)
    assert match, "README.md has no python block under 'Quick start'"
    code = match.group(1)
    assert RUN in code, f"the quick start no longer calls {RUN}; update this test with it"
    return code


def test_readme_quick_start_serves_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    script = tmp_path / "quick_start.py"
    script.write_text(_quick_start().replace(RUN, RUN.replace("2525", str(port))))
    err = tmp_path / "err.txt"
    with open(err, "wb") as stderr:
        process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client = smtplib.SMTP("127.0.0.1", port, timeout=10)
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, err.read_text()
                time.sleep(0.05)
        with client:
            client.ehlo("client.test")
            assert client.mail("me@example.org")[0] == 250
            assert client.rcpt("someone@elsewhere.test")[0] == 550
            assert client.rcpt("you@example.com")[0] == 250
            code, text = client.data(b"Subject: hi\r\n\r\nhello\r\n")
            assert (code, text) == (250, b"2.6.0 Queued as 7F3A")
        process.send_signal(signal.SIGINT)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert "Traceback" not in err.read_text()

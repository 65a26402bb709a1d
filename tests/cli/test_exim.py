"""A real MTA as the client: Exim relays into the ``smtpgate`` command over STARTTLS with
PIPELINING and BDAT (CHUNKING); a multi-megabyte message arrives byte for byte.

Exim is not installed (it conflicts with Postfix as a Debian package): ``scripts/test``
extracts ``exim4-daemon-light`` into ``.venv/exim`` and the test runs that binary with its
own configuration (``-C``) and spool in a temporary directory, as an unprivileged user
(having dropped its privileges for ``-C``, Exim logs on stderr).
"""

from __future__ import annotations

import base64
import grp
import os
import pwd
import random
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXIM = Path(os.environ.get("SMTPGATE_EXIM", ROOT / ".venv" / "exim" / "usr" / "sbin" / "exim4"))

CONFIG = """\
exim_path = {exim}
exim_user = {user}
exim_group = {group}
trusted_users = {user}
spool_directory = {work}/spool
log_file_path = {work}/log/%slog
primary_hostname = exim.test
qualify_domain = example.com
keep_environment =
tls_advertise_hosts =
message_size_limit = 0
received_header_text = Received: from exim.test by exim.test

begin routers

to_smtpgate:
  driver = manualroute
  route_list = * 127.0.0.1::{port} byname
  self = send
  transport = to_smtpgate

begin transports

to_smtpgate:
  driver = smtp
  allow_localhost
  hosts_require_tls = *
  tls_verify_certificates =
  hosts_try_chunking = *

begin retry

* * F,1m,1m
"""


@dataclass
class Exim:
    binary: Path
    work: Path
    user: str
    group: str
    as_user: bool  # run under another (unprivileged) user: we are root

    def send(self, port: int, sender: str, recipients: list[str], message: bytes) -> subprocess.CompletedProcess[bytes]:
        """Submit ``message`` with ``exim -bm -odi``: delivered to smtpgate before exim returns."""
        config = self.work / f"exim-{port}.conf"
        config.write_text(CONFIG.format(exim=self.binary, user=self.user, group=self.group, work=self.work, port=port))
        config.chmod(0o644)
        extra = {"user": self.user, "group": self.group, "extra_groups": []} if self.as_user else {}
        return subprocess.run(
            [str(self.binary), "-C", str(config), "-d-all+transport", "-odi", "-f", sender, "-bm", *recipients],
            input=message,
            capture_output=True,
            timeout=120,
            cwd=self.work,
            **extra,  # type: ignore[arg-type]
        )


@pytest.fixture
def exim(tmp_path: Path) -> Iterator[Exim]:
    if not EXIM.exists():
        pytest.skip(f"Exim is not extracted at {EXIM} (scripts/test does it)")
    try:
        pwd.getpwnam("Debian-exim")  # the user compiled into Debian's binary
    except KeyError:
        pytest.skip("the Debian-exim user does not exist (scripts/test creates it)")
    if os.getuid() == 0:
        # Exim will not deliver as root: run it as nobody, in a directory nobody can use.
        work = Path(tempfile.mkdtemp(prefix="smtpgate-exim-"))
        user, group, as_user = "nobody", "nogroup", True
    else:
        work = tmp_path / "exim"
        work.mkdir()
        user, group, as_user = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name, False
    try:
        binary = work / "exim4"
        shutil.copyfile(EXIM, binary)  # reachable by the unprivileged user wherever the checkout is
        binary.chmod(0o755)  # and not set-uid: Exim runs as that user only
        for folder in ("spool", "log"):
            (work / folder).mkdir()
        if as_user:
            work.chmod(0o755)
            for path in (work / "spool", work / "log"):
                shutil.chown(path, user, group)
        yield Exim(binary, work, user, group, as_user)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _big_message(size: int) -> bytes:
    """Headers Exim keeps as they are, and a body of ``size`` bytes: base64 lines, lines
    starting with dots, long lines, an empty line."""
    rng = random.Random(1234)
    lines: list[bytes] = []
    total = 0
    while total < size:
        kind = rng.random()
        if kind < 0.05:
            line = b"." * rng.randint(1, 3) + b" dotted line"
        elif kind < 0.10:
            line = bytes(rng.choice(b"abcdefghij 0123456789") for _ in range(rng.randint(200, 990)))
        elif kind < 0.12:
            line = b""
        else:
            line = base64.b64encode(rng.randbytes(57))
        lines.append(line)
        total += len(line) + 2
    headers = (
        b"From: Sender <sender@example.com>\r\n"
        b"To: rcpt1@example.net, rcpt2@example.net\r\n"
        b"Subject: a big one through Exim\r\n"
        b"Date: Wed, 02 Dec 2026 12:00:00 +0000\r\n"
        b"Message-ID: <big.1@example.com>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n"
    )
    return headers + b"\r\n" + b"\r\n".join(lines) + b"\r\n"


def test_exim_relays_a_big_message_over_starttls_pipelining_and_chunking(smtpgate_cli, tmp_path, exim):
    command = smtpgate_cli("--sink", "dir:eml", "--max-size", "50M")
    message = _big_message(4 * 1024 * 1024)
    result = exim.send(command.port, "sender@example.com", ["rcpt1@example.net", "rcpt2@example.net"], message)
    debug = result.stderr.decode(errors="replace")
    assert result.returncode == 0, debug[-3000:]

    # What Exim did on the wire (its transport's command log): STARTTLS, then MAIL and both
    # RCPTs pipelined ("|"), then the message in BDAT chunks.
    cmdlog = re.search(r"cmdlog: '([^']*)'", debug)
    assert cmdlog, debug[-3000:]
    steps = cmdlog.group(1).split(":")
    assert steps[:5] == ["220", "EHLO", "250-", "STARTTLS", "220"], steps
    assert steps[7:10] == ["MAIL|", "RCPT|", "RCPT|"], steps
    assert "BDAT" in steps and "DATA" not in steps, steps
    log = debug  # an Exim that dropped its privileges for -C logs on stderr
    assert re.search(r"=> rcpt1@example.net .*X=TLS1\.3:\S+ CV=no K C=\"250 2\.6\.0 ", log), log
    assert "Completed" in log and "==" not in log, log

    stored = list((tmp_path / "eml").iterdir())
    assert len(stored) == 1
    data = stored[0].read_bytes()
    # smtpgate's trace headers and Exim's Received come first; then the message, unchanged.
    assert data.endswith(message)
    prefix = data[: len(data) - len(message)]
    assert prefix.count(b"Received: ") == 2 and prefix.endswith(b"\r\n")
    assert b"with ESMTPS" in prefix
    assert "to=<rcpt1@example.net>,<rcpt2@example.net>" in command.stdout, command.stdout

"""Queued messages for deliverer tests, and Postfix (a smarthost) and Dovecot (an LMTP
mailbox server) started by the tests.

Each runs from its own configuration in a fresh temporary directory, on a free loopback
port, with no system service involved, and is always stopped. Both need root to start
(they drop privileges to their own users); without root the commands go through
``sudo -n`` when that works, and the tests are skipped otherwise.

The directory is made with ``tempfile.mkdtemp`` rather than pytest's ``tmp_path``: the
daemons' unprivileged processes must traverse it, and pytest's base folder is private.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from smtpgate.queue import BytesBody, QueuedMessage, RecipientState, new_message_id
from smtpgate.sinks import MessageInfo
from support import free_port

BODY = (
    b"From: Sender <sender@example.org>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: delivery test\r\n"
    b"Message-ID: <test@example.org>\r\n"
    b"\r\n"
    b"Hello,\r\n"
    b".a line that starts with a dot\r\n"
    b"bye\r\n"
)


def make_message(
    recipients: tuple[str, ...] = ("alice@example.test",),
    body: bytes = BODY,
    sender: str = "sender@example.org",
    message_id: str | None = None,
) -> QueuedMessage:
    """A queued message held in memory, as a backend would hand it to a deliverer."""
    info = MessageInfo(sender=sender, recipients=recipients, client_address="127.0.0.1", client_name="client.test")
    return QueuedMessage(
        id=message_id or new_message_id(),
        info=info,
        size=len(body),
        queued=time.time(),
        recipients=tuple(RecipientState(address) for address in recipients),
        body=BytesBody(body),
    )


POSTFIX = "/usr/sbin/postfix"
DOVECOT = "/usr/sbin/dovecot"
DOVECOT_LMTP = "/usr/lib/dovecot/lmtp"


def _as_root() -> list[str]:
    """The prefix that runs a command as root, or skip the test."""
    if os.geteuid() == 0:
        return []
    if shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return ["sudo", "-n"]
    pytest.skip("Postfix and Dovecot need root (or passwordless sudo) to start")


def root_run(*args: str, check: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*_as_root(), *args], capture_output=True, text=True, check=check, timeout=timeout)


def read_as_root(path: Path) -> bytes:
    """A file the daemon wrote (owned by its unprivileged user)."""
    return subprocess.run([*_as_root(), "cat", str(path)], capture_output=True, check=True, timeout=30).stdout


def list_as_root(folder: Path) -> list[Path]:
    out = subprocess.run([*_as_root(), "ls", "-1", str(folder)], capture_output=True, text=True, timeout=30)
    return [folder / name for name in out.stdout.split()] if out.returncode == 0 else []


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.05)


def _nobody() -> tuple[int, int]:
    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


def _public_tempdir(prefix: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    return folder


class Postfix:
    """A private Postfix: one smtpd on 127.0.0.1:port; mailboxes for ``alice`` and
    ``bob`` at example.test delivered to Maildirs; ``refused@example.test`` answered
    ``550 5.1.1`` and ``later@example.test`` ``450 4.2.0`` at RCPT time."""

    def __init__(self, cert_pem: bytes | None = None, key_pem: bytes | None = None) -> None:
        if not os.path.exists(POSTFIX):
            pytest.skip("Postfix is not installed (scripts/test installs it)")
        self.root = _public_tempdir("smtpgate-postfix-")
        self.port = free_port()
        self.etc = self.root / "etc"
        self.mail = self.root / "mail"
        self.log = self.root / "maillog"
        for name in ("etc", "spool", "data", "mail"):
            (self.root / name).mkdir()
        uid, gid = _nobody()
        tls = ""
        if cert_pem is not None and key_pem is not None:
            (self.etc / "cert.pem").write_bytes(cert_pem)
            (self.etc / "key.pem").write_bytes(key_pem)
            (self.etc / "key.pem").chmod(0o644)
            tls = (
                f"smtpd_tls_cert_file = {self.etc}/cert.pem\n"
                f"smtpd_tls_key_file = {self.etc}/key.pem\n"
                "smtpd_tls_security_level = may\n"
                "smtpd_tls_received_header = yes\n"
            )
        main = f"""compatibility_level = 3.6
queue_directory = {self.root}/spool
data_directory = {self.root}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = smarthost.test
mydomain = smarthost.test
myorigin = smarthost.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
virtual_mailbox_domains = example.test
virtual_mailbox_base = {self.mail}
virtual_mailbox_maps = texthash:{self.etc}/mailboxes
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = 1
smtpd_recipient_restrictions = check_recipient_access texthash:{self.etc}/access, permit_mynetworks,
    reject_unauth_destination
maillog_file = {self.log}
maillog_file_prefixes = {self.root}
smtputf8_enable = no
biff = no
{tls}"""
        (self.etc / "main.cf").write_text(main)
        services = [
            f"127.0.0.1:{self.port} inet n - n - - smtpd",
            "pickup unix n - n 60 1 pickup",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "smtp unix - - n - - smtp",
            "relay unix - - n - - smtp",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "local unix - n n - - local",
            "virtual unix - n n - - virtual",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
            "tlsmgr unix - - n 1000? 1 tlsmgr",
        ]
        (self.etc / "master.cf").write_text("\n".join(services) + "\n")
        (self.etc / "mailboxes").write_text("alice@example.test alice/\nbob@example.test bob/\n")
        (self.etc / "access").write_text(
            "refused@example.test 550 5.1.1 no such user here\nlater@example.test 450 4.2.0 try again later\n"
        )

    def start(self) -> Postfix:
        root_run("chown", "postfix:postfix", str(self.root / "data"))
        root_run("chown", "nobody:", str(self.mail))
        result = root_run(POSTFIX, "-c", str(self.etc), "start", check=False)
        if result.returncode != 0:
            log = read_as_root(self.log).decode(errors="replace") if self.log.exists() else ""
            self.stop()
            raise AssertionError(f"postfix did not start: {result.stderr}\n{log}")
        wait_port(self.port)
        return self

    def maildir(self, user: str) -> list[bytes]:
        """The messages delivered to ``user@example.test``."""
        return [read_as_root(path) for path in list_as_root(self.mail / user / "new")]

    def stop(self) -> None:
        pid = _read_pid(self.root / "spool" / "pid" / "master.pid")
        root_run(POSTFIX, "-c", str(self.etc), "stop", check=False)
        _wait_gone(pid)
        root_run("rm", "-rf", str(self.root), check=False)


class Dovecot:
    """A private Dovecot serving only LMTP on 127.0.0.1:port; users ``alice`` and ``bob``
    (passwd-file) with Maildirs under the temporary directory."""

    def __init__(self) -> None:
        if not (os.path.exists(DOVECOT) and os.path.exists(DOVECOT_LMTP)):
            pytest.skip("Dovecot LMTP is not installed (scripts/test installs it)")
        self.root = _public_tempdir("smtpgate-dovecot-")
        self.port = free_port()
        self.mail = self.root / "mail"
        for name in ("run", "state", "mail"):
            (self.root / name).mkdir()
        uid, gid = _nobody()
        users = "".join(f"{user}:{{PLAIN}}unused:{uid}:{gid}::{self.mail}/{user}\n" for user in ("alice", "bob"))
        (self.root / "users").write_text(users)
        self.conf = self.root / "dovecot.conf"
        self.conf.write_text(
            f"""base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.root}/dovecot.log
protocols = lmtp
ssl = no
listen = 127.0.0.1
first_valid_uid = 1
auth_username_format = %Ln
mail_location = maildir:{self.mail}/%n
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.port}
  }}
}}
passdb {{
  driver = passwd-file
  args = {self.root}/users
}}
userdb {{
  driver = passwd-file
  args = {self.root}/users
}}
"""
        )

    def start(self) -> Dovecot:
        root_run("chown", "nobody:", str(self.mail))
        # The daemon keeps its standard streams: a file, not a pipe that would never end.
        with open(self.root / "start.log", "wb") as out:
            started = subprocess.run(
                [*_as_root(), DOVECOT, "-c", str(self.conf)], stdout=out, stderr=out, timeout=60, check=False
            )
        if started.returncode != 0:
            output = (self.root / "start.log").read_text(errors="replace")
            self.stop()
            raise AssertionError(f"dovecot did not start: {output}")
        wait_port(self.port)
        return self

    def maildir(self, user: str) -> list[bytes]:
        """The messages in ``user``'s INBOX."""
        return [read_as_root(path) for path in list_as_root(self.mail / user / "new")]

    def stop(self) -> None:
        pid = _read_pid(self.root / "run" / "master.pid")
        root_run(DOVECOT, "-c", str(self.conf), "stop", check=False)
        _wait_gone(pid)
        root_run("rm", "-rf", str(self.root), check=False)


def _read_pid(path: Path) -> int | None:
    try:
        return int(read_as_root(path).split()[0])
    except (subprocess.CalledProcessError, ValueError, IndexError):
        return None


def _wait_gone(pid: int | None, timeout: float = 20.0) -> None:
    """Until the daemon's master process has exited (or is a zombie)."""
    if pid is None:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return
        if status.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
            return
        time.sleep(0.05)

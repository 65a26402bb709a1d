"""Helpers for the proxy tests: PROXY header builders, a real HAProxy, waiting without sleeping blind."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from smtpgate.proxy import V2_SIGNATURE

# ----------------------------------------------------------------------------- headers


def v1(source: str = "192.0.2.10", destination: str = "198.51.100.1", sport: int = 40000, dport: int = 25) -> bytes:
    """A PROXY v1 line for TCP4 or TCP6 (chosen from the address)."""
    family = "TCP6" if ":" in source else "TCP4"
    return f"PROXY {family} {source} {destination} {sport} {dport}\r\n".encode("ascii")


def v2(command: int = 0x1, family_protocol: int = 0x11, body: bytes = b"", *, version: int = 2) -> bytes:
    """A PROXY v2 header with an exact length field (use :func:`v2_raw` for a lying one)."""
    return V2_SIGNATURE + bytes([(version << 4) | command, family_protocol]) + struct.pack("!H", len(body)) + body


def v2_raw(command_byte: int, family_protocol: int, length: int, body: bytes) -> bytes:
    return V2_SIGNATURE + bytes([command_byte, family_protocol]) + struct.pack("!H", length) + body


def v2_tcp4(
    source: str = "192.0.2.10",
    destination: str = "198.51.100.1",
    sport: int = 40000,
    dport: int = 25,
    tlvs: bytes = b"",
) -> bytes:
    body = socket.inet_aton(source) + socket.inet_aton(destination) + struct.pack("!HH", sport, dport)
    return v2(0x1, 0x11, body + tlvs)


def v2_tcp6(
    source: str = "2001:db8::10",
    destination: str = "2001:db8::1",
    sport: int = 40000,
    dport: int = 25,
    tlvs: bytes = b"",
) -> bytes:
    body = (
        socket.inet_pton(socket.AF_INET6, source)
        + socket.inet_pton(socket.AF_INET6, destination)
        + struct.pack("!HH", sport, dport)
    )
    return v2(0x1, 0x21, body + tlvs)


def v2_local(body: bytes = b"") -> bytes:
    """The LOCAL command (HAProxy's own health checks)."""
    return v2(0x0, 0x00, body)


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


# ----------------------------------------------------------------------------- waiting


# ----------------------------------------------------------------------------- HAProxy

HAPROXY_CONFIG = """\
global
    log stderr format raw local0 info

defaults
    mode tcp
    log global
    option tcplog
    timeout connect 5s
    timeout client 5m
    timeout server 5m
    timeout check 5s

frontend smtp_in
    bind 127.0.0.1:{frontend_port}
    default_backend smtpgate

backend smtpgate
{backend_options}{servers}
"""

# What docs/deployment.md recommends: a check that reads the greeting and hangs up, sent
# with a PROXY header like every other connection (HAProxy adds it to checks by itself
# when the server line says send-proxy or send-proxy-v2 and no explicit connect rule).
GREETING_CHECK = """\
    balance leastconn
    option tcp-check
    tcp-check expect rstring ^220
"""


def haproxy_config(
    frontend_port: int,
    backends: list[int],
    server_options: str = "send-proxy-v2",
    backend_options: str = "",
) -> str:
    servers = "\n".join(
        f"    server gate{index} 127.0.0.1:{port} {server_options}" for index, port in enumerate(backends, 1)
    )
    return HAPROXY_CONFIG.format(frontend_port=frontend_port, backend_options=backend_options, servers=servers)


class HAProxy:
    """``haproxy -f <cfg> -db`` as a child process, listening on ``port`` once started."""

    def __init__(self, folder: Path, config: str, port: int) -> None:
        self.config_path = folder / "haproxy.cfg"
        self.config_path.write_text(config)
        self.log_path = folder / "haproxy.log"
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> HAProxy:
        binary = shutil.which("haproxy")
        assert binary is not None
        check = subprocess.run(
            [binary, "-c", "-f", str(self.config_path)], capture_output=True, timeout=timeout, check=False
        )
        assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [binary, "-f", str(self.config_path), "-db"], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while not self._accepts_without_a_session():
            if self.process.poll() is not None:
                raise AssertionError(f"haproxy exited with {self.process.returncode}: {self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"haproxy did not listen within {timeout} s: {self.log()}")
            time.sleep(0.05)
        return self

    def _accepts_without_a_session(self) -> bool:
        """Is the frontend bound? Probed by binding the port ourselves (no connection through
        HAProxy, so the backend sees no extra session)."""
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", self.port))
            except OSError:
                return True
        return False

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        self.process = None
        if process.poll() is None:
            process.kill()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck child
            pass


def require_haproxy() -> str:
    path = shutil.which("haproxy")
    if path is None:
        pytest.skip("haproxy is not on PATH (Debian: apt-get install haproxy)")
    return path

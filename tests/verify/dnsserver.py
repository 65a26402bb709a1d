"""A real authoritative DNS server for the tests: Knot DNS (``knotd``) on 127.0.0.1.

`KnotServer` writes the zone files and a configuration into a temporary directory,
starts ``knotd`` on a free port (UDP and TCP), waits until it answers, and stops it.
A zone whose text is ``None`` is configured with a broken file, so Knot answers SERVFAIL
for every name in it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode

START_TIMEOUT = 15.0


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (best effort)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def knotd_path() -> str | None:
    return shutil.which("knotd") or ("/usr/sbin/knotd" if Path("/usr/sbin/knotd").exists() else None)


class KnotServer:
    """``knotd`` serving ``zones`` (origin → zone file text, or None for a broken zone)."""

    def __init__(self, directory: Path, zones: dict[str, str | None]) -> None:
        self.directory = directory
        self.zones = zones
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write(self) -> Path:
        for sub in ("run", "db", "zones"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        lines = [
            "server:",
            f'    rundir: "{self.directory / "run"}"',
            f"    listen: 127.0.0.1@{self.port}",
            "    udp-workers: 1",
            "    tcp-workers: 1",
            "    background-workers: 1",
            "database:",
            f'    storage: "{self.directory / "db"}"',
            "log:",
            "  - target: stderr",
            "    any: critical",
            "template:",
            "  - id: default",
            f'    storage: "{self.directory / "zones"}"',
            "    zonefile-sync: -1",
            "    zonefile-load: whole",
            "    journal-content: none",
            "    semantic-checks: off",
            "zone:",
        ]
        for origin, text in self.zones.items():
            origin = origin.rstrip(".") + "."
            filename = f"{origin}zone"
            body = text if text is not None else f'$ORIGIN {origin}\n@ 60 TXT "unterminated\n'
            (self.directory / "zones" / filename).write_text(body)
            lines += [f"  - domain: {origin}", f"    file: {filename}"]
        config = self.directory / "knot.conf"
        config.write_text("\n".join(lines) + "\n")
        return config

    def start(self) -> None:
        knotd = knotd_path()
        if knotd is None:
            raise RuntimeError("knotd is not installed (Debian package knot)")
        self.port = free_port()
        config = self._write()
        self.process = subprocess.Popen([knotd, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT
        origin = next((o for o, t in self.zones.items() if t is not None), None)
        while True:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                raise RuntimeError(f"knotd exited: {error.strip()}")
            if origin is not None and self._answers(origin):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("knotd did not answer in time")
            time.sleep(0.05)

    def _answers(self, origin: str) -> bool:
        query = dns.message.make_query(origin.rstrip(".") + ".", "SOA")
        try:
            reply = dns.query.udp(query, "127.0.0.1", port=self.port, timeout=0.5)
        except (OSError, dns.exception.Timeout):
            return False
        return reply.rcode() == dns.rcode.NOERROR and bool(reply.answer)

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        self.process = None
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()


def zone(origin: str, records: str) -> str:
    """A zone file: SOA and NS at the apex, then ``records`` (relative names allowed)."""
    origin = origin.rstrip(".") + "."
    head = f"$ORIGIN {origin}\n$TTL 60\n@ SOA ns.{origin} hostmaster.{origin} 1 3600 600 86400 60\n@ NS ns.{origin}\n"
    return head + records.strip("\n") + "\n"


def txt(value: str) -> str:
    """A TXT rdata: ``value`` split in quoted strings of at most 255 bytes."""
    raw = value.encode()
    parts = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
    quoted = []
    for part in parts:
        text = part.decode().replace("\\", "\\\\").replace('"', '\\"')
        quoted.append(f'"{text}"')
    return "( " + " ".join(quoted) + " )"

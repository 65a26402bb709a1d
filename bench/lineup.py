"""The servers and scenarios of the bench: what each server process runs, and what load
each scenario sends (bench/README.md describes both)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = sys.executable
MIB = 1024 * 1024

# ----------------------------------------------------------------------------- servers


@dataclass
class Server:
    name: str
    label: str
    argv: list[str]  # "{port}", "{cert}", "{key}" are filled in
    tls: bool = True
    python: bool = False
    skip: tuple[str, ...] = ()  # scenarios it sits out
    env: dict[str, str] | None = None  # added to the environment


def server_table() -> list[Server]:
    cert = ["--cert", "{cert}", "--key", "{key}"]
    return [
        Server("smtpgate", "smtpgate (asyncio)",
               [PY, "servers/smtpgate_sink.py", "--port", "{port}", "--loop", "asyncio", *cert], python=True),
        Server("smtpgate-uvloop", "smtpgate (uvloop)",
               [PY, "servers/smtpgate_sink.py", "--port", "{port}", "--loop", "uvloop", *cert], python=True),
        Server("smtpgate-defaults", "smtpgate defaults (asyncio)",
               [PY, "servers/smtpgate_sink.py", "--port", "{port}", "--loop", "asyncio", "--defaults", *cert],
               python=True),
        Server("smtpgate-defaults-uvloop", "smtpgate defaults (uvloop)",
               [PY, "servers/smtpgate_sink.py", "--port", "{port}", "--loop", "uvloop", "--defaults", *cert],
               python=True),
        # The checkout's sources first on the path: the same defaults, not compiled (what an
        # editable install or a machine without a C compiler runs).
        Server("smtpgate-pure", "smtpgate defaults, pure Python (asyncio)",
               [PY, "servers/smtpgate_sink.py", "--port", "{port}", "--loop", "asyncio", "--defaults", *cert],
               python=True, env={"PYTHONPATH": str(ROOT / "src")}),
        Server("aiosmtpd", "aiosmtpd (asyncio)",
               [PY, "servers/aiosmtpd_sink.py", "--port", "{port}", "--loop", "asyncio", *cert], python=True),
        Server("aiosmtpd-uvloop", "aiosmtpd (uvloop)",
               [PY, "servers/aiosmtpd_sink.py", "--port", "{port}", "--loop", "uvloop", *cert], python=True),
        Server("node", "Node smtp-server", ["node", "node/sink.js", "--port", "{port}", *cert]),
        Server("node-nodelay", "Node smtp-server, no 100 ms greeting delay",
               ["node", "node/sink.js", "--port", "{port}", "--no-greeting-delay", *cert], skip=("idle", "idle-tls")),
        Server("smtp-sink", "Postfix smtp-sink (C)",
               ["smtp-sink", "-u", "nobody", "-m", "30000", "127.0.0.1:{port}", "4096"], tls=False),
    ]  # fmt: skip


# ----------------------------------------------------------------------------- scenarios


@dataclass
class Scenario:
    name: str
    title: str
    kind: str  # "send" or "hold"
    sessions: int = 0
    messages: int = 0  # per round
    rounds: int = 1  # each repetition's figures are medians over its rounds (measure_sends)
    length: int = 1024
    per_session: int = 0  # 0: one message per connection
    tls: bool = False
    hold: int = 0
    metric: str = "msgs_per_s"  # what the ratio table compares
    notes: str = ""


def scenario_table(quick: bool) -> list[Scenario]:
    q = quick
    return [
        Scenario("small", "1 KiB messages, 20 sessions of 100 messages each (smtp-source -d)", "send",
                 sessions=20, messages=2000, rounds=2 if q else 10, per_session=100),
        Scenario("conn", "1 KiB messages, one message per connection, 50 in parallel (smtp-source)", "send",
                 sessions=50, messages=500, rounds=2 if q else 10),
        Scenario("large", "1 MiB messages, 4 sessions (smtp-source -d)", "send",
                 sessions=4, messages=20, rounds=2 if q else 10, length=MIB, per_session=5, metric="mib_per_s"),
        Scenario("tls", "1 KiB messages, 20 sessions of EHLO, STARTTLS, EHLO + 100 messages (tlsload)", "send",
                 sessions=20, messages=2000, rounds=2 if q else 10, per_session=100, tls=True),
        Scenario("idle", "idle plaintext connections held open (greeting + EHLO)", "hold",
                 hold=2000 if q else 10000, metric="kib_per_conn"),
        Scenario("idle-tls", "idle connections held open after EHLO, STARTTLS, EHLO", "hold",
                 hold=400 if q else 2000, tls=True, metric="kib_per_conn"),
    ]  # fmt: skip

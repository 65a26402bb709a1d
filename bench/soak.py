"""Soak test: tens of thousands of sessions against one server process for several minutes.

    .venv/bin/python bench/soak.py --seconds 180 --concurrency 50

The server runs in a subprocess (``soak.py --serve``) on 127.0.0.1 with STARTTLS (its
generated certificate), AUTH PLAIN/LOGIN and an ``on_data`` that reads and drops the
body. The client side is asyncio with ``--concurrency`` workers; each loops over a mix of
sessions:

    plain     EHLO, 1-3 messages (DATA), QUIT
    pipelined EHLO, MAIL/RCPT/DATA in one write, QUIT
    bdat      EHLO, a message in two BDAT chunks, QUIT
    starttls  EHLO, STARTTLS, handshake, EHLO, a message, QUIT
    auth      EHLO, AUTH PLAIN (good), a message, QUIT
    authfail  EHLO, AUTH PLAIN (bad password) -> 535, QUIT
    errors    junk commands, a refused recipient, RSET, NOOP, QUIT
    cut       a message cut mid-DATA (the client just closes)
    reset     a TCP reset right after EHLO

Every ``--interval`` seconds it prints sessions/s, messages/s, failures, and the server's
RSS and open file descriptors (from /proc). At the end it prints a summary and the fd
count after all clients have gone, to be compared with the one after warm-up. Loopback
only; the run is bounded by ``--seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import socket
import ssl
import subprocess
import sys
import time
from collections import Counter

MIX = [
    ("plain", 30),
    ("pipelined", 12),
    ("bdat", 8),
    ("starttls", 14),
    ("auth", 12),
    ("authfail", 5),
    ("errors", 9),
    ("cut", 6),
    ("reset", 4),
]


# ----------------------------------------------------------------------------- server side


def serve() -> None:
    from smtpgate import AuthResult, SMTPError, SMTPServer

    async def on_auth(auth, session):
        if auth.password == "secret":
            return AuthResult(user=auth.username)
        raise SMTPError(535, "Authentication failed")

    async def on_rcpt_to(address, session):
        if address.address.startswith("nobody@"):
            raise SMTPError(550, "No such user")

    async def on_data(stream, session):
        size = 0
        async for chunk in stream:
            size += len(chunk)
        return f"{size} octets"

    async def main() -> None:
        server = SMTPServer(
            name="soak.test",
            disable_reverse_lookup=True,
            allow_insecure_auth=True,
            auth_optional=True,
            auth_failure_delay=0,
            max_clients=2000,
            socket_timeout=30,
            size=10 * 1024 * 1024,
            on_auth=on_auth,
            on_rcpt_to=on_rcpt_to,
            on_data=on_data,
        )
        await server.listen(0, host="127.0.0.1")
        print(json.dumps({"port": server.port, "pid": os.getpid()}), flush=True)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_reader(sys.stdin.fileno(), stop.set)  # the parent closes our stdin to stop us
        await stop.wait()
        await server.close()

    if os.environ.get("SOAK_UVLOOP"):
        import uvloop

        uvloop.install()
    asyncio.run(main())


def proc_stats(pid: int) -> tuple[float, int]:
    """(RSS in MB, open fds) of a process."""
    rss = 0.0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


# ----------------------------------------------------------------------------- client side


class SessionFailed(Exception):
    pass


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def reply(self) -> int:
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 30)
            if not line:
                raise SessionFailed("closed by server")
            if line[3:4] != b"-":
                return int(line[:3])

    async def cmd(self, data: bytes, expect: int | tuple[int, ...]) -> int:
        self.writer.write(data)
        code = await self.reply()
        if code != expect and (not isinstance(expect, tuple) or code not in expect):
            raise SessionFailed(f"{data[:20]!r} -> {code}")
        return code

    async def message(self, stats: Counter[str], size: int = 2000) -> None:
        await self.cmd(b"MAIL FROM:<soak@example.com>\r\n", 250)
        await self.cmd(b"RCPT TO:<rcpt@example.com>\r\n", 250)
        await self.cmd(b"DATA\r\n", 354)
        body = b"Subject: soak\r\n\r\n" + (b"x" * 76 + b"\r\n") * (size // 78) + b".\r\n"
        await self.cmd(body, 250)
        stats["messages"] += 1

    async def close(self) -> None:
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        except (OSError, asyncio.TimeoutError, ssl.SSLError):
            pass


PLAIN_AUTH = base64.b64encode(b"\0user\0secret")
BAD_AUTH = base64.b64encode(b"\0user\0wrong")


async def one_session(port: int, kind: str, stats: Counter[str], tls: ssl.SSLContext) -> None:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
    conn = Conn(reader, writer)
    try:
        if await conn.reply() != 220:
            raise SessionFailed("no greeting")
        if kind == "reset":
            await conn.cmd(b"EHLO soak.client\r\n", 250)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            writer.transport.abort()
            return
        await conn.cmd(b"EHLO soak.client\r\n", 250)
        if kind == "plain":
            for _ in range(random.randint(1, 3)):
                await conn.message(stats, random.choice((500, 2000, 20000)))
        elif kind == "pipelined":
            body = b"Subject: p\r\n\r\nhello\r\n.\r\n"
            writer.write(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n")
            codes = [await conn.reply() for _ in range(4)]
            if codes != [250, 250, 250, 354]:
                raise SessionFailed(f"pipelined {codes}")
            await conn.cmd(body, 250)
            stats["messages"] += 1
        elif kind == "bdat":
            await conn.cmd(b"MAIL FROM:<a@example.com>\r\n", 250)
            await conn.cmd(b"RCPT TO:<b@example.com>\r\n", 250)
            first, last = b"Subject: b\r\n\r\nhello\r\n", b"world\r\n"
            await conn.cmd(b"BDAT %d\r\n%s" % (len(first), first), 250)
            await conn.cmd(b"BDAT %d LAST\r\n%s" % (len(last), last), 250)
            stats["messages"] += 1
        elif kind == "starttls":
            await conn.cmd(b"STARTTLS\r\n", 220)
            await asyncio.wait_for(writer.start_tls(tls, server_hostname="soak.test"), 30)
            await conn.cmd(b"EHLO soak.client\r\n", 250)
            await conn.message(stats)
        elif kind == "auth":
            await conn.cmd(b"AUTH PLAIN " + PLAIN_AUTH + b"\r\n", 235)
            await conn.message(stats)
        elif kind == "authfail":
            await conn.cmd(b"AUTH PLAIN " + BAD_AUTH + b"\r\n", 535)
        elif kind == "errors":
            await conn.cmd(b"FOO bar\r\n", 500)
            await conn.cmd(b"MAIL FROM:<bad address>\r\n", 501)
            await conn.cmd(b"MAIL FROM:<a@example.com>\r\n", 250)
            await conn.cmd(b"RCPT TO:<nobody@example.com>\r\n", 550)
            await conn.cmd(b"DATA\r\n", 503)
            await conn.cmd(b"RSET\r\n", 250)
            await conn.cmd(b"NOOP\r\n", 250)
        elif kind == "cut":
            await conn.cmd(b"MAIL FROM:<a@example.com>\r\n", 250)
            await conn.cmd(b"RCPT TO:<b@example.com>\r\n", 250)
            await conn.cmd(b"DATA\r\n", 354)
            writer.write(b"Subject: cut\r\n\r\n" + b"y" * 5000)
            await writer.drain()
            return
        await conn.cmd(b"QUIT\r\n", 221)
    finally:
        await conn.close()


async def worker(port: int, deadline: float, stats: Counter[str], tls: ssl.SSLContext, rng: random.Random) -> None:
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    while time.monotonic() < deadline:
        kind = rng.choices(kinds, weights)[0]
        try:
            await one_session(port, kind, stats, tls)
            stats["sessions"] += 1
            stats[f"ok:{kind}"] += 1
        except (SessionFailed, OSError, asyncio.TimeoutError, ssl.SSLError) as error:
            stats["failures"] += 1
            stats[f"fail:{kind}:{type(error).__name__}:{str(error)[:40]}"] += 1


async def run(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    if args.uvloop:
        env["SOAK_UVLOOP"] = "1"
    server = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )
    assert server.stdout is not None and server.stdin is not None
    info = json.loads(server.stdout.readline())
    port, pid = info["port"], info["pid"]
    tls = ssl.create_default_context()
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    stats: Counter[str] = Counter()
    rng = random.Random(args.seed)
    # Warm-up: a few sessions of every kind, then the reference RSS and fd count.
    for kind, _ in MIX:
        for _ in range(3):
            await one_session(port, kind, stats, tls)
    await asyncio.sleep(1)
    rss0, fds0 = proc_stats(pid)
    print(f"server pid {pid} port {port}; after warm-up: RSS {rss0:.1f} MB, {fds0} fds")
    print(f"{'t (s)':>6} {'sessions/s':>11} {'messages/s':>11} {'failures':>9} {'RSS MB':>8} {'fds':>6}")
    stats.clear()
    start = time.monotonic()
    deadline = start + args.seconds
    tasks = [
        asyncio.create_task(worker(port, deadline, stats, tls, random.Random(rng.random())))
        for _ in range(args.concurrency)
    ]
    samples = []
    last = Counter(stats)
    last_t = start
    while not all(t.done() for t in tasks):
        await asyncio.wait(tasks, timeout=args.interval)
        now = time.monotonic()
        rss, fds = proc_stats(pid)
        dt = now - last_t
        if dt < 1:
            continue  # the workers just finished: too short an interval to mean anything
        sessions = (stats["sessions"] - last["sessions"]) / dt
        messages = (stats["messages"] - last["messages"]) / dt
        failures = stats["failures"] - last["failures"]
        samples.append(
            {"t": round(now - start), "sessions_s": sessions, "messages_s": messages, "rss": rss, "fds": fds}
        )
        print(f"{now - start:6.0f} {sessions:11.0f} {messages:11.0f} {failures:9d} {rss:8.1f} {fds:6d}", flush=True)
        last, last_t = Counter(stats), now
    elapsed = time.monotonic() - start
    await asyncio.sleep(2)  # let the server notice the last hang-ups
    rss_end, fds_end = proc_stats(pid)
    server.stdin.close()
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
    total = stats["sessions"] + stats["failures"]
    print()
    print(f"{total} sessions in {elapsed:.0f} s ({total / elapsed:.0f}/s), {stats['messages']} messages")
    print(f"failures: {stats['failures']}")
    for key, count in sorted(stats.items()):
        if key.startswith(("ok:", "fail:")):
            print(f"  {key}: {count}")
    rss_max = max(s["rss"] for s in samples)
    print(f"server RSS: {rss0:.1f} MB after warm-up, max {rss_max:.1f} MB, {rss_end:.1f} MB at the end")
    print(f"server fds: {fds0} after warm-up, {fds_end} at the end (clients gone)")
    print(f"server exit code: {server.returncode}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"samples": samples, "stats": dict(stats), "fds": [fds0, fds_end], "rss": [rss0, rss_end]}, out)
    return 0 if fds_end <= fds0 + 2 and server.returncode == 0 else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--interval", type=float, default=15)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--uvloop", action="store_true", help="run the server on uvloop")
    parser.add_argument("--json", help="write the samples here")
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()

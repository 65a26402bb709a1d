"""What --verify costs: the small scenario (1 KiB DKIM-signed messages) against the smtpgate
command without and with --verify, in the same run, plus the cost of one check split into
CPU and waiting for DNS.

Needs Knot (knotd) for the DNS and the verify extra. Everything on 127.0.0.1:

    .venv/bin/python bench/verify.py                 # 4 sessions x 25 messages per server
    .venv/bin/python bench/verify.py --sessions 20 --messages 100

The DNS server answers on loopback in well under a millisecond; a real resolver on the
network adds its round trips to every lookup not in the cache (the command's resolver
keeps answers for their TTL, so a sender seen again costs no lookup).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "verify"))
from dnsserver import KnotServer, free_port, txt, zone
from smtpreply import read_reply

from smtpgate.verify import Resolver, Verifier, sign

BODY = ("x" * 76 + "\r\n") * 12  # about 1 KiB


def make_key(directory: Path) -> tuple[Path, str]:
    """An RSA-2048 key and its DKIM TXT record."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = directory / "bench.private"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return path, "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode()


def message(key: Path, number: int) -> bytes:
    raw = (
        f"From: alice@sender.test\r\nTo: bob@mx.test\r\nSubject: bench {number}\r\n"
        f"Message-ID: <{number}@sender.test>\r\n\r\n{BODY}"
    ).encode()
    return sign(raw, "bench", "sender.test", key)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def session(port: int, messages: list[bytes]) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    await read_reply(reader)
    writer.write(b"EHLO client.sender.test\r\n")
    await read_reply(reader)
    sent = 0
    for data in messages:
        writer.write(b"MAIL FROM:<bounce@sender.test>\r\n")
        await read_reply(reader)
        writer.write(b"RCPT TO:<bob@mx.test>\r\n")
        await read_reply(reader)
        writer.write(b"DATA\r\n")
        await read_reply(reader)
        writer.write(data + b".\r\n")
        if (await read_reply(reader)).startswith(b"250"):
            sent += 1
    writer.write(b"QUIT\r\n")
    await read_reply(reader)
    writer.close()
    return sent


def run_server(args: list[str], sessions: int, messages: list[bytes], workdir: Path) -> dict[str, float]:
    port = free_port()
    log = open(workdir / f"server-{port}.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "smtpgate", "--port", str(port), "--name", "mx.test", "--sink", "stdout", *args],
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("smtpgate did not start") from None
                time.sleep(0.05)
        asyncio.run(session(port, messages[:5]))  # warm up (imports, caches) before measuring
        cpu0, wall0 = cpu_seconds(proc.pid), time.perf_counter()

        async def load() -> int:
            done = await asyncio.gather(*(session(port, messages) for _ in range(sessions)))
            return sum(done)

        sent = asyncio.run(load())
        wall, cpu = time.perf_counter() - wall0, cpu_seconds(proc.pid) - cpu0
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
        log.close()
    return {"messages": sent, "msgs_per_s": sent / wall, "cpu_us_per_msg": cpu / max(sent, 1) * 1e6}


class DelayingProxy:
    """A UDP relay in front of the DNS server that holds every answer ``delay`` seconds:
    a resolver across a network, on loopback."""

    def __init__(self, upstream: tuple[str, int], delay: float) -> None:
        self.upstream = upstream
        self.delay = delay
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> DelayingProxy:
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the DNS proxy did not start")
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        proxy = self

        class Front(asyncio.DatagramProtocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, client: tuple[str, int]) -> None:
                asyncio.ensure_future(proxy._relay(self.transport, data, client))  # type: ignore[arg-type]

        transport, _ = self.loop.run_until_complete(
            self.loop.create_datagram_endpoint(Front, local_addr=("127.0.0.1", 0))
        )
        self.port = transport.get_extra_info("sockname")[1]
        self.ready.set()
        self.loop.run_forever()
        transport.close()

    async def _relay(self, front: asyncio.DatagramTransport, data: bytes, client: tuple[str, int]) -> None:
        answer: asyncio.Future[bytes] = self.loop.create_future()

        class Back(asyncio.DatagramProtocol):
            def datagram_received(self, reply: bytes, _: tuple[str, int]) -> None:
                if not answer.done():
                    answer.set_result(reply)

        back, _ = await self.loop.create_datagram_endpoint(Back, remote_addr=self.upstream)
        try:
            back.sendto(data)
            reply = await asyncio.wait_for(answer, 5)
            await asyncio.sleep(self.delay)
            front.sendto(reply, client)
        except asyncio.TimeoutError:
            pass
        finally:
            back.close()


def check_cost(dns: str, messages: list[bytes], cache: bool) -> dict[str, float]:
    """Mean wall and CPU time of Verifier.check_message, one message at a time."""
    verifier = Verifier(Resolver([dns], timeout=5, cache_size=10_000 if cache else 0))

    async def run() -> tuple[float, float]:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for data in messages:
            await verifier.check_message(
                data, ip="127.0.0.1", mail_from="bounce@sender.test", helo="client.sender.test"
            )
        return time.perf_counter() - wall0, time.process_time() - cpu0

    wall, cpu = asyncio.run(run())
    return {"wall_us": wall / len(messages) * 1e6, "cpu_us": cpu / len(messages) * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--messages", type=int, default=25, help="messages per session")
    parser.add_argument(
        "--latency-ms", type=float, default=20.0, help="DNS round trip simulated by a proxy (default 20)"
    )
    options = parser.parse_args()
    if shutil.which("knotd") is None and not Path("/usr/sbin/knotd").exists():
        print("bench/verify.py needs knotd (Debian package knot)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        key, record = make_key(workdir)
        records = "\n".join(
            [
                f"@ TXT {txt('v=spf1 ip4:127.0.0.1 -all')}",
                f"_dmarc TXT {txt('v=DMARC1; p=reject')}",
                f"bench._domainkey TXT {txt(record)}",
            ]
        )
        knot = KnotServer(workdir / "knot", {"sender.test": zone("sender.test", records)})
        knot.start()
        try:
            messages = [message(key, n) for n in range(options.messages)]
            total = options.sessions * options.messages
            print(f"small scenario: {options.sessions} sessions x {options.messages} messages of 1 KiB, DKIM-signed")
            rows = [
                ("without --verify", run_server([], options.sessions, messages, workdir)),
                ("with --verify", run_server(["--verify", "--dns", knot.address], options.sessions, messages, workdir)),
            ]
            for name, row in rows:
                print(
                    f"  {name:18} {row['messages']:.0f}/{total} stored  {row['msgs_per_s']:8.0f} msgs/s"
                    f"  server CPU {row['cpu_us_per_msg']:6.0f} us/msg"
                )
            extra = rows[1][1]["cpu_us_per_msg"] - rows[0][1]["cpu_us_per_msg"]
            print(f"  --verify adds {extra:.0f} us of server CPU per message")
            print("one check (SPF+HELO, DKIM, DMARC, ARC), messages one after the other:")
            proxy = DelayingProxy(("127.0.0.1", knot.port), options.latency_ms / 1000).start()
            try:
                servers = [
                    ("DNS on loopback", knot.address),
                    (f"DNS {options.latency_ms:g} ms away", f"127.0.0.1:{proxy.port}"),
                ]
                few = messages[: max(1, min(len(messages), 10))]
                for where, address in servers:
                    for cache in (False, True):
                        cost = check_cost(address, messages if address == knot.address else few, cache)
                        label = f"{where}, cache {'on ' if cache else 'off'}"
                        print(
                            f"  {label:32} {cost['wall_us'] / 1000:8.2f} ms wall  {cost['cpu_us'] / 1000:6.2f} ms CPU"
                        )
            finally:
                proxy.stop()
        finally:
            knot.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

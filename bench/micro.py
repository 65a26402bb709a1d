"""A quick A/B micro-benchmark of the hot path, for a shared machine (seconds, not minutes).

``core``: one pipelined session fed straight through the sans-I/O core (no sockets):
EHLO, then N transactions of MAIL, RCPT, DATA with a small body, each in one write.
``server``: the same transactions over loopback against an ``SMTPServer`` with an async
``on_data`` that reads the stream to its end, from C concurrent clients.

    python bench/micro.py core --messages 20000
    python bench/micro.py server --messages 2000 --clients 4
    python bench/micro.py server --tls          # STARTTLS first, then the same transactions

Prints the best of ``--reps`` runs in messages per second. Compare two checkouts in the
same minute on the same machine; the numbers mean nothing across machines.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
import time

from smtpgate import SMTPServer
from smtpgate.protocol.core import ProtocolConfig, ServerProtocol
from smtpgate.session import Session

BODY = b"Subject: hello\r\nFrom: a@example.com\r\n\r\n" + b"A line of the body, fairly typical.\r\n" * 20
TRANSACTION = b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n" + BODY + b".\r\n"


def run_core(messages: int) -> float:
    core = ServerProtocol(ProtocolConfig(name="bench.local", size=1 << 26), Session(id="bench"))
    core.start()
    core.data_to_send()
    core.receive_data(b"EHLO client.test\r\n")
    start = time.perf_counter()
    received = 0
    for _ in range(messages):
        core.receive_data(TRANSACTION)
        while True:
            event = core.next_event()
            if event is None:
                break
            if event.needs_decision:
                core.accept()
            else:
                received += 1
        core.data_to_send()
    elapsed = time.perf_counter() - start
    assert received >= messages
    return messages / elapsed


async def _ehlo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"EHLO client.test\r\n")
    while not (await reader.readline()).startswith(b"250 "):
        pass


async def _client(port: int, messages: int, tls: ssl.SSLContext | None) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()
    await _ehlo(reader, writer)
    if tls is not None:
        writer.write(b"STARTTLS\r\n")
        await reader.readline()
        await writer.start_tls(tls, server_hostname="bench.local")
        await _ehlo(reader, writer)
    for _ in range(messages):
        writer.write(TRANSACTION)
        for _ in range(4):  # MAIL, RCPT, 354, 250
            await reader.readline()
    writer.write(b"QUIT\r\n")
    await reader.readline()
    writer.close()


async def _server_run(messages: int, clients: int, tls: bool = False) -> float:
    async def on_data(stream: object, session: object) -> None:
        async for _ in stream:  # type: ignore[attr-defined]
            pass

    disabled = [] if tls else ["STARTTLS"]
    server = SMTPServer(name="bench.local", disable_reverse_lookup=True, disabled_commands=disabled, on_data=on_data)
    context = None
    if tls:  # the server's generated certificate; the client does not check it
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    await server.listen(0, host="127.0.0.1")
    try:
        per_client = messages // clients
        start = time.perf_counter()
        await asyncio.gather(*(_client(server.port, per_client, context) for _ in range(clients)))
        elapsed = time.perf_counter() - start
    finally:
        await server.close()
    return per_client * clients / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("core", "server"))
    parser.add_argument("--messages", type=int, default=0, help="default: 20000 (core), 2000 (server)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tls", action="store_true", help="server mode: STARTTLS before the transactions")
    args = parser.parse_args()
    logging.getLogger("smtpgate").setLevel(logging.ERROR)  # no warning about the generated certificate
    rates = []
    for _ in range(args.reps):
        if args.mode == "core":
            rates.append(run_core(args.messages or 20000))
        else:
            rates.append(asyncio.run(_server_run(args.messages or 2000, args.clients, args.tls)))
    print(f"{args.mode}: best {max(rates):,.0f} msg/s, median {sorted(rates)[len(rates) // 2]:,.0f} msg/s")


if __name__ == "__main__":
    main()

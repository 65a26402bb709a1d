"""aiosmtpd as a discard sink for the benchmark: a handler whose handle_DATA returns 250.

    python aiosmtpd_sink.py --port 2525 [--loop uvloop] [--cert c.pem --key k.pem]

Prints "READY <port>" once listening; SIGTERM/SIGINT end it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import sys

from aiosmtpd.smtp import SMTP


class Sink:
    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        return "250 OK"


async def main(args: argparse.Namespace) -> None:
    context = None
    if args.cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
    handler = Sink()
    loop = asyncio.get_running_loop()

    def factory() -> SMTP:
        return SMTP(
            handler,
            hostname="bench.local",
            data_size_limit=64 * 1024 * 1024,
            tls_context=context,
            require_starttls=False,
            loop=loop,
        )

    server = await loop.create_server(factory, host=args.host, port=args.port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()
    server.close()


def run() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.install()
    asyncio.run(main(args))


if __name__ == "__main__":
    sys.exit(run())

"""smtpgate as a discard sink for the benchmark: the normal on_data path, every byte read.

    python smtpgate_sink.py --port 2525 [--loop uvloop] [--cert c.pem --key k.pem]
    python smtpgate_sink.py ... --cprofile out.prof   # profile until SIGTERM

Prints "READY <port>" once listening; SIGTERM/SIGINT end it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from smtpgate import SMTPServer


async def on_data(stream, session):  # type: ignore[no-untyped-def]
    total = 0
    async for chunk in stream:  # read every byte, keep none
        total += len(chunk)
    return None


async def main(args: argparse.Namespace) -> None:
    options = dict(
        name="bench.local",
        disable_reverse_lookup=True,
        auth_optional=True,
        size=64 * 1024 * 1024,
        on_data=on_data,
    )
    if args.cert:
        options.update(cert=args.cert, key=args.key)
    server = SMTPServer(**options)
    await server.listen(args.port, host=args.host, backlog=4096)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {server.port}", flush=True)
    await stop.wait()


def run() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--cprofile", help="write cProfile stats to this file at exit")
    parser.add_argument(
        "--ssl-read-buffer",
        type=int,
        help="experiment: KiB of asyncio's per-connection TLS read buffer (asyncio.sslproto, default 256)",
    )
    args = parser.parse_args()
    if args.ssl_read_buffer:
        from asyncio import sslproto

        sslproto.SSLProtocol.max_size = args.ssl_read_buffer * 1024
    if args.loop == "uvloop":
        import uvloop

        uvloop.install()
    if args.cprofile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            asyncio.run(main(args))
        finally:
            profiler.disable()
            profiler.dump_stats(args.cprofile)
    else:
        asyncio.run(main(args))


if __name__ == "__main__":
    sys.exit(run())

"""smtpgate as a discard sink for the benchmark: the normal on_data path, every byte read.

    python smtpgate_sink.py --port 2525 [--loop uvloop] [--cert c.pem --key k.pem]
    python smtpgate_sink.py ... --defaults            # the library's defaults, only on_data set
    python smtpgate_sink.py ... --cprofile out.prof   # profile until SIGTERM
    python smtpgate_sink.py ... --loop-stats s.json   # count event-loop iterations (SIGUSR1 writes them)

Prints "READY <port>" once listening; SIGTERM/SIGINT end it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import sys

from smtpgate import SMTPServer


async def on_data(stream, session):  # type: ignore[no-untyped-def]
    total = 0
    async for chunk in stream:  # read every byte, keep none
        total += len(chunk)
    return None


def install_loop_stats(loop: asyncio.AbstractEventLoop, path: str) -> None:
    """Count what the default loop does (not for uvloop): iterations of `_run_once`, polls
    that could block, polls that returned nothing, ready events per poll (a histogram) and
    callbacks run. SIGUSR1 writes the totals so far to `path` (read before and after a load).
    The counting costs a little CPU itself; compare counts, not this process's timings."""
    selector = loop._selector  # type: ignore[attr-defined]
    select = selector.select
    run_once = loop._run_once  # type: ignore[attr-defined]
    stats = {"iterations": 0, "polls_blocking": 0, "polls_empty": 0, "events": 0, "callbacks": 0}
    per_poll: dict[int, int] = {}

    def counting_select(timeout=None):  # type: ignore[no-untyped-def]
        events = select(timeout)
        stats["events"] += len(events)
        if timeout is None or timeout > 0:
            stats["polls_blocking"] += 1
        if not events:
            stats["polls_empty"] += 1
        per_poll[len(events)] = per_poll.get(len(events), 0) + 1
        return events

    def counting_run_once() -> None:
        stats["iterations"] += 1
        run_once()

    class CountingDeque(type(loop._ready)):  # type: ignore[attr-defined,misc]
        """_run_once pops each callback it runs from the ready deque."""

        def popleft(self):  # type: ignore[no-untyped-def]
            stats["callbacks"] += 1
            return super().popleft()

    loop._ready = CountingDeque(loop._ready)  # type: ignore[attr-defined]
    selector.select = counting_select
    loop._run_once = counting_run_once  # type: ignore[attr-defined]

    def dump() -> None:
        data: dict[str, object] = {**stats, "events_per_poll": {str(k): v for k, v in sorted(per_poll.items())}}
        data["gc_collections"] = [s["collections"] for s in gc.get_stats()]
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)

    loop.add_signal_handler(signal.SIGUSR1, dump)
    dump()


def read_into_shared_buffer(kib: int) -> None:
    """Experiment for issue 17: the size of the read buffer that `SMTPConnection` (an
    `asyncio.BufferedProtocol` since the fix) shares between the connections of a loop;
    the library's is 64 KiB (profile.md, "Why small is bimodal")."""
    from smtpgate import readbuffer

    readbuffer.READ_BUFFER_SIZE = kib * 1024


async def main(args: argparse.Namespace) -> None:
    if args.defaults:
        # The library's defaults: reverse lookup on, no size limit, no AUTH; only on_data.
        options: dict[str, object] = dict(on_data=on_data)
    else:
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
    if args.loop_stats:
        install_loop_stats(loop, args.loop_stats)
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
    parser.add_argument(
        "--read-size",
        type=int,
        help="experiment: KiB asyncio's plain socket transport asks recv() for (default 256); "
        "no effect on smtpgate, which reads into its own buffer",
    )
    parser.add_argument(
        "--buffered",
        type=int,
        metavar="KIB",
        help="experiment: KiB of the read buffer SMTPConnection shares per loop (default 64)",
    )
    parser.add_argument("--defaults", action="store_true", help="only on_data: every other option at its default")
    parser.add_argument("--cprofile", help="write cProfile stats to this file at exit")
    parser.add_argument(
        "--loop-stats", help="count event-loop iterations (default loop only); SIGUSR1 writes them here"
    )
    parser.add_argument("--no-gc", action="store_true", help="experiment: gc.disable() before serving")
    args = parser.parse_args()
    if args.read_size:
        from asyncio import selector_events

        selector_events._SelectorSocketTransport.max_size = args.read_size * 1024  # type: ignore[attr-defined]
    if args.buffered:
        read_into_shared_buffer(args.buffered)
    if args.no_gc:
        gc.disable()
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

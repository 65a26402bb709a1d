"""``smtpgate deliver --from redis://...``: delivery workers on a Redis stream queue.

Any number of these processes, on any hosts, share one stream through its consumer group;
each hands messages to the deliverer of ``--deliver URL`` (webhook, relay, LMTP) or to
``--sink SPEC``, with the retries, backoff and dead-letter rules of the local queue.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any, NoReturn

from ..queue.base import Deliverer
from ..queue.worker import DeliveryWorker
from ..sinks import SinkError, parse_sink
from .app import StartupError, new_event_loop
from .config import SETTINGS, Settings, UsageError
from .logs import setup_logging
from .values import count_arg, seconds_arg

__all__ = ["deliver_command"]

logger = logging.getLogger("smtpgate.cli")

DEFAULT_CONCURRENCY = 10

_SHARED = (
    "redis_stream",
    "redis_password_file",
    "retry_min",
    "retry_max_age",
    "metrics",
    "webhook_secret_file",
    "webhook_format",
    "relay_auth_file",
    "deliver_ca_file",
    "log_format",
    "log_level",
)
"""The flags ``smtpgate deliver`` shares with the serving command."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="smtpgate deliver",
        description="Deliver the messages of a Redis stream queue (filled by 'smtpgate --sink redis://...').",
    )
    add = parser.add_argument
    add("--from", dest="source", required=True, metavar="URL", help="redis://HOST:PORT/DB (rediss:// for TLS)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--deliver", metavar="URL", help="http(s)://..., smtp://, smtps://, lmtp://HOST:PORT")
    target.add_argument("--sink", metavar="SPEC", help="store each message in a sink: maildir:DIR, mbox:FILE, ...")
    add(
        "--concurrency",
        type=count_arg,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"deliveries in flight; default: {DEFAULT_CONCURRENCY}",
    )
    add("--max-attempts", type=count_arg, metavar="N", help="dead-letter after N attempts, 0: no limit; default: 25")
    add(
        "--claim-timeout", type=seconds_arg, metavar="SECONDS", help="take over a silent worker's messages; default: 60"
    )
    for name in _SHARED:  # declared once, with the serving command's settings
        SETTINGS[name].add_to(parser, with_default=True)
    return parser


class Consumer:
    """One ``smtpgate deliver`` process: the queue, the deliverer, the worker, the signals."""

    def __init__(self, args: argparse.Namespace) -> None:
        from ..queue.redis import RedisStreamQueue
        from ..redisconn import redact_url

        if not args.source.startswith(("redis://", "rediss://", "unix://")):
            raise UsageError(f"--from: expected redis://HOST:PORT/DB or rediss://..., got {redact_url(args.source)!r}")
        try:
            self.queue = RedisStreamQueue(args.source)
        except ValueError as error:
            raise UsageError(f"--from: {error}") from None
        self.queue.configure(stream=args.redis_stream, password_file=args.redis_password_file)
        changes = {}
        if args.max_attempts is not None:
            changes["max_attempts"] = args.max_attempts
        if args.claim_timeout is not None:
            changes["claim_timeout"] = args.claim_timeout
        if changes:
            import dataclasses

            self.queue.options = dataclasses.replace(self.queue.options, **changes)
        self.args = args
        self.sink_target = None
        if args.sink is not None:
            from ..deliver.sink import SinkDeliverer

            try:
                self.sink_target = SinkDeliverer(parse_sink(args.sink))
            except SinkError as error:
                raise StartupError(str(error)) from None
            self.deliverer: Deliverer = self.sink_target
        else:
            from .delivery import build_deliverer

            settings = Settings(
                deliver=args.deliver,
                webhook_secret_file=args.webhook_secret_file,
                webhook_format=args.webhook_format,
                relay_auth_file=args.relay_auth_file,
                deliver_ca_file=args.deliver_ca_file,
                deliver_concurrency=max(1, args.concurrency),
            )
            self.deliverer = build_deliverer(settings)
        self.metrics: Any = None
        if args.metrics is not None:
            from ..metrics import Metrics

            self.metrics = Metrics()
            self.metrics.add_queue(self.queue.options.stream, self.queue)
            self.deliverer = self.metrics.count_deliveries(self.deliverer)
        self.worker = DeliveryWorker(
            self.queue,
            self.deliverer,
            concurrency=max(1, args.concurrency),
            retry_min=args.retry_min,
            max_age=args.retry_max_age,
        )
        self._stopped = asyncio.Event()
        self._runner: Any = None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        if self.sink_target is not None:
            try:
                await self.sink_target.start()
            except (SinkError, OSError) as error:
                raise StartupError(str(error)) from None
        await self.queue.start()
        if self.metrics is not None:
            from ..health import Readiness, health_routes, serve_health

            host, port = self.args.metrics
            try:
                self._runner = await serve_health(
                    host, port, health_routes(Readiness(None, [self.queue.check]), self.metrics)
                )
            except OSError as error:
                await self.queue.close()
                raise StartupError(f"--metrics: {error.strerror or error}") from None
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stopped.set)
        await self.worker.start()
        logger.info(
            "delivering %s to %s (up to %d at once); Ctrl-C to stop",
            self.queue.describe(),
            self.worker.target,
            self.worker.concurrency,
        )
        try:
            await self._stopped.wait()
        finally:
            logger.info("stopping: attempts in flight get 10 s")
            await self.worker.stop()
            if self._runner is not None:
                await self._runner.cleanup()
            close = getattr(self.sink_target or self.deliverer, "close", None)
            if close is not None:
                await close()
            await self.queue.close()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)


def deliver_command(argv: list[str]) -> int:
    """``smtpgate deliver ...``; returns the exit status."""
    try:
        args = build_parser().parse_args(argv)
        startup = setup_logging(args.log_format, args.log_level)
        consumer = Consumer(args)
    except UsageError as error:
        print(f"smtpgate deliver: error: {error}", file=sys.stderr)
        return 2
    except StartupError as error:
        print(f"smtpgate deliver: error: {error}", file=sys.stderr)
        return 1
    loop, _ = new_event_loop(True)
    asyncio.set_event_loop(loop)
    startup.start_output()
    try:
        loop.run_until_complete(consumer.run())
    except StartupError as error:
        print(f"smtpgate deliver: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        asyncio.set_event_loop(None)
    logger.info("stopped")
    return 0

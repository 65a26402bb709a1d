"""``smtpgate queue``: look at the delivery queue and act on it, with Postfix's habits.

``list`` is ``postqueue -p`` (queued and dead messages, their state, attempts and last
error, then the queue length and the oldest message); ``show ID`` is ``postcat -q``; ``retry`` is ``postqueue -f`` /
``postqueue -i ID`` (due now); ``delete`` is ``postsuper -d``; ``requeue`` puts
dead-lettered messages back (``postsuper -r``). A message being delivered at that moment
is left alone (and not counted). A running server notices ``retry`` and ``requeue``
within a second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any, NoReturn

from ..queue.base import MessageQueue, QueuedMessage
from ..queue.local import LocalQueue
from ..sinks import SinkError
from .config import DEFAULT_QUEUE

__all__ = ["queue_command"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"smtpgate queue: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="smtpgate queue",
        description="List the delivery queue, retry, delete or requeue messages.",
    )
    parser.add_argument("--queue", metavar="DIR", default=DEFAULT_QUEUE, help=f"default {DEFAULT_QUEUE}")
    parser.add_argument("--json", action="store_true", help="list: one JSON object per message")
    commands = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = commands.add_parser("list", help="queued and dead messages with their state (postqueue -p)")
    listing.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="one JSON object per message")
    show = commands.add_parser("show", help="one message's state and content (postcat -q)")
    show.add_argument("target", metavar="ID")
    show.add_argument("--body", action="store_true", help="the whole message, not only its headers")
    retry = commands.add_parser("retry", help="deliver queued messages now (postqueue -f)")
    retry.add_argument("target", nargs="?", default="all", metavar="ID|all")
    delete = commands.add_parser("delete", help="delete messages, queued or dead (postsuper -d)")
    delete.add_argument("target", metavar="ID|all")
    requeue = commands.add_parser("requeue", help="put dead messages back in the queue (postsuper -r)")
    requeue.add_argument("target", metavar="ID|all")
    return parser


def _when(stamp: float | None) -> str:
    if not stamp:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(stamp))


def _ago(stamp: float) -> str:
    seconds = max(0, int(time.time() - stamp))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"  # pragma: no cover


def _record(message: QueuedMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "state": "dead" if message.dead else ("due" if message.next_attempt <= time.time() else "deferred"),
        "sender": message.info.sender,
        "size": message.size,
        "queued": message.queued,
        "attempts": message.attempts,
        "next_attempt": message.next_attempt or None,
        "last_error": message.last_error,
        "dead_reason": message.dead_reason,
        "recipients": [{"address": r.address, "status": r.status, "detail": r.detail} for r in message.recipients],
    }


def _print_message(message: QueuedMessage) -> None:
    mark = "!" if message.dead else ("*" if message.next_attempt <= time.time() else " ")
    print(f"{message.id}{mark} {message.size:>9} {_when(message.queued)}  <{message.info.sender}>")
    if message.dead:
        print(f"    dead: {message.dead_reason}")
    elif message.attempts:
        print(f"    attempts {message.attempts}, next {_when(message.next_attempt)}, last error: {message.last_error}")
    for recipient in message.recipients:
        detail = f" ({recipient.detail})" if recipient.detail else ""
        print(f"{'':>40}<{recipient.address}> {recipient.status}{detail}")


async def _list(queue: MessageQueue, as_json: bool) -> int:
    queued = await queue.messages()
    dead = await queue.messages(dead=True)
    stats = await queue.stats()
    if as_json:
        for message in [*queued, *dead]:
            print(json.dumps(_record(message), ensure_ascii=False))
        return 0
    if queued or dead:
        print(f"{'-Queue ID-':<25} {'--Size--':>9} {'--Arrival Time--':<20}  -Sender/Recipient-")
    for message in [*queued, *dead]:
        _print_message(message)
    if not queued and not dead:
        print("Mail queue is empty")
        return 0
    oldest = f"; oldest {_when(stats.oldest)} ({_ago(stats.oldest)} ago)" if stats.oldest else ""
    print(f"-- {stats.queued} queued, {stats.dead} dead, {_size(stats.size)}{oldest}")
    return 0


async def _show(queue: MessageQueue, message_id: str, whole: bool) -> int:
    message = await queue.get(message_id)
    if message is None:
        print(f"smtpgate queue: no such message: {message_id}", file=sys.stderr)
        return 1
    record = _record(message)
    for key in ("id", "state", "sender", "size", "attempts", "last_error", "dead_reason"):
        print(f"{key}: {record[key]}")
    print(f"queued: {_when(message.queued)}")
    if message.attempts:
        print(f"first attempt: {_when(message.first_attempt)}, last: {_when(message.last_attempt)}")
    if not message.dead:
        print(f"next attempt: {_when(message.next_attempt) if message.next_attempt else 'now'}")
    print(f"client: {message.info.client_address} ({message.info.client_name})")
    for recipient in message.recipients:
        detail = f" ({recipient.detail})" if recipient.detail else ""
        print(f"recipient: <{recipient.address}> {recipient.status}{detail}")
    print()
    body = await message.read_body()
    if not whole:
        end = body.find(b"\r\n\r\n")
        body = body if end < 0 else body[: end + 2]
    sys.stdout.flush()
    sys.stdout.buffer.write(body.replace(b"\r\n", b"\n"))
    sys.stdout.buffer.flush()
    return 0


async def _run(args: argparse.Namespace) -> int:
    if args.queue.startswith(("redis://", "rediss://")):  # the Redis stream queue
        from .redisqueue import run_on_stream

        return await run_on_stream(args, _act)
    if not os.path.isdir(args.queue):
        print(f"smtpgate queue: error: no queue directory {args.queue!r} (see --queue)", file=sys.stderr)
        return 1
    try:
        queue = LocalQueue(args.queue)
    except SinkError as error:
        print(f"smtpgate queue: error: {error}", file=sys.stderr)
        return 1
    return await _act(queue, args)


async def _act(queue: MessageQueue, args: argparse.Namespace) -> int:
    """The action of ``args`` on ``queue``."""
    if args.action == "list":
        return await _list(queue, args.json)
    if args.action == "show":
        return await _show(queue, args.target, args.body)
    target = None if args.target == "all" else args.target
    if args.action == "retry":
        count = await queue.retry_now(target)
        print(f"{count} message(s) due now")
    elif args.action == "delete":
        count = await queue.delete(target)
        print(f"{count} message(s) deleted")
    else:
        count = await queue.requeue(target)
        print(f"{count} message(s) requeued")
    if target is not None and count == 0:
        print(f"smtpgate queue: no such message, or it is being delivered: {target}", file=sys.stderr)
        return 1
    return 0


def queue_command(argv: list[str]) -> int:
    """Entry point of ``smtpgate queue``; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit:
        return int(exit.code or 0)
    try:
        return asyncio.run(_run(args))
    except OSError as error:
        print(f"smtpgate queue: error: {error.strerror or error}", file=sys.stderr)
        return 1

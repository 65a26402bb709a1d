"""Pure pieces of the store: IDs, raw message access, mailboxes and tags of a message,
and the JSON shapes of Mailpit's summaries."""

from __future__ import annotations

import json
import mmap
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from ..sinks.base import MessageInfo
from .parse import ParsedMessage, find_part, iter_decoded, rfc3339
from .search import Searchable

__all__ = [
    "new_id",
    "RawMessage",
    "address_text",
    "mailboxes_of",
    "tags_of",
    "summary_json",
    "with_buffer",
    "part_chunks",
    "smtpgate_version",
    "searchable",
]

T = TypeVar("T")

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def new_id() -> str:
    """A random 22-character base62 ID (like Mailpit's)."""
    number = int.from_bytes(secrets.token_bytes(16), "big")
    chars = []
    for _ in range(22):
        number, digit = divmod(number, 62)
        chars.append(_ALPHABET[digit])
    return "".join(chars)


@dataclass
class RawMessage:
    """The raw bytes of a stored message: in memory (small) or a file path (large)."""

    id: str
    size: int
    data: bytes | None = None
    path: str | None = None

    def chunks(self, size: int = 256 * 1024) -> Iterator[bytes]:
        if self.data is not None:
            yield self.data
            return
        assert self.path is not None
        with open(self.path, "rb") as handle:
            while chunk := handle.read(size):
                yield chunk

    def read(self) -> bytes:
        return b"".join(self.chunks())


def address_text(addresses: Iterable[dict[str, str] | None]) -> str:
    return "\n".join(f"{a['Name']} <{a['Address']}>".lower() for a in addresses if a)


def mailboxes_of(info: MessageInfo) -> set[str]:
    boxes: set[str] = set()
    for recipient in info.recipients:
        address = recipient.strip().lower()
        if not address:
            continue
        boxes.add(address)
        local, at, domain = address.rpartition("@")
        if at and "+" in local:
            boxes.add(f"{local.split('+', 1)[0]}@{domain}")
    if info.user:
        boxes.add(info.user.strip().lower())
    return boxes


def tags_of(info: MessageInfo, parsed: ParsedMessage) -> list[str]:
    found: dict[str, str] = {}
    addresses = list(info.recipients) + [a["Address"] for a in parsed.to + parsed.cc]
    for address in addresses:
        local, at, _ = address.rpartition("@")
        if at and "+" in local:
            tag = local.split("+", 1)[1].strip()
            if tag:
                found.setdefault(tag.lower(), tag)
    for tag in parsed.header_tags:
        found.setdefault(tag.lower(), tag)
    return list(found.values())[:50]


def summary_json(row: tuple[Any, ...], tags: list[str]) -> dict[str, Any]:
    _, message_id, created, read, size, attachments, summary_json = row
    summary = json.loads(summary_json)
    return {
        "ID": message_id,
        "MessageID": summary["MessageID"],
        "Read": bool(read),
        "From": summary["From"],
        "To": summary["To"],
        "Cc": summary["Cc"],
        "Bcc": summary["Bcc"],
        "ReplyTo": summary["ReplyTo"],
        "Subject": summary["Subject"],
        "Created": rfc3339(created / 1000),
        "Username": summary["Username"],
        "Tags": tags,
        "Size": size,
        "Attachments": attachments,
        "Snippet": summary["Snippet"],
    }


def with_buffer(raw: RawMessage, function: Callable[[Any], T]) -> T:
    if raw.data is not None:
        return function(raw.data)
    assert raw.path is not None
    with open(raw.path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            return function(b"")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return function(mapped)


def part_chunks(raw: RawMessage, part_id: str) -> Iterator[bytes]:
    """The decoded chunks of one part, reading the file while iterated (in a thread)."""
    if raw.data is not None:
        location = find_part(raw.data, part_id)
        if location is not None:
            yield from iter_decoded(raw.data, location)
        return
    assert raw.path is not None
    with open(raw.path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            return
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            location = find_part(mapped, part_id)
            if location is not None:
                yield from iter_decoded(mapped, location)


def smtpgate_version() -> str:
    """The installed smtpgate's version (``0`` when unknown)."""
    try:
        from importlib.metadata import version

        return version("smtpgate")
    except Exception:
        return "0"


def searchable(parsed: ParsedMessage, info: MessageInfo, size: int, created: int, read: bool = False) -> Searchable:
    """What the search looks at in a message, as the store indexes it."""
    return Searchable(
        subject=parsed.subject,
        message_id=parsed.message_id,
        addr_from=address_text([parsed.from_]),
        addr_to=address_text(parsed.to),
        addr_cc=address_text(parsed.cc),
        addr_bcc=address_text(parsed.bcc),
        addr_reply_to=address_text(parsed.reply_to),
        text=parsed.search_text,
        tags=tuple(tags_of(info, parsed)),
        read=read,
        attachments=len(parsed.attachments),
        inline=len(parsed.inline),
        size=size,
        created=created,
    )

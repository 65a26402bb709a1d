"""Parse a stored message into Mailpit's shapes, with bounded work.

The MIME tree is walked here, not by `email.parser`: the walk finds part boundaries with
``find`` on the raw bytes (a `bytes` object or an `mmap`, so a 100 MB message is never
copied), without recursion, and stops at `MAX_DEPTH` levels and `MAX_PARTS` parts.
Each part's header block is parsed with `email` (``policy.default``); text and HTML
bodies are decoded with their charset (unknown charsets and broken encodings degrade to
UTF-8 with replacement characters). Attachments are decoded as a stream to count their
size and checksums. Nothing here raises on bad input: a message that cannot be made sense
of still gets a summary (its raw bytes are always kept by the store).
"""

from __future__ import annotations

import binascii
import codecs
import email.header
import email.headerregistry
import email.message
import email.parser
import email.policy
import email.utils
import hashlib
import html.parser
import quopri
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

__all__ = [
    "MAX_DEPTH",
    "MAX_PARTS",
    "Buffer",
    "ParsedMessage",
    "PartLocation",
    "parse_message",
    "find_part",
    "iter_decoded",
    "parse_headers",
    "header_map",
    "html_to_text",
]

MAX_DEPTH = 32
"""Multiparts nested deeper than this are treated as opaque attachments."""
MAX_PARTS = 10_000
"""Parts after this many are not listed (the raw message still has them)."""
MAX_HEADER_BYTES = 256 * 1024
"""A header block longer than this is cut (the rest is treated as body)."""
MAX_TEXT_BYTES = 16 * 1024 * 1024
"""Text and HTML bodies are decoded up to this many bytes (the rest is cut)."""
MAX_SEARCH_TEXT = 256 * 1024
"""Characters of body text put in the search index."""
SNIPPET_LENGTH = 250
_CHUNK = 1024 * 1024

_parser = email.parser.BytesHeaderParser(policy=email.policy.default)


class Buffer(Protocol):
    """What the walker reads: `bytes` or an `mmap` (find and slicing)."""

    def find(self, sub: bytes, start: int = ..., end: int = ...) -> int: ...

    def __getitem__(self, index: slice) -> bytes: ...

    def __len__(self) -> int: ...


@dataclass
class PartLocation:
    """Where one MIME part is in the raw message."""

    part_id: str
    headers: email.message.EmailMessage
    body_start: int
    body_end: int
    depth: int

    @property
    def content_type(self) -> str:
        try:
            return self.headers.get_content_type()
        except Exception:
            return "application/octet-stream"

    @property
    def transfer_encoding(self) -> str:
        value = self.headers.get("content-transfer-encoding", "")
        return _safe_str(value).strip().lower()


@dataclass
class ParsedMessage:
    """Everything the store keeps about a message besides its bytes."""

    message_id: str = ""
    subject: str = ""
    from_: dict[str, str] | None = None
    to: list[dict[str, str]] = field(default_factory=list)
    cc: list[dict[str, str]] = field(default_factory=list)
    bcc: list[dict[str, str]] = field(default_factory=list)
    reply_to: list[dict[str, str]] = field(default_factory=list)
    return_path: str = ""
    date: str | None = None
    text: str = ""
    html: str = ""
    attachments: list[dict[str, Any]] = field(default_factory=list)
    inline: list[dict[str, Any]] = field(default_factory=list)
    list_unsubscribe: dict[str, Any] = field(default_factory=dict)
    header_tags: list[str] = field(default_factory=list)
    snippet: str = ""
    search_text: str = ""
    parts: int = 0
    truncated: bool = False
    """The walk stopped early (too many parts or too deep)."""
    errors: list[str] = field(default_factory=list)


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return ""


def _header_end(data: Buffer, start: int, end: int) -> tuple[int, int]:
    """(end of the header block, start of the body) of the part at ``start``."""
    if data[start : start + 2] == b"\r\n":
        return start, start + 2
    if data[start : start + 1] == b"\n":
        return start, start + 1
    limit = min(end, start + MAX_HEADER_BYTES)
    crlf = data.find(b"\r\n\r\n", start, limit)
    lf = data.find(b"\n\n", start, limit)
    candidates = [(p, p + 4) for p in (crlf,) if p >= 0] + [(p, p + 2) for p in (lf,) if p >= 0]
    if not candidates:
        return limit, limit
    first = min(candidates)
    return first[0] + (2 if first[1] - first[0] == 4 else 1), first[1]


def parse_headers(data: bytes) -> email.message.EmailMessage:
    """A header block as an `EmailMessage` (never raises)."""
    try:
        message = _parser.parsebytes(data)
    except Exception:
        message = email.message.EmailMessage(policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def _boundary(headers: email.message.EmailMessage) -> bytes | None:
    try:
        value = headers.get_param("boundary")
    except Exception:
        return None
    if not isinstance(value, str) or not value or len(value) > 200:
        return None
    try:
        return email.utils.collapse_rfc2231_value(value).encode("utf-8", "surrogateescape")
    except Exception:
        return None


def _children(data: Buffer, start: int, end: int, boundary: bytes) -> Iterator[tuple[int, int]]:
    """(start, end) of each part of a multipart body between ``start`` and ``end``."""
    delimiter = b"--" + boundary
    position = start if data[start : start + len(delimiter)] == delimiter else -1
    if position < 0:
        found = data.find(b"\n" + delimiter, start, end)
        position = found + 1 if found >= 0 else -1
    while position >= 0:
        after = position + len(delimiter)
        if data[after : after + 2] == b"--":
            return
        line_end = data.find(b"\n", after, end)
        if line_end < 0:
            return
        part_start = line_end + 1
        found = data.find(b"\n" + delimiter, part_start, end)
        if found < 0:
            yield part_start, end  # no closing delimiter: the part runs to the end
            return
        part_end = found - 1 if found > part_start and data[found - 1 : found] == b"\r" else found
        yield part_start, max(part_start, part_end)
        position = found + 1


def walk(data: Buffer) -> tuple[list[PartLocation], bool]:
    """Every leaf part in order (multipart containers excluded) and whether the walk
    was cut short by `MAX_PARTS` or `MAX_DEPTH`. Never recurses."""
    leaves: list[PartLocation] = []
    truncated = False
    count = 0
    stack: list[tuple[int, int, str, int]] = [(0, len(data), "", 0)]
    while stack:
        start, end, part_id, depth = stack.pop()
        header_end, body_start = _header_end(data, start, end)
        headers = parse_headers(bytes(data[start:header_end]))
        location = PartLocation(part_id or "1", headers, min(body_start, end), end, depth)
        ctype = location.content_type
        boundary = _boundary(headers) if ctype.startswith("multipart/") else None
        if boundary is None:
            leaves.append(location)
            continue
        if depth >= MAX_DEPTH:
            truncated = True
            leaves.append(location)
            continue
        children: list[tuple[int, int, str, int]] = []
        for number, (child_start, child_end) in enumerate(_children(data, body_start, end, boundary), 1):
            count += 1
            if count > MAX_PARTS:
                truncated = True
                break
            child_id = f"{part_id}.{number}" if part_id else str(number)
            children.append((child_start, child_end, child_id, depth + 1))
        stack.extend(reversed(children))
    return leaves, truncated


def find_part(data: Buffer, part_id: str) -> PartLocation | None:
    """The leaf part with this Mailpit ``PartID`` (``"1"``, ``"2.1"``, ...)."""
    for leaf in walk(data)[0]:
        if leaf.part_id == part_id:
            return leaf
    return None


_WHITESPACE = re.compile(rb"[^A-Za-z0-9+/=]")


def iter_decoded(data: Buffer, part: PartLocation, limit: int | None = None) -> Iterator[bytes]:
    """The part's body with its transfer encoding undone, in chunks (bad encoding
    degrades: undecodable base64 characters are skipped)."""
    end = part.body_end if limit is None else min(part.body_end, part.body_start + limit)
    encoding = part.transfer_encoding
    position = part.body_start
    carry = b""
    while position < end:
        stop = min(end, position + _CHUNK)
        if encoding in ("quoted-printable", "base64") and stop < end:
            newline = data.find(b"\n", stop, min(end, stop + 4096))
            stop = newline + 1 if newline >= 0 else stop
        chunk = bytes(data[position:stop])
        position = stop
        if encoding == "base64":
            clean = carry + _WHITESPACE.sub(b"", chunk)
            usable = len(clean) - len(clean) % 4
            carry = clean[usable:]
            if usable:
                yield _b64(clean[:usable])
        elif encoding == "quoted-printable":
            yield quopri.decodestring(chunk)
        else:
            yield chunk
    if carry:
        yield _b64(carry)


_PADDED = re.compile(rb"[^=]*=+|[^=]+")


def _b64(data: bytes) -> bytes:
    """Decode base64 leniently: padding in the middle (per-line encoders) starts a new
    run; a run of bad length loses only its incomplete quantum."""
    if b"=" not in data[:-2]:
        return _b64_run(data)
    return b"".join(_b64_run(run) for run in _PADDED.findall(data))


def _b64_run(data: bytes) -> bytes:
    body = data.rstrip(b"=")
    if len(body) % 4 == 1:
        body = body[:-1]
    try:
        return binascii.a2b_base64(body + b"=" * (-len(body) % 4))
    except binascii.Error:
        return b""


def _decode_text(data: Buffer, part: PartLocation) -> str:
    body = b"".join(iter_decoded(data, part, limit=MAX_TEXT_BYTES * 2))[:MAX_TEXT_BYTES]
    try:
        charset = part.headers.get_content_charset() or "utf-8"
    except Exception:
        charset = "utf-8"
    try:
        codecs.lookup(charset)
    except (LookupError, ValueError):
        charset = "utf-8"
    if charset in ("us-ascii", "ascii"):
        charset = "utf-8"  # 8-bit text labelled ASCII is usually UTF-8
    try:
        return body.decode(charset, "replace")
    except Exception:
        return body.decode("utf-8", "replace")


class _TextExtractor(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "head", "title"):
            self._skip += 1
        elif tag in ("br", "p", "div", "tr", "li", "h1", "h2", "h3"):
            self.pieces.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head", "title") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.pieces.append(data)


def html_to_text(markup: str) -> str:
    """Readable text of an HTML body (scripts and styles dropped)."""
    extractor = _TextExtractor()
    try:
        extractor.feed(markup[:MAX_TEXT_BYTES])
        extractor.close()
    except Exception:
        pass
    text = "".join(extractor.pieces)
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def _attachment(data: Buffer, part: PartLocation) -> dict[str, Any]:
    md5, sha1, sha256 = hashlib.md5(), hashlib.sha1(), hashlib.sha256()
    size = 0
    for chunk in iter_decoded(data, part):
        size += len(chunk)
        md5.update(chunk)
        sha1.update(chunk)
        sha256.update(chunk)
    try:
        filename = part.headers.get_filename() or ""
    except Exception:
        filename = ""
    content_id = _safe_str(part.headers.get("content-id", "")).strip().strip("<>")
    return {
        "PartID": part.part_id,
        "FileName": filename,
        "ContentType": part.content_type,
        "ContentID": content_id,
        "Size": size,
        "Checksums": {"MD5": md5.hexdigest(), "SHA1": sha1.hexdigest(), "SHA256": sha256.hexdigest()},
    }


def _valid_text(text: str) -> str:
    """``text`` as valid Unicode: bytes that were not UTF-8 (kept by the parser as lone
    surrogates) become U+FFFD, so the store and JSON can take every address."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        except UnicodeEncodeError:
            return text.encode("utf-8", "replace").decode("utf-8")


def _address(value: object) -> dict[str, str]:
    if isinstance(value, email.headerregistry.Address):
        name, address = value.display_name or "", value.addr_spec if value.username else ""
    else:
        name, address = value if isinstance(value, tuple) else ("", str(value))
    return {"Name": _valid_text(str(name)), "Address": _valid_text(str(address))}


def _addresses(headers: email.message.EmailMessage, name: str) -> list[dict[str, str]]:
    values = headers.get_all(name) or []
    found: list[dict[str, str]] = []
    for value in values:
        try:
            found.extend(_address(a) for a in value.addresses)
        except Exception:
            raw = _safe_str(value)
            found.extend(_address(pair) for pair in email.utils.getaddresses([raw]) if pair[1])
    return [a for a in found if a["Address"] or a["Name"]]


def _date(headers: email.message.EmailMessage) -> str | None:
    try:
        value = headers.get("date")
        moment = getattr(value, "datetime", None)
    except Exception:
        return None
    if not isinstance(moment, datetime):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return rfc3339(moment.timestamp(), moment)


def rfc3339(epoch: float, moment: datetime | None = None) -> str:
    """``2024-05-01T10:00:00.123+02:00`` (``Z`` for UTC), Mailpit's date format."""
    if moment is None:
        moment = datetime.fromtimestamp(epoch, timezone.utc)
    text = moment.isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_FOLD = re.compile(r"[ \t]*\r?\n[ \t]+")


def canonical_header_name(name: str) -> str:
    """Go's canonical spelling (``textproto.CanonicalMIMEHeaderKey``), which Mailpit's
    ``/headers`` keys have: ``message-ID`` → ``Message-Id``, ``MIME-Version`` →
    ``Mime-Version``. A name with characters outside an HTTP token is kept as it is."""
    if not _TOKEN.match(name):
        return name
    return "-".join(word[:1].upper() + word[1:].lower() for word in name.split("-"))


def header_map(data: Buffer) -> dict[str, list[str]]:
    """The top-level headers as Mailpit's ``/headers`` gives them: canonical name →
    values (unfolded, in order), names sorted."""
    header_end, _ = _header_end(data, 0, len(data))
    headers = parse_headers(bytes(data[:header_end]))
    result: dict[str, list[str]] = {}
    for name, value in headers.raw_items():
        result.setdefault(canonical_header_name(name), []).append(_header_text(value))
    return dict(sorted(result.items()))


def _header_text(raw: object) -> str:
    """A source header value unfolded like Go's reader (a fold is one space), with
    encoded words decoded and undecodable bytes replaced."""
    text = _FOLD.sub(" ", _safe_str(raw)).strip()
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if "=?" in text:
        try:
            text = str(email.header.make_header(email.header.decode_header(text)))
        except Exception:  # a malformed encoded word: keep it as written
            pass
    return text


def _list_unsubscribe(headers: email.message.EmailMessage) -> dict[str, Any]:
    header = _safe_str(headers.get("list-unsubscribe", "")).strip()
    links = re.findall(r"<([^>]+)>", header)
    return {
        "Header": header,
        "Links": links,
        "Errors": "",
        "HeaderPost": _safe_str(headers.get("list-unsubscribe-post", "")).strip(),
    }


def parse_message(data: Buffer) -> ParsedMessage:
    """The summary, bodies and attachment list of a raw message (never raises)."""
    result = ParsedMessage()
    try:
        _fill(result, data)
    except Exception as error:  # a bug or an input we did not foresee: keep what we have
        result.errors.append(f"{type(error).__name__}: {error}")
    return result


def _fill(result: ParsedMessage, data: Buffer) -> None:
    leaves, result.truncated = walk(data)
    result.parts = len(leaves)
    header_end, _ = _header_end(data, 0, len(data))
    top = parse_headers(bytes(data[:header_end]))
    result.subject = " ".join(_safe_str(top.get("subject", "")).split())
    result.message_id = _safe_str(top.get("message-id", "")).strip().strip("<>")
    senders = _addresses(top, "from")
    result.from_ = senders[0] if senders else None
    result.to = _addresses(top, "to")
    result.cc = _addresses(top, "cc")
    result.bcc = _addresses(top, "bcc")
    result.reply_to = _addresses(top, "reply-to")
    result.return_path = _safe_str(top.get("return-path", "")).strip().strip("<>")
    result.date = _date(top)
    result.list_unsubscribe = _list_unsubscribe(top)
    tags = _safe_str(top.get("x-tags", ""))
    result.header_tags = [t.strip() for t in tags.split(",") if t.strip()]
    for leaf in leaves:
        ctype = leaf.content_type
        try:
            disposition = leaf.headers.get_content_disposition()
            filename = leaf.headers.get_filename()
        except Exception:
            disposition, filename = None, None
        is_body = disposition != "attachment" and not filename
        if is_body and ctype == "text/plain" and not result.text:
            result.text = _decode_text(data, leaf)
        elif is_body and ctype == "text/html" and not result.html:
            result.html = _decode_text(data, leaf)
        elif disposition != "attachment" and leaf.headers.get("content-id") and not ctype.startswith("multipart/"):
            result.inline.append(_attachment(data, leaf))
        else:
            result.attachments.append(_attachment(data, leaf))
    body = result.text or html_to_text(result.html)
    if not result.text and result.html:
        result.text = body
    result.snippet = " ".join(body[: SNIPPET_LENGTH * 8].split())[:SNIPPET_LENGTH]
    names = [a["FileName"] for a in result.attachments + result.inline if a["FileName"]]
    addresses = [result.from_] if result.from_ else []
    addresses += result.to + result.cc + result.bcc + result.reply_to
    pieces = [result.subject, result.message_id, *(f"{a['Name']} {a['Address']}" for a in addresses), *names]
    result.search_text = "\n".join([*pieces, body[:MAX_SEARCH_TEXT]])

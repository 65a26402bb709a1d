"""Mailpit's search syntax, parsed into terms and turned into SQL with parameters.

A query is words separated by spaces. A word is free text (matched anywhere in the
subject, addresses, attachment names and body text), or ``prefix:value`` with one of the
prefixes in `FIELDS`, or ``is:read``/``is:unread``/``is:tagged``,
``has:attachment``/``has:inline``. ``"quoted phrases"`` keep their spaces (also after a
prefix: ``subject:"two words"``). A leading ``-`` (or ``!``) negates a word. Dates for
``before:``/``after:`` are ISO 8601 (``2024-05-01``, ``2024-05-01T10:30``, with an
optional offset) or ``1 May 2024``; a date without an offset is in the ``tz`` given to
`to_sql` (UTC by default). Every value reaches SQL as a parameter, never as SQL text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo

__all__ = [
    "SearchError",
    "Term",
    "Searchable",
    "parse_query",
    "to_sql",
    "matches",
    "render_query",
    "FIELDS",
    "MAX_QUERY",
    "MAX_TERMS",
]

MAX_QUERY = 2000
"""Longest query accepted (characters)."""
MAX_TERMS = 50
"""Most words in one query."""


class SearchError(ValueError):
    """A malformed query; ``str()`` names the problem (answered with HTTP 400)."""


# prefix -> SQL condition on the messages table `m`, with one LIKE parameter
FIELDS: dict[str, str] = {
    "from": "m.addr_from LIKE ? ESCAPE '\\'",
    "to": "m.addr_to LIKE ? ESCAPE '\\'",
    "cc": "m.addr_cc LIKE ? ESCAPE '\\'",
    "bcc": "m.addr_bcc LIKE ? ESCAPE '\\'",
    "reply-to": "m.addr_reply_to LIKE ? ESCAPE '\\'",
    "subject": "m.subject_lc LIKE ? ESCAPE '\\'",
    "message-id": "m.message_id LIKE ? ESCAPE '\\'",
}
_FLAGS: dict[str, str] = {
    "is:read": "m.read = 1",
    "is:unread": "m.read = 0",
    "is:tagged": "EXISTS (SELECT 1 FROM tags t WHERE t.seq = m.seq)",
    "has:attachment": "m.attachments > 0",
    "has:attachments": "m.attachments > 0",
    "has:inline": "m.inline > 0",
}
_OTHER = ("tag", "before", "after", "addressed", "larger", "smaller")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([km]b?|b)?$", re.IGNORECASE)


@dataclass(frozen=True)
class Term:
    """One word of a query: ``field`` is ``""`` for free text, else a prefix or a flag
    (``is:read``); ``value`` is the text to match (unquoted)."""

    field: str
    value: str
    negated: bool = False


def _words(query: str) -> list[tuple[str, int]]:
    """Split on spaces outside double quotes; quotes are removed. (word, position)."""
    words: list[tuple[str, int]] = []
    current: list[str] = []
    start = -1
    quoted = False
    quote_at = 0
    for index, char in enumerate(query):
        if char == '"':
            if start < 0:
                start = index
            quoted = not quoted
            quote_at = index
            current.append("\0")  # marks that the word had quotes (an empty "" is a value)
        elif char.isspace() and not quoted:
            if start >= 0:
                words.append(("".join(current), start))
            current, start = [], -1
        else:
            if start < 0:
                start = index
            current.append(char)
    if quoted:
        raise SearchError(f"unterminated quote at position {quote_at + 1}")
    if start >= 0:
        words.append(("".join(current), start))
    return words


def parse_query(query: str) -> list[Term]:
    """The terms of a query; raises `SearchError` naming the problem."""
    if len(query) > MAX_QUERY:
        raise SearchError(f"query too long ({len(query)} characters, at most {MAX_QUERY})")
    terms: list[Term] = []
    for word, position in _words(query):
        negated = False
        if len(word) > 1 and word[0] in "-!":
            negated, word = True, word[1:]
        prefix, colon, rest = word.partition(":")
        key = prefix.replace("\0", "").lower()
        value = rest.replace("\0", "")
        if colon and key in ("is", "has"):
            flag = f"{key}:{value.lower()}"
            if flag not in _FLAGS:
                known = ", ".join(f for f in _FLAGS if f.startswith(key + ":"))
                raise SearchError(f"unknown {key}: value {value!r} at position {position + 1} (expected {known})")
            terms.append(Term(flag, "", negated))
        elif colon and (key in FIELDS or key in _OTHER):
            if not value.strip():
                raise SearchError(f"{key}: needs a value (position {position + 1})")
            if key in ("before", "after"):
                parse_date(value)
            if key in ("larger", "smaller"):
                parse_size(value)
            terms.append(Term(key, value, negated))
        else:
            text = word.replace("\0", "")
            if text.strip():
                terms.append(Term("", text, negated))
        if len(terms) > MAX_TERMS:
            raise SearchError(f"too many search terms (at most {MAX_TERMS})")
    return terms


_DATE_FORMATS = ("%Y/%m/%d", "%d %b %Y", "%d %B %Y", "%b %d %Y", "%B %d %Y", "%d-%b-%Y")


def parse_date(text: str, tz: tzinfo = timezone.utc) -> datetime:
    """A ``before:``/``after:`` date; raises `SearchError`."""
    value = text.strip()
    moment: datetime | None = None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        for pattern in _DATE_FORMATS:
            try:
                moment = datetime.strptime(value, pattern)
                break
            except ValueError:
                continue
    if moment is None:
        raise SearchError(f"invalid date {text!r} (examples: 2024-05-01, 2024-05-01T10:30, '1 May 2024')")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


def parse_size(text: str) -> int:
    """``larger:``/``smaller:`` sizes: bytes, or with k/kb/m/mb (powers of 1024)."""
    match = _SIZE.match(text.strip())
    if not match:
        raise SearchError(f"invalid size {text!r} (examples: 2048, 10k, 1.5mb)")
    unit = (match.group(2) or "").lower().rstrip("b")
    return min(int(float(match.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[unit]), 2**62)


def _like(value: str) -> str:
    escaped = value.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _condition(term: Term, tz: tzinfo) -> tuple[str, list[object]]:
    if term.field in _FLAGS:
        return _FLAGS[term.field], []
    if term.field in FIELDS:
        return FIELDS[term.field], [_like(term.value)]
    if term.field == "tag":
        return "EXISTS (SELECT 1 FROM tags t WHERE t.seq = m.seq AND t.tag = ? COLLATE NOCASE)", [term.value]
    if term.field == "addressed":
        columns = ("addr_from", "addr_to", "addr_cc", "addr_bcc", "addr_reply_to")
        sql = " OR ".join(f"m.{c} LIKE ? ESCAPE '\\'" for c in columns)
        return f"({sql})", [_like(term.value)] * len(columns)
    if term.field in ("before", "after"):
        millis = int(parse_date(term.value, tz).timestamp() * 1000)
        return ("m.created < ?" if term.field == "before" else "m.created >= ?"), [millis]
    if term.field in ("larger", "smaller"):
        return ("m.size > ?" if term.field == "larger" else "m.size < ?"), [parse_size(term.value)]
    # free text: the trigram FTS index finds substrings of 3+ characters; shorter ones scan it
    if len(term.value) >= 3:
        phrase = '"' + term.value.replace('"', '""') + '"'
        return "m.seq IN (SELECT rowid FROM fts WHERE fts MATCH ?)", [phrase]
    return "m.seq IN (SELECT rowid FROM fts WHERE fts.text LIKE ? ESCAPE '\\')", [_like(term.value)]


def to_sql(terms: list[Term], tz: tzinfo = timezone.utc) -> tuple[str, list[object]]:
    """A WHERE condition on ``messages m`` (``"1"`` for no terms) and its parameters."""
    clauses: list[str] = []
    params: list[object] = []
    for term in terms:
        sql, values = _condition(term, tz)
        clauses.append(f"NOT ({sql})" if term.negated else f"({sql})")
        params.extend(values)
    return (" AND ".join(clauses) or "1"), params


def render_query(terms: list[Term]) -> str:
    """A query string that parses back to ``terms`` (quotes where needed)."""
    words = []
    for term in terms:
        sign = "-" if term.negated else ""
        if term.field in _FLAGS:
            words.append(sign + term.field)
            continue
        value = term.value
        if not value or any(c.isspace() for c in value) or (not term.field and (":" in value or value[0] in "-!")):
            value = f'"{value}"'
        words.append(f"{sign}{term.field}:{value}" if term.field else sign + value)
    return " ".join(words)


@dataclass(frozen=True)
class Searchable:
    """What a query looks at in one message, for `matches` (no database)."""

    subject: str = ""
    message_id: str = ""
    addr_from: str = ""
    addr_to: str = ""
    addr_cc: str = ""
    addr_bcc: str = ""
    addr_reply_to: str = ""
    text: str = ""
    """Everything the free-text index holds (subject, addresses, names, body)."""
    tags: tuple[str, ...] = ()
    read: bool = False
    attachments: int = 0
    inline: int = 0
    size: int = 0
    created: int = 0
    """Milliseconds since the epoch."""


def _contains(haystack: str, needle: str) -> bool:
    return needle.lower() in haystack.lower()


def _term_matches(term: Term, item: Searchable, tz: tzinfo) -> bool:
    flags = {
        "is:read": item.read,
        "is:unread": not item.read,
        "is:tagged": bool(item.tags),
        "has:attachment": item.attachments > 0,
        "has:attachments": item.attachments > 0,
        "has:inline": item.inline > 0,
    }
    if term.field in flags:
        return flags[term.field]
    columns = {
        "from": item.addr_from,
        "to": item.addr_to,
        "cc": item.addr_cc,
        "bcc": item.addr_bcc,
        "reply-to": item.addr_reply_to,
        "subject": item.subject,
        "message-id": item.message_id,
    }
    if term.field in columns:
        return _contains(columns[term.field], term.value)
    if term.field == "tag":
        return any(tag.lower() == term.value.lower() for tag in item.tags)
    if term.field == "addressed":
        return any(_contains(columns[name], term.value) for name in ("from", "to", "cc", "bcc", "reply-to"))
    if term.field in ("before", "after"):
        millis = int(parse_date(term.value, tz).timestamp() * 1000)
        return item.created < millis if term.field == "before" else item.created >= millis
    if term.field in ("larger", "smaller"):
        size = parse_size(term.value)
        return item.size > size if term.field == "larger" else item.size < size
    return _contains(item.text, term.value)


def matches(terms: list[Term], item: Searchable, tz: tzinfo = timezone.utc) -> bool:
    """Does ``item`` match every term (the same meaning as `to_sql`, without SQL)?"""
    return all(_term_matches(term, item, tz) != term.negated for term in terms)

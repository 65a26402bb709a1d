"""A linear-time HTML tokenizer that splits a document the way a browser does.

Python's ``html.parser`` takes quadratic time on unclosed constructs (400 KB of
``<!--`` or ``<a\\n`` keeps it busy for minutes) and raises on some inputs, so it cannot
read hostile mail. This tokenizer follows the WHATWG tokenizer's states for what matters
when rewriting a message: tags and their attributes (quotes, ``/``, missing values,
unclosed tags swallowing the rest), comments, doctypes, bogus comments, and the raw text of
``<script>`` and ``<style>``. Every step consumes input, so the work is linear in the
length of the document.

Where it simplifies, it sees *more* markup than a browser would, never less: the text of
``<textarea>``, ``<title>``, ``<xmp>`` and similar elements is tokenized as markup, which
makes a rewriter handle it as if it were live (harmless: the browser shows it as text).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = ["Comment", "Doctype", "EndTag", "RawText", "StartTag", "Text", "Token", "tokenize"]


@dataclass
class Text:
    """Text between tags, as written (character references not decoded)."""

    text: str


@dataclass
class RawText:
    """The content of ``<script>`` or ``<style>`` (``element`` says which), as written."""

    text: str
    element: str


@dataclass
class StartTag:
    """``<name attr=value ...>``: ``attrs`` holds (name as written, decoded value or None),
    first occurrence of each name only (a browser ignores repeats)."""

    name: str
    attrs: list[tuple[str, str | None]] = field(default_factory=list)
    self_closing: bool = False
    raw: str = ""

    @property
    def lname(self) -> str:
        return self.name.lower()


@dataclass
class EndTag:
    name: str
    raw: str = ""

    @property
    def lname(self) -> str:
        return self.name.lower()


@dataclass
class Comment:
    """A comment, a bogus comment (``<?...>``, ``<!x...>``, ``</ ...>``) or a CDATA section."""

    raw: str


@dataclass
class Doctype:
    raw: str


Token = Text | RawText | StartTag | EndTag | Comment | Doctype

_WS = re.compile(r"[\t\n\f\r ]*")
_TAG_NAME = re.compile(r"[^\t\n\f\r />]*")
_ATTR_NAME = re.compile(r"[^\t\n\f\r />=]*")
_UNQUOTED = re.compile(r"[^\t\n\f\r >]*")
_ALPHA = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_RAW_TEXT_ELEMENTS = ("script", "style")
_RAW_TEXT_END = {name: re.compile(rf"</{name}[\t\n\f\r />]", re.IGNORECASE) for name in _RAW_TEXT_ELEMENTS}


def tokenize(text: str) -> Iterator[Token]:
    """The tokens of ``text`` in order. A tag left open at the end swallows the rest (as in
    a browser, which drops it)."""
    pos = 0
    end = len(text)
    while pos < end:
        lt = text.find("<", pos)
        if lt < 0:
            yield Text(text[pos:])
            return
        if lt > pos:
            yield Text(text[pos:lt])
        token, pos = _markup(text, lt)
        if token is None:
            continue
        yield token
        if isinstance(token, StartTag) and token.lname in _RAW_TEXT_ELEMENTS:
            match = _RAW_TEXT_END[token.lname].search(text, pos)
            stop = match.start() if match else end
            if stop > pos:
                yield RawText(text[pos:stop], token.lname)
            pos = stop


def _markup(text: str, i: int) -> tuple[Token | None, int]:
    """The token that starts with the ``<`` at ``i``, and where the next one starts."""
    end = len(text)
    following = text[i + 1 : i + 2]
    if following in _ALPHA:
        return _tag(text, i, closing=False)
    if following == "/":
        after = text[i + 2 : i + 3]
        if after in _ALPHA and after:
            return _tag(text, i, closing=True)
        if after == ">":
            return None, i + 3  # "</>" is dropped
        if not after:
            return Text("</"), end
        return _bogus_comment(text, i, i + 2)
    if following == "!":
        if text.startswith("<!--", i):
            return _comment(text, i)
        if text[i + 2 : i + 9].lower() == "doctype":
            close = text.find(">", i)
            stop = end if close < 0 else close + 1
            return Doctype(text[i:stop]), stop
        return _bogus_comment(text, i, i + 2)
    if following == "?":
        return _bogus_comment(text, i, i + 1)
    return Text("<"), i + 1


def _comment(text: str, i: int) -> tuple[Token, int]:
    start = i + 4
    if text.startswith(">", start):  # "<!-->"
        return Comment(text[i : start + 1]), start + 1
    if text.startswith("->", start):  # "<!--->"
        return Comment(text[i : start + 2]), start + 2
    ends = [(found, len(marker)) for marker in ("-->", "--!>") if (found := text.find(marker, start)) >= 0]
    if not ends:
        return Comment(text[i:]), len(text)
    found, length = min(ends)
    return Comment(text[i : found + length]), found + length


def _bogus_comment(text: str, i: int, start: int) -> tuple[Token, int]:
    close = text.find(">", start)
    stop = len(text) if close < 0 else close + 1
    return Comment(text[i:stop]), stop


def _tag(text: str, i: int, closing: bool) -> tuple[Token | None, int]:
    end = len(text)
    name_match = _TAG_NAME.match(text, i + (2 if closing else 1))
    assert name_match is not None  # the pattern matches the empty string
    name = name_match.group(0)
    pos = name_match.end()
    attrs: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    self_closing = False
    while True:
        pos = _skip_ws(text, pos)
        if pos >= end:
            return None, end  # EOF in a tag: a browser drops the tag
        char = text[pos]
        if char == ">":
            pos += 1
            break
        if char == "/":
            if text.startswith(">", pos + 1):
                self_closing = True
                pos += 2
                break
            pos += 1
            continue
        attr_match = _ATTR_NAME.match(text, pos + 1)  # the first character may be "="
        assert attr_match is not None
        attr_name = char + attr_match.group(0)
        pos = _skip_ws(text, attr_match.end())
        value: str | None = None
        if text.startswith("=", pos):
            pos = _skip_ws(text, pos + 1)
            if pos >= end:
                return None, end
            quote = text[pos]
            if quote in "\"'":
                close = text.find(quote, pos + 1)
                if close < 0:
                    return None, end
                value = text[pos + 1 : close]
                pos = close + 1
            elif quote == ">":
                value = ""
            else:
                value_match = _UNQUOTED.match(text, pos)
                assert value_match is not None
                value = value_match.group(0)
                pos = value_match.end()
            value = html.unescape(value)
        key = attr_name.lower()
        if key not in seen:
            seen.add(key)
            attrs.append((attr_name, value))
    raw = text[i:pos]
    if closing:
        return EndTag(name, raw), pos
    return StartTag(name, attrs, self_closing, raw), pos


def _skip_ws(text: str, pos: int) -> int:
    match = _WS.match(text, pos)
    assert match is not None
    return match.end()

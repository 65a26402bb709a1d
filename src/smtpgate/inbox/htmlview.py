"""Make a message's HTML safe to show: ``cid:`` links to parts, remote content held back.

This is the second of two fences. The first is the browser: the page is served in a
sandboxed frame with a Content-Security-Policy that forbids scripts and remote loads (see
:mod:`smtpgate.inbox.ui`). This module rewrites the HTML itself so that the page asks for
nothing it must not have even where a browser enforces less: scripts, event handler
attributes, ``<base>``, meta refreshes and prefetch hints are dropped; resource URLs keep
only ``cid:`` (rewritten to the part's API URL), ``data:`` and, when the reader asked for
remote content, ``http(s):``. Everything else in the document is passed through as written.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import unquote

__all__ = ["BLANK_IMAGE", "PreparedHTML", "prepare_html"]

# Attributes that make the browser fetch something, per element ("*" for every element).
_RESOURCE_ATTRIBUTES: dict[str, frozenset[str]] = {
    "*": frozenset({"src", "lowsrc", "dynsrc", "background", "poster", "srcset"}),
    "object": frozenset({"data", "codebase", "classid"}),
    "applet": frozenset({"code", "codebase", "archive"}),
    "image": frozenset({"href", "xlink:href"}),
    "use": frozenset({"href", "xlink:href"}),
    "feimage": frozenset({"href", "xlink:href"}),
    "input": frozenset({"src"}),
}
# Elements that embed other documents: never loaded, whatever the URL.
_FRAMES = frozenset({"iframe", "frame", "object", "embed", "applet", "portal", "fencedframe"})
# Elements dropped with their content.
_DROPPED_WITH_CONTENT = frozenset({"script"})
# Elements dropped (their content, if any, stays).
_DROPPED = frozenset({"base"})
_LINK_TARGETS = frozenset({"a", "area"})
_REMOTE_URL = re.compile(r"^(?:https?:)?//", re.IGNORECASE)
_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):", re.IGNORECASE)
_CSS_URL = re.compile(r"""url\(\s*(?:"([^"]*)"|'([^']*)'|([^)'"]*?))\s*\)""", re.IGNORECASE)
_CSS_IMPORT = re.compile(r"""@import\s+(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE)
# Whitespace and control characters a browser ignores inside a URL.
_URL_JUNK = re.compile(r"[\x00-\x20\x7f]+")
# What a held-back image shows instead: a transparent pixel (no broken-image icon).
BLANK_IMAGE = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"


@dataclass
class PreparedHTML:
    """The rewritten document and the remote URLs it refers to (held back unless allowed)."""

    html: str
    remote: list[str] = field(default_factory=list)

    @property
    def remote_hosts(self) -> list[str]:
        """The distinct host names of the remote URLs, in order of appearance."""
        hosts: dict[str, None] = {}
        for url in self.remote:
            host = _REMOTE_URL.sub("", url.strip()).split("/", 1)[0].split("?", 1)[0]
            hosts[host.rsplit("@", 1)[-1].lower()] = None
        return list(hosts)


def prepare_html(html_text: str, part_url: Callable[[str], str | None], allow_remote: bool = False) -> PreparedHTML:
    """Rewrite ``html_text`` for display in the sandboxed frame.

    ``part_url`` maps a Content-ID (without angle brackets) to the URL of that part, or
    ``None`` when the message has no such part. Remote URLs are recorded in the result
    and, unless ``allow_remote``, removed from the document.
    """
    rewriter = _Rewriter(part_url, allow_remote)
    rewriter.feed(html_text)
    rewriter.close()
    return PreparedHTML("".join(rewriter.out), rewriter.remote)


class _Rewriter(HTMLParser):
    def __init__(self, part_url: Callable[[str], str | None], allow_remote: bool) -> None:
        super().__init__(convert_charrefs=False)
        self.part_url = part_url
        self.allow_remote = allow_remote
        self.out: list[str] = []
        self.remote: list[str] = []
        self.skipping: str | None = None  # inside a dropped element: its name
        self.in_style = False

    # Tags ---------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs, self_closing=False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs, self_closing=True)

    def _start(self, tag: str, attrs: list[tuple[str, str | None]], self_closing: bool) -> None:
        if self.skipping is not None:
            return
        if tag in _DROPPED_WITH_CONTENT:
            if not self_closing:
                self.skipping = tag
            return
        if tag in _DROPPED or self._drop_meta_or_link(tag, attrs):
            return
        original = self.get_starttag_text() or ""
        rewritten, changed = self._rewrite_attributes(tag, attrs)
        if tag == "style" and not self_closing:
            self.in_style = True
        if not changed:
            self.out.append(original)
            return
        parts = [tag]
        for name, value in rewritten:
            parts.append(name if value is None else f'{name}="{html.escape(value, quote=True)}"')
        self.out.append("<" + " ".join(parts) + (" />" if self_closing else ">"))

    def handle_endtag(self, tag: str) -> None:
        if self.skipping is not None:
            if tag == self.skipping:
                self.skipping = None
            return
        if tag in _DROPPED_WITH_CONTENT or tag in _DROPPED:
            return
        if tag == "style":
            self.in_style = False
        self.out.append(f"</{tag}>")

    def _drop_meta_or_link(self, tag: str, attrs: list[tuple[str, str | None]]) -> bool:
        values = {name: (value or "") for name, value in attrs}
        if tag == "meta":
            # A refresh navigates the frame (to a tracker, say); nothing else a meta does matters here.
            return values.get("http-equiv", "").strip().lower() in {"refresh", "set-cookie"}
        if tag == "link":
            rels = set(values.get("rel", "").lower().split())
            href = values.get("href", "")
            if "stylesheet" in rels and self._is_remote(href):
                self.remote.append(href.strip())
                return not self.allow_remote
            # Prefetch, preconnect, icons, imports...: nothing a reader needs.
            return True
        return False

    # Attributes -----------------------------------------------------------

    def _rewrite_attributes(
        self, tag: str, attrs: list[tuple[str, str | None]]
    ) -> tuple[list[tuple[str, str | None]], bool]:
        resources = _RESOURCE_ATTRIBUTES["*"] | _RESOURCE_ATTRIBUTES.get(tag, frozenset())
        result: list[tuple[str, str | None]] = []
        changed = False
        for name, value in attrs:
            if name.startswith("on") or name in {"ping", "formaction", "action"}:
                changed = True
                continue
            if value is None:
                result.append((name, value))
                continue
            if _scheme(value) in {"javascript", "vbscript"}:
                changed = True
                continue
            if name in resources:
                new = None if tag in _FRAMES else self._resource(value, srcset=(name == "srcset"))
                if new is None and tag == "img" and name == "src":
                    new = BLANK_IMAGE
                if new is None:
                    changed = True
                    continue
                if new != value:
                    changed = True
                result.append((name, new))
            elif name == "style":
                new_style = self._css(value)
                changed = changed or new_style != value
                result.append((name, new_style))
            elif name in {"href", "xlink:href"} and tag in _LINK_TARGETS:
                scheme = _scheme(value)
                if scheme == "data":
                    changed = True
                    continue
                if scheme == "cid":
                    url = self._cid(value)
                    if url is None:
                        changed = True
                        continue
                    changed = True
                    result.append((name, url))
                else:
                    result.append((name, value))
            elif name in {"target", "rel"} and tag in _LINK_TARGETS:
                changed = True  # replaced below
            else:
                result.append((name, value))
        if tag in _LINK_TARGETS and any(name == "href" for name, _ in result):
            # Links open outside the frame, without telling the site where they came from.
            result += [("target", "_blank"), ("rel", "noopener noreferrer")]
            changed = True
        return result, changed

    def _resource(self, value: str, srcset: bool = False) -> str | None:
        """The URL to keep for a resource attribute, or None to drop the attribute."""
        if srcset:
            kept = []
            for candidate in value.split(","):
                pieces = candidate.strip().split(None, 1)
                if not pieces:
                    continue
                url = self._url(pieces[0])
                if url is not None:
                    kept.append(" ".join([url, *pieces[1:]]))
            return ", ".join(kept) if kept else None
        return self._url(value)

    def _url(self, value: str) -> str | None:
        """Rewrite one URL a resource would load from; None when it must not load."""
        scheme = _scheme(value)
        if scheme == "cid":
            return self._cid(value)
        if scheme == "data":
            return value
        if self._is_remote(value):
            self.remote.append(value.strip())
            return value if self.allow_remote else None
        # Relative URLs, other schemes: a message has no base to resolve them against.
        return None

    def _cid(self, value: str) -> str | None:
        content_id = unquote(_URL_JUNK.sub("", value)[4:]).strip("<>")
        return self.part_url(content_id)

    def _is_remote(self, value: str) -> bool:
        return bool(_REMOTE_URL.match(_URL_JUNK.sub("", value)))

    def _css(self, css: str) -> str:
        def replace_url(match: re.Match[str]) -> str:
            url = next((group for group in match.groups() if group is not None), "")
            new = self._url(_css_unescape(url))
            return 'url("about:invalid")' if new is None else 'url("' + new.replace('"', "%22") + '")'

        def replace_import(match: re.Match[str]) -> str:
            url = next((group for group in match.groups() if group is not None), "")
            new = self._url(_css_unescape(url))
            return '@import "about:invalid"' if new is None else '@import "' + new.replace('"', "%22") + '"'

        return _CSS_IMPORT.sub(replace_import, _CSS_URL.sub(replace_url, css))

    # Everything else passes through -------------------------------------------

    def handle_data(self, data: str) -> None:
        if self.skipping is not None:
            return
        self.out.append(self._css(data) if self.in_style else data)

    def handle_entityref(self, name: str) -> None:
        if self.skipping is None:
            self.out.append(f"&{name};")

    def handle_charref(self, name: str) -> None:
        if self.skipping is None:
            self.out.append(f"&#{name};")

    def handle_comment(self, data: str) -> None:
        # Comments can hide IE conditional markup; nothing in them is needed for display.
        return

    def handle_decl(self, decl: str) -> None:
        if self.skipping is None:
            self.out.append(f"<!{decl}>")

    def handle_pi(self, data: str) -> None:
        return

    def unknown_decl(self, data: str) -> None:
        return


def _scheme(value: str) -> str:
    match = _SCHEME.match(_URL_JUNK.sub("", value))
    return match.group(1).lower() if match else ""


def _css_unescape(value: str) -> str:
    """Undo CSS backslash escapes (``\\68 ttp`` is ``http``), enough to see what a URL is."""

    def replace(match: re.Match[str]) -> str:
        hex_digits = match.group(1)
        if hex_digits:
            code = int(hex_digits, 16)
            return chr(code) if 0 < code <= 0x10FFFF else "\ufffd"
        return match.group(2)

    return re.sub(r"\\(?:([0-9a-fA-F]{1,6})\s?|(.))", replace, value)

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
from urllib.parse import unquote

from .htmltokens import Doctype, EndTag, RawText, StartTag, Text, tokenize

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
# url(...) in any form, or a quoted string holding a remote URL (@import "...",
# image-set("..." 1x)). Linear: every part after the opening is optional, so a match
# never backtracks.
_CSS_REFERENCE = re.compile(
    r"""url\(\s*(?:"([^"]*)"?|'([^']*)'?|([^)]*))\s*\)?"""
    r"""|(["'])([\t\n\f\r ]*(?:https?:)?//[^"']*)(?:\4)?""",
    re.IGNORECASE,
)
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


def prepare_html(
    html_text: str, part_url: Callable[[str], str | None], allow_remote: bool = False, new_tab_links: bool = True
) -> PreparedHTML:
    """Rewrite ``html_text`` for display in the sandboxed frame (linear time in its length).

    ``part_url`` maps a Content-ID (without angle brackets) to the URL of that part, or
    ``None`` when the message has no such part. Remote URLs are recorded in the result
    and, unless ``allow_remote``, removed from the document. ``new_tab_links`` makes links
    open in a new tab without a referrer (for a frame); otherwise their target is kept.
    """
    rewriter = _Rewriter(part_url, allow_remote, new_tab_links)
    out: list[str] = []
    skipping = False  # inside a dropped <script>
    for token in tokenize(html_text):
        if skipping:
            if isinstance(token, EndTag) and token.lname == "script":
                skipping = False
            continue
        if isinstance(token, Text):
            out.append(token.text)
        elif isinstance(token, RawText):
            # Style text is read two ways: as raw text (in HTML) and as markup with
            # character references decoded (inside <svg>). Rewrite what the second way
            # sees, then write it with CSS escapes for "&" and "<" so that both ways read
            # the same CSS and no tag can start in it.
            css = rewriter.css(html.unescape(token.text))
            out.append(css.replace("&", "\\26 ").replace("<", "\\3c "))
        elif isinstance(token, StartTag):
            if token.lname in _DROPPED_WITH_CONTENT:
                skipping = True  # even <script/>: a browser ignores the slash in HTML
                continue
            out.append(rewriter.start_tag(token))
        elif isinstance(token, EndTag):
            if token.lname not in _DROPPED:
                out.append(f"</{token.name}>")
        elif isinstance(token, Doctype):
            out.append(token.raw)
        # Comments (conditional comments, CDATA, bogus comments) are left out.
    return PreparedHTML("".join(out), rewriter.remote)


class _Rewriter:
    def __init__(self, part_url: Callable[[str], str | None], allow_remote: bool, new_tab_links: bool) -> None:
        self.part_url = part_url
        self.allow_remote = allow_remote
        self.new_tab_links = new_tab_links
        self.remote: list[str] = []

    def start_tag(self, token: StartTag) -> str:
        """The tag as it is written, or rebuilt without what must not load or run ("" to drop it)."""
        tag = token.lname
        if tag in _DROPPED or self._drop_meta_or_link(tag, token.attrs):
            return ""
        rewritten, changed = self._rewrite_attributes(tag, token.attrs)
        if not changed:
            return token.raw
        parts = [token.name]
        for name, value in rewritten:
            parts.append(name if value is None else f'{name}="{html.escape(value, quote=True)}"')
        return "<" + " ".join(parts) + (" />" if token.self_closing else ">")

    def _drop_meta_or_link(self, tag: str, attrs: list[tuple[str, str | None]]) -> bool:
        values = {name.lower(): (value or "") for name, value in attrs}
        if tag == "meta":
            # A refresh navigates the frame (to a tracker, say); nothing else a meta does matters here.
            equiv = values.get("http-equiv", "").lower()
            return "refresh" in equiv or "set-cookie" in equiv
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
            key = name.lower()  # as written in the output, compared in lower case (as a browser does)
            if key.startswith("on") or key in {"ping", "formaction", "action"}:
                changed = True
                continue
            if value is None:
                result.append((name, value))
                continue
            if _scheme(value) in {"javascript", "vbscript"}:
                changed = True
                continue
            if key in resources:
                new = None if tag in _FRAMES else self._resource(value, srcset=(key == "srcset"))
                if new is None and tag == "img" and key == "src":
                    new = BLANK_IMAGE
                if new is None:
                    changed = True
                    continue
                if new != value:
                    changed = True
                result.append((name, new))
            elif key == "style":
                new_style = self.css(value)
                changed = changed or new_style != value
                result.append((name, new_style))
            elif key in {"href", "xlink:href"} and tag in _LINK_TARGETS:
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
            elif key in {"target", "rel"} and tag in _LINK_TARGETS and self.new_tab_links:
                changed = True  # replaced below
            else:
                result.append((name, value))
        if self.new_tab_links and tag in _LINK_TARGETS and any(name.lower() == "href" for name, _ in result):
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

    def css(self, css: str) -> str:
        """``css`` with every URL rewritten like a resource attribute's."""

        def replace(match: re.Match[str]) -> str:
            double, single, bare, quote, string = match.groups()
            if quote is not None:
                new = self._url(string)
                return '"about:invalid"' if new is None else '"' + new.replace('"', "%22") + '"'
            url = next((group for group in (double, single, bare) if group is not None), "").strip()
            new = self._url(_css_unescape(url))
            return 'url("about:invalid")' if new is None else 'url("' + new.replace('"', "%22") + '")'

        return _CSS_REFERENCE.sub(replace, css)


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

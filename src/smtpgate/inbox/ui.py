"""The web UI's routes: the page, its assets, and each message's HTML for a sandboxed frame.

The UI itself is static HTML, CSS and JavaScript modules shipped in the package
(``smtpgate/inbox/ui/``); everything it shows comes from the Mailpit-compatible API.
What this module adds is the safety around a message's HTML:

* the UI page gets a strict Content-Security-Policy (scripts and styles only from its
  own files, no inline script, connections only to its own host, never framed);
* ``/view/{ID}.html`` (Mailpit's path) serves the message's HTML with ``Content-Security-Policy: sandbox``
  and no script source at all, so nothing in a message runs, and nothing it does can
  reach the UI's origin; ``cid:`` references point at the message's parts; remote
  images, styles and fonts load only with ``?remote=1``;
* ``/view/{ID}/remote`` tells the UI whether the message refers to remote content, so it
  can offer to load it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import quote

from aiohttp import web

from .htmlview import PreparedHTML, prepare_html

__all__ = ["MessageJSON", "ui_routes", "UI_CSP_BASE", "VIEW_CSP", "VIEW_CSP_REMOTE"]

MessageJSON = Callable[[str], Awaitable["dict[str, Any] | None"]]
"""Gives the Mailpit JSON of ``GET /api/v1/message/{ID}`` for an ID, or None if unknown."""

UI_CSP_BASE = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; frame-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
"""The UI page's policy; ``connect-src`` (own host, also over ``ws:``/``wss:``) is added per request."""

_VIEW_SANDBOX = "sandbox allow-popups allow-popups-to-escape-sandbox"
VIEW_CSP = (
    f"{_VIEW_SANDBOX}; default-src 'none'; img-src data: 'self'; style-src 'unsafe-inline'; "
    "frame-ancestors 'self'; form-action 'none'; base-uri 'none'"
)
"""A message's HTML: no script, nothing remote; inline styles, embedded and ``cid:`` images."""

VIEW_CSP_REMOTE = (
    f"{_VIEW_SANDBOX}; default-src 'none'; img-src data: 'self' http: https:; "
    "style-src 'unsafe-inline' http: https:; font-src data: http: https:; "
    "frame-ancestors 'self'; form-action 'none'; base-uri 'none'"
)
"""A message's HTML with remote images, styles and fonts allowed (still no script)."""

_COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-cache",
}
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
_CACHED_VIEWS = 16
"""Rewritten documents kept (most recently used), so the frame and the UI's check share one."""
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(?::[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?$")


class _Asset:
    def __init__(self, name: str, body: bytes) -> None:
        self.body = body
        self.content_type = _CONTENT_TYPES[name[name.rindex(".") :]]
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'


def _load_assets() -> dict[str, _Asset]:
    """Every file under ``ui/`` (one level of folders), by its path relative to it."""
    root = resources.files("smtpgate.inbox").joinpath("ui")
    assets: dict[str, _Asset] = {}
    for entry in root.iterdir():
        entries = [(entry.name, entry)]
        if entry.is_dir():
            entries = [(f"{entry.name}/{child.name}", child) for child in entry.iterdir()]
        for name, item in entries:
            if item.is_file() and "." in name and name[name.rindex(".") :] in _CONTENT_TYPES:
                assets[name] = _Asset(name, item.read_bytes())
    return assets


def ui_csp(host: str | None) -> str:
    """The UI page's Content-Security-Policy for a request that named ``host``."""
    connect = "connect-src 'self'"
    if host and _HOST.match(host):
        connect += f" ws://{host} wss://{host}"
    return f"{UI_CSP_BASE}; {connect}"


def ui_routes(message_json: MessageJSON) -> list[web.RouteDef]:
    """The UI's routes: ``/``, ``/ui/...`` (assets), ``/view/{ID}.html`` and ``/view/{ID}/remote``."""
    assets = _load_assets()

    def send_asset(request: web.Request, asset: _Asset, headers: dict[str, str]) -> web.Response:
        headers = {**_COMMON_HEADERS, **headers, "ETag": asset.etag}
        if request.headers.get("If-None-Match") == asset.etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=asset.body, headers={**headers, "Content-Type": asset.content_type})

    async def index(request: web.Request) -> web.Response:
        return send_asset(request, assets["index.html"], {"Content-Security-Policy": ui_csp(request.host)})

    async def asset(request: web.Request) -> web.Response:
        found = assets.get(request.match_info["name"])
        if found is None or found.content_type.startswith("text/html"):
            raise web.HTTPNotFound(text="Not found")
        return send_asset(request, found, {})

    cache: OrderedDict[tuple[str, int, bool, bool], PreparedHTML] = OrderedDict()

    async def prepared(request: web.Request, allow_remote: bool, embed: bool) -> PreparedHTML:
        message = await message_json(request.match_info["id"])
        if message is None or not message.get("HTML"):
            raise web.HTTPNotFound(
                text=json.dumps({"Error": "message or HTML part not found"}), content_type="application/json"
            )
        source = str(message["HTML"])
        # A message never changes: the frame and the remote-content check share one rewrite.
        key = (str(message.get("ID", "")), len(source), allow_remote, embed)
        document = cache.get(key)
        if document is None:
            # Linear, but a large message takes a while: never on the event loop.
            document = await asyncio.to_thread(prepare_html, source, _part_urls(message), allow_remote, embed)
            cache[key] = document
            while len(cache) > _CACHED_VIEWS:
                cache.popitem(last=False)
        cache.move_to_end(key)
        return document

    async def view(request: web.Request) -> web.Response:
        allow_remote = request.query.get("remote") == "1"
        # Mailpit's embed=1: links open in a new tab (what the UI's frame asks for).
        document = await prepared(request, allow_remote, request.query.get("embed") == "1")
        headers = {
            **_COMMON_HEADERS,
            "Content-Security-Policy": VIEW_CSP_REMOTE if allow_remote else VIEW_CSP,
            "X-DNS-Prefetch-Control": "off",
            "Cross-Origin-Resource-Policy": "same-origin",
        }
        return web.Response(text=document.html, content_type="text/html", charset="utf-8", headers=headers)

    async def remote(request: web.Request) -> web.Response:
        document = await prepared(request, allow_remote=False, embed=True)
        body = {"Remote": len(document.remote), "Hosts": document.remote_hosts}
        return web.json_response(body, headers=_COMMON_HEADERS)

    return [
        web.get("/", index),
        web.get("/ui/{name:[A-Za-z0-9_\\-]+(?:/[A-Za-z0-9_.\\-]+)?\\.[a-z]+}", asset),
        web.get("/view/{id}.html", view),
        web.get("/view/{id}/remote", remote),
    ]


def _part_urls(message: dict[str, Any]) -> Callable[[str], str | None]:
    """Map a Content-ID to its part's API URL, relative to ``/view/{ID}.html``."""
    message_id = quote(str(message.get("ID", "")), safe="")
    by_content_id: dict[str, str] = {}
    for key in ("Inline", "Attachments"):
        for part in message.get(key) or []:
            content_id = str(part.get("ContentID") or "").strip().strip("<>")
            if content_id and part.get("PartID"):
                by_content_id.setdefault(content_id, str(part["PartID"]))

    def part_url(content_id: str) -> str | None:
        part_id = by_content_id.get(content_id)
        if part_id is None:
            return None
        return f"../api/v1/message/{message_id}/part/{quote(part_id, safe='')}"

    return part_url

"""The inbox's HTTP API: Mailpit's API v1 paths and shapes, plus mailboxes and waiting.

`inbox_routes` gives the routes, `inbox_middlewares` the guards (JSON errors, HTTP
basic auth, refusal of cross-site writes). Every listing, search, delete and the wait
take an optional ``mailbox`` parameter. Needs the ``inbox`` extra (aiohttp).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib
import ipaddress
import json
import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import WSMsgType, web

from ..sinks.base import MessageInfo
from .chaos import Chaos, ChaosError
from .params import (
    MAX_START,
    Problem,
    body_fields,
    int_param,
    json_body,
    mailbox_param,
    memory,
    moment,
    seconds,
    tz_param,
)
from .records import RawMessage, smtpgate_version
from .search import SearchError, parse_query
from .send import SendError, build_message
from .store import MAX_PAGE, InboxStore

__all__ = ["inbox_routes", "inbox_middlewares", "message_json", "is_loopback_host", "MAX_WAIT", "DEFAULT_WAIT"]

logger = logging.getLogger("smtpgate.inbox")

DEFAULT_WAIT = 10.0
"""Seconds ``/api/v1/wait`` waits when no ``timeout`` is given."""
MAX_WAIT = 300.0
"""The longest ``timeout`` of ``/api/v1/wait``."""
_SANDBOX = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, text: str, **extra: Any) -> web.Response:
    return web.json_response({"Error": text, **extra}, status=status)


def message_json(store: InboxStore) -> Callable[[str], Awaitable[dict[str, Any] | None]]:
    """``GET /api/v1/message/{ID}``'s JSON for an ID (``latest`` too), without marking it
    read; None for an unknown ID. The web UI gets this function."""

    async def get(message_id: str) -> dict[str, Any] | None:
        return await store.get(message_id)

    return get


# ----------------------------------------------------------------- middlewares


Users = Mapping[str, Any]


def inbox_middlewares(users: Users | Callable[[], Users] | None = None, *, loopback_only: bool = False) -> list[Any]:
    """JSON errors, optional basic auth (``users`` from `load_auth_file`, or a function
    returning the current ones, so a reload takes effect), and no cross-site writes.

    ``loopback_only`` (for a server bound to a loopback address) refuses requests whose
    ``Host`` is not a loopback name: a web page that rebinds its own name to 127.0.0.1
    (DNS rebinding) gets nothing."""
    middlewares: list[Any] = [_errors]
    if loopback_only:
        middlewares.append(_loopback_host)
    if users is not None:
        middlewares.append(_basic_auth(users))
    middlewares.append(_same_site)
    return middlewares


def is_loopback_host(host: str) -> bool:
    """``localhost``, ``*.localhost``, ``127.x.x.x`` or ``::1`` (a port and brackets allowed)."""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name[1:]
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@web.middleware
async def _loopback_host(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not is_loopback_host(request.host):
        return _error(403, f"host {request.host!r} refused: this server answers only to localhost names")
    return await handler(request)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as problem:
        return _error(problem.status, str(problem))
    except SearchError as error:
        return _error(400, f"invalid search: {error}")
    except web.HTTPException as error:
        if error.status >= 400 and error.content_type != "application/json":
            return _error(
                error.status, error.reason, **({"Allow": error.headers["Allow"]} if "Allow" in error.headers else {})
            )
        raise
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception as error:  # a bug: logged, and still a JSON answer
        logger.exception("%s %s failed", request.method, request.path)
        return _error(500, f"internal error: {type(error).__name__}")


def _basic_auth(users: Users | Callable[[], Users]) -> Any:
    from ..cli.passwords import verify_password

    verified: dict[tuple[str, bytes], bool] = {}
    seen: list[Users] = []

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        current = users() if callable(users) else users
        if not seen or seen[0] is not current:  # reloaded: forget what was checked
            seen[:] = [current]
            verified.clear()
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        user = password = None
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(encoded.strip()).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                user = None
        if user is not None and password is not None:
            key = (user, hashlib.sha256(password.encode("utf-8")).digest())
            ok = verified.get(key)
            if ok is None:
                ok = await asyncio.to_thread(verify_password, password, current.get(user))
                if len(verified) > 1000:
                    verified.clear()
                verified[key] = ok
            if ok:
                return await handler(request)
        return web.json_response(
            {"Error": "authentication required"},
            status=401,
            headers={"WWW-Authenticate": 'Basic realm="smtpgate", charset="UTF-8"'},
        )

    return check


def _cross_site(request: web.Request) -> bool:
    site = request.headers.get("Sec-Fetch-Site", "").lower()
    if site in ("cross-site", "same-site"):
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    if origin == "null":
        return True
    parts = urllib.parse.urlsplit(origin)
    return parts.netloc.lower() != request.host.lower()


@web.middleware
async def _same_site(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Writes (and the event socket) only from this origin or from non-browser clients."""
    is_write = request.method not in ("GET", "HEAD", "OPTIONS")
    if (is_write or request.path == "/api/events") and _cross_site(request):
        return _error(403, "cross-site request refused")
    return await handler(request)


# ----------------------------------------------------------------- routes


def inbox_routes(
    store: InboxStore, chaos: Chaos | None = None, *, database: str = "", started: float | None = None
) -> list[web.RouteDef]:
    """The API routes (and the web UI's when its module is installed)."""
    api = _API(store, chaos or Chaos(), database or store.path, started or time.time())
    routes = [
        web.get("/api/v1/info", api.info),
        web.get("/api/v1/messages", api.messages),
        web.put("/api/v1/messages", api.set_read),
        web.delete("/api/v1/messages", api.delete_messages),
        web.get("/api/v1/search", api.search),
        web.delete("/api/v1/search", api.delete_search),
        web.get("/api/v1/message/{id}", api.message),
        web.get("/api/v1/message/{id}/headers", api.headers),
        web.get("/api/v1/message/{id}/raw", api.raw),
        web.get("/api/v1/message/{id}/part/{part}", api.part),
        web.get("/api/v1/tags", api.tags),
        web.put("/api/v1/tags", api.set_tags),
        web.put("/api/v1/tags/{tag}", api.rename_tag),
        web.delete("/api/v1/tags/{tag}", api.delete_tag),
        web.get("/api/v1/webui", api.webui),
        web.get("/api/v1/mailboxes", api.mailboxes),
        web.get("/api/v1/wait", api.wait),
        web.get("/api/v1/chaos", api.get_chaos),
        web.put("/api/v1/chaos", api.set_chaos),
        web.get("/api/events", api.events),
        web.get("/view/{id}.txt", api.view_text),
        web.post("/api/v1/send", api.send),
    ]
    try:
        ui: Any = importlib.import_module("smtpgate.inbox.ui")
    except ImportError:
        return routes
    return routes + list(ui.ui_routes(message_json(store)))  # ``/``, assets, ``/view/{ID}.html``


class _API:
    def __init__(self, store: InboxStore, chaos: Chaos, database: str, started: float) -> None:
        self.store = store
        self.chaos = chaos
        self.database = database
        self.started = started

    async def _target(self, request: web.Request) -> str:
        """The message ID of the path; ``latest`` with ``query=`` is the newest message
        matching that search (as in Mailpit)."""
        message_id = request.match_info["id"]
        query = request.query.get("query", "").strip()
        if message_id != "latest" or not query:
            return message_id
        page = await self.store.list_messages(
            query=query, mailbox=mailbox_param(request), limit=1, tz=tz_param(request)
        )
        if not page["messages"]:
            raise Problem(404, f"no message matches {query!r}")
        return str(page["messages"][0]["ID"])

    async def info(self, request: web.Request) -> web.Response:
        stats = await self.store.stats()
        return web.json_response(
            {
                "Version": smtpgate_version(),
                "LatestVersion": "",
                "Database": self.database,
                "DatabaseSize": stats["DatabaseSize"],
                "Messages": stats["Messages"],
                "Unread": stats["Unread"],
                "Tags": stats["Tags"],
                "RuntimeStats": {
                    "Uptime": int(time.time() - self.started),
                    "Memory": memory(),
                    "MessagesDeleted": self.store.deleted,
                    "SMTPAccepted": self.store.accepted,
                    "SMTPAcceptedSize": self.store.accepted_size,
                    "SMTPRejected": 0,
                    "SMTPIgnored": 0,
                },
            }
        )

    async def _page(self, request: web.Request, query: str) -> web.Response:
        page = await self.store.list_messages(
            query=query,
            mailbox=mailbox_param(request),
            start=int_param(request, "start", 0, high=MAX_START),
            limit=int_param(request, "limit", 50, high=MAX_PAGE) or 50,  # 0: the default, as in Mailpit
            tz=tz_param(request),
            before=moment(request, "before"),
            since=moment(request, "since"),
            until=moment(request, "until"),
        )
        return web.json_response(page)

    async def messages(self, request: web.Request) -> web.Response:
        return await self._page(request, "")

    async def search(self, request: web.Request) -> web.Response:
        query = request.query.get("query", "").strip()
        if not query:
            raise Problem(400, "no search query: give query=...")
        return await self._page(request, query)

    async def set_read(self, request: web.Request) -> web.Response:
        data = await body_fields(request, {"IDs": "strings", "Read": "bool", "Search": "str"})
        ids = data.get("IDs") or None
        search = data.get("Search", "").strip()
        if ids and search:
            raise Problem(400, "give either IDs or Search, not both")
        read = data.get("Read", False)
        await self.store.set_read(ids, read, query=search, mailbox=mailbox_param(request), tz=tz_param(request))
        return web.Response(text="ok")

    async def delete_messages(self, request: web.Request) -> web.Response:
        data = await body_fields(request, {"IDs": "strings"}, optional=True)
        await self.store.delete(data.get("IDs") or None, mailbox=mailbox_param(request))
        return web.Response(text="ok")

    async def delete_search(self, request: web.Request) -> web.Response:
        query = request.query.get("query", "").strip()
        if not query:
            raise Problem(400, "no search query: give query=...")
        await self.store.delete(query=query, mailbox=mailbox_param(request), tz=tz_param(request))
        return web.Response(text="ok")

    async def message(self, request: web.Request) -> web.Response:
        found = await self.store.get(await self._target(request), mailbox=mailbox_param(request))
        if found is None:
            raise Problem(404, "message not found")
        if not found["Read"]:  # Mailpit marks a message read when it is fetched
            await self.store.set_read([found["ID"]], True)
            found["Read"] = True
        return web.json_response(found)

    async def headers(self, request: web.Request) -> web.Response:
        found = await self.store.headers(await self._target(request), mailbox=mailbox_param(request))
        if found is None:
            raise Problem(404, "message not found")
        return web.json_response(found)

    async def raw(self, request: web.Request) -> web.StreamResponse:
        raw = await self.store.raw(await self._target(request), mailbox=mailbox_param(request))
        if raw is None:
            raise Problem(404, "message not found")
        headers = {"Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff"}
        if request.query.get("dl"):
            headers["Content-Disposition"] = f'attachment; filename="{raw.id}.eml"'
        return await _stream(request, raw, headers)

    async def part(self, request: web.Request) -> web.StreamResponse:
        found = await self.store.part(
            await self._target(request), request.match_info["part"], mailbox=mailbox_param(request)
        )
        if found is None:
            raise Problem(404, "message or part not found")
        meta, chunks = found
        name = meta["FileName"].replace('"', "").replace("\r", "").replace("\n", "")
        disposition = "attachment" if request.query.get("dl") else "inline"
        quoted = urllib.parse.quote(name)
        response = web.StreamResponse(
            headers={
                "Content-Type": meta["ContentType"],
                "Content-Security-Policy": _SANDBOX,
                "X-Content-Type-Options": "nosniff",
                "Content-Disposition": f"{disposition}; filename*=UTF-8''{quoted}" if name else disposition,
            }
        )
        await response.prepare(request)
        while True:
            chunk = await asyncio.to_thread(next, chunks, None)
            if chunk is None:
                break
            await response.write(chunk)
        await response.write_eof()
        return response

    async def view_text(self, request: web.Request) -> web.Response:
        """Mailpit's ``/view/{ID}.txt``: the text body alone."""
        found = await self.store.get(await self._target(request), mailbox=mailbox_param(request))
        if found is None:
            raise Problem(404, "message not found")
        return web.Response(text=found["Text"], headers={"X-Content-Type-Options": "nosniff"})

    async def send(self, request: web.Request) -> web.Response:
        """Mailpit's ``POST /api/v1/send``: store a message given as JSON; ``{"ID": ...}``."""
        try:
            raw, sender, recipients = build_message(await json_body(request))
        except SendError as error:
            raise Problem(400, str(error)) from None
        message_id = await self.store.add_bytes(raw, MessageInfo(sender, tuple(recipients)))
        return web.json_response({"ID": message_id})

    async def tags(self, request: web.Request) -> web.Response:
        page = await self.store.list_messages(mailbox=mailbox_param(request), limit=1)
        return web.json_response(page["tags"])

    async def set_tags(self, request: web.Request) -> web.Response:
        """Mailpit's ``PUT /api/v1/tags`` ``{"IDs": [...], "Tags": [...]}``: replace the tags."""
        data = await body_fields(request, {"IDs": "strings", "Tags": "strings"})
        if not data.get("IDs"):
            raise Problem(400, "IDs: give the IDs of the messages to tag")
        await self.store.set_tags(data["IDs"], data.get("Tags", []), mailbox=mailbox_param(request))
        return web.Response(text="ok")

    async def rename_tag(self, request: web.Request) -> web.Response:
        """Mailpit's ``PUT /api/v1/tags/{tag}`` ``{"Name": "new"}``."""
        name = (await body_fields(request, {"Name": "str"})).get("Name", "")
        try:
            found = await self.store.rename_tag(request.match_info["tag"], name)
        except ValueError as error:
            raise Problem(400, str(error)) from None
        if not found:
            raise Problem(404, f"no message has the tag {request.match_info['tag']!r}")
        return web.Response(text="ok")

    async def delete_tag(self, request: web.Request) -> web.Response:
        """Mailpit's ``DELETE /api/v1/tags/{tag}``: the tag goes, the messages stay."""
        if not await self.store.delete_tag(request.match_info["tag"]):
            raise Problem(404, f"no message has the tag {request.match_info['tag']!r}")
        return web.Response(text="ok")

    async def webui(self, request: web.Request) -> web.Response:
        """Mailpit's ``GET /api/v1/webui``: what this server offers (no relay, no spam check)."""
        relay = {
            "Enabled": False,
            "SMTPServer": "",
            "ReturnPath": "",
            "AllowedRecipients": "",
            "BlockedRecipients": "",
            "OverrideFrom": "",
            "PreserveMessageIDs": False,
        }
        return web.json_response(
            {
                "Label": "",
                "MessageRelay": relay,
                "SpamAssassin": False,
                "ChaosEnabled": True,
                "DuplicatesIgnored": False,
                "HideDeleteAllButton": False,
            }
        )

    async def mailboxes(self, request: web.Request) -> web.Response:
        return web.json_response(await self.store.mailboxes())

    async def wait(self, request: web.Request) -> web.Response:
        """The first message matching ``query`` (in ``mailbox``): at once if one is
        there (the newest), else as soon as one arrives; 404 with ``"Timeout": true`` when
        none did within ``timeout`` seconds."""
        query = request.query.get("query", "").strip()
        parse_query(query)
        mailbox = mailbox_param(request)
        timeout = seconds(request, "timeout", DEFAULT_WAIT, MAX_WAIT)
        deadline = asyncio.get_running_loop().time() + timeout
        with self.store.subscribe() as subscription:
            found = await self._first(query, mailbox, None)
            while found is None:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    what = f"matching {query!r}" if query else "at all"
                    where = f" in mailbox {mailbox!r}" if mailbox else ""
                    return _error(404, f"no message {what}{where} arrived within {timeout:g} s", Timeout=True)
                try:
                    event = await asyncio.wait_for(subscription.get(), remaining)
                except asyncio.TimeoutError:
                    continue
                if event.type == "new" and (mailbox is None or mailbox.lower() in event.mailboxes):
                    found = await self._first(query, mailbox, [event.data["ID"]])
                elif event.type == "prune":
                    found = await self._first(query, mailbox, None)
        return web.json_response(found)

    async def _first(self, query: str, mailbox: str | None, ids: list[str] | None) -> dict[str, Any] | None:
        page = await self.store.list_messages(query=query, mailbox=mailbox, limit=1, ids=ids)
        if not page["messages"]:
            return None
        return await self.store.get(page["messages"][0]["ID"])

    async def get_chaos(self, request: web.Request) -> web.Response:
        return web.json_response(self.chaos.to_json())

    async def set_chaos(self, request: web.Request) -> web.Response:
        try:
            self.chaos.update(await json_body(request, optional=True))
        except ChaosError as error:
            raise Problem(400, str(error)) from None
        return web.json_response(self.chaos.to_json())

    async def events(self, request: web.Request) -> web.WebSocketResponse:
        """Mailpit's event stream (``{"Type": ..., "Data": ...}``); ``mailbox`` filters."""
        mailbox = (mailbox_param(request) or "").lower()
        socket = web.WebSocketResponse(heartbeat=30.0)
        await socket.prepare(request)
        with self.store.subscribe() as subscription:
            reader = asyncio.ensure_future(_drain(socket))
            try:
                while not reader.done():
                    getter = asyncio.ensure_future(subscription.get())
                    done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                    if getter not in done:
                        getter.cancel()
                        break
                    event = getter.result()
                    if mailbox and event.mailboxes and mailbox not in event.mailboxes:
                        continue
                    await socket.send_str(json.dumps(event.to_json()))
            except (ConnectionResetError, RuntimeError):
                pass
            finally:
                reader.cancel()
                await socket.close()
        return socket


async def _drain(socket: web.WebSocketResponse) -> None:
    """Read (and ignore) what the client sends, until it closes."""
    async for message in socket:
        if message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            break


async def _stream(request: web.Request, raw: RawMessage, headers: dict[str, str]) -> web.StreamResponse:
    if raw.path is not None:
        response: web.StreamResponse = web.FileResponse(raw.path, headers=headers)
        return response
    return web.Response(body=raw.data or b"", headers=headers)

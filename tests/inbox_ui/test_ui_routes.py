"""ui_routes over real HTTP on loopback: the page, its assets, the message view and its headers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from smtpgate.inbox.ui import VIEW_CSP, VIEW_CSP_REMOTE, ui_routes

MESSAGES: dict[str, dict[str, Any]] = {
    "M1": {
        "ID": "M1",
        "HTML": '<p>Hi <img src="cid:logo@x"> <img src="https://tracker.test/p.gif"> <a href="https://a.test/">a</a></p>',
        "Text": "Hi",
        "Inline": [{"PartID": "1.2", "ContentID": "<logo@x>", "FileName": "", "ContentType": "image/png"}],
        "Attachments": [],
    },
    "TEXTONLY": {"ID": "TEXTONLY", "HTML": "", "Text": "plain", "Inline": [], "Attachments": []},
}


async def message_json(message_id: str) -> dict[str, Any] | None:
    return MESSAGES.get(message_id)


def with_server(test: Callable[[aiohttp.ClientSession, str], Awaitable[None]]) -> None:
    async def main() -> None:
        app = web.Application()
        app.add_routes(ui_routes(message_json))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession() as session:
                await asyncio.wait_for(test(session, f"http://127.0.0.1:{port}"), 30)
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_the_page_has_a_strict_policy_and_loads_only_its_own_files() -> None:
    async def test(session: aiohttp.ClientSession, base: str) -> None:
        async with session.get(base + "/") as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            csp = response.headers["Content-Security-Policy"]
            page = await response.text()
        host = base.removeprefix("http://")
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "'unsafe-inline'" not in csp
        assert "frame-ancestors 'none'" in csp
        assert f"connect-src 'self' ws://{host} wss://{host}" in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert "http://" not in page and "https://" not in page  # nothing from the internet
        for asset in ("ui/app.css", "ui/js/app.js", "ui/favicon.svg"):
            assert asset in page
            async with session.get(f"{base}/{asset}") as response:
                assert response.status == 200, asset
                etag = response.headers["ETag"]
            async with session.get(f"{base}/{asset}", headers={"If-None-Match": etag}) as response:
                assert response.status == 304

    with_server(test)


def test_a_forged_host_header_does_not_reach_the_policy() -> None:
    async def test(session: aiohttp.ClientSession, base: str) -> None:
        async with session.get(base + "/", headers={"Host": "evil.test; script-src *"}) as response:
            csp = response.headers["Content-Security-Policy"]
        assert "evil" not in csp and csp.endswith("connect-src 'self'")

    with_server(test)


def test_unknown_assets_and_the_page_under_another_name_are_not_found() -> None:
    async def test(session: aiohttp.ClientSession, base: str) -> None:
        for path in ("/ui/nope.js", "/ui/index.html", "/ui/../pyproject.toml", "/ui/js/../../ui.py"):
            async with session.get(base + path) as response:
                assert response.status == 404, path

    with_server(test)


def test_the_view_is_sandboxed_rewritten_and_remote_only_on_request() -> None:
    async def test(session: aiohttp.ClientSession, base: str) -> None:
        async with session.get(base + "/view/M1.html") as response:
            assert response.status == 200
            assert response.headers["Content-Security-Policy"] == VIEW_CSP
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["Referrer-Policy"] == "no-referrer"
            body = await response.text()
        assert 'src="../api/v1/message/M1/part/1.2"' in body
        assert "tracker.test" not in body
        assert '<a href="https://a.test/">' in body  # as Mailpit: links as sent without embed=1
        async with session.get(base + "/view/M1.html?embed=1") as response:
            assert 'target="_blank" rel="noopener noreferrer"' in await response.text()
        async with session.get(base + "/view/M1.html?remote=1") as response:
            assert response.headers["Content-Security-Policy"] == VIEW_CSP_REMOTE
            assert "https://tracker.test/p.gif" in await response.text()
        async with session.get(base + "/view/M1/remote") as response:
            assert await response.json() == {"Remote": 1, "Hosts": ["tracker.test"]}

    with_server(test)


def test_the_policies_forbid_scripts_and_sandbox_the_document() -> None:
    for policy in (VIEW_CSP, VIEW_CSP_REMOTE):
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives["sandbox"] == "allow-popups allow-popups-to-escape-sandbox"  # no allow-scripts/-same-origin
        assert directives["default-src"] == "'none'"
        assert "script-src" not in directives
        assert "unsafe-inline" not in directives.get("img-src", "")


def test_unknown_ids_and_messages_without_html_are_404_with_a_json_error() -> None:
    async def test(session: aiohttp.ClientSession, base: str) -> None:
        for path in ("/view/NOPE.html", "/view/TEXTONLY.html", "/view/NOPE/remote"):
            async with session.get(base + path) as response:
                assert response.status == 404, path
                assert "Error" in await response.json(content_type=None)

    with_server(test)

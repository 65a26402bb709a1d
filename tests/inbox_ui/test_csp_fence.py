"""The browser fence alone: hostile HTML served raw (no rewriting) under the view's policy.

The rewriter in ``htmlview`` removes scripts and remote URLs; these tests switch it off
and show that the Content-Security-Policy and the frame's sandbox still stop them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from aiohttp import web
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from ui_support import Recorder, wait_until

from smtpgate.inbox.ui import VIEW_CSP, VIEW_CSP_REMOTE

SANDBOX = "allow-popups allow-popups-to-escape-sandbox"


def hostile_page(marker: str) -> str:
    return f"""<!doctype html><html><head><title>untouched</title>
<meta http-equiv="refresh" content="0; url={marker}?from=refresh-meta-is-rewriter-only">
<link rel="stylesheet" href="{marker}/style.css?from=link">
<style>@import url("{marker}/import.css?from=import"); body {{ background: url("{marker}?from=css") }}
@font-face {{ font-family: x; src: url("{marker}/font.woff?from=font") }} h1 {{ font-family: x }}</style>
<script>document.title = "script ran"; fetch("{marker}?from=script");</script>
<script src="{marker}/script.js?from=script-src"></script>
</head><body><h1 id="hostile">Hostile</h1>
<img src="{marker}?from=img">
<img src="nothing" onerror="fetch('{marker}?from=onerror')">
<iframe src="{marker}?from=iframe"></iframe>
<object data="{marker}?from=object"></object>
<form action="{marker}?from=form" method="post"><button id="submit">Send</button></form>
</body></html>"""


class RawServer:
    """Serves ``/page`` (hostile HTML with the given CSP) and ``/`` (a page framing it)."""

    def __init__(self, html: str, csp: str) -> None:
        self.html, self.csp = html, csp
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        assert self.started.wait(10)

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def page(request: web.Request) -> web.Response:
            return web.Response(text=self.html, content_type="text/html", headers={"Content-Security-Policy": self.csp})

        async def frame(request: web.Request) -> web.Response:
            return web.Response(
                text=f'<!doctype html><title>outer</title><iframe id="view" sandbox="{SANDBOX}" src="/page"></iframe>',
                content_type="text/html",
            )

        async def start() -> None:
            app = web.Application()
            app.add_routes([web.get("/", frame), web.get("/page", page)])
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.port = self.runner.addresses[0][1]
            self.started.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def raw_server(recorder: Recorder) -> Iterator[Callable[[str, str], RawServer]]:
    servers: list[RawServer] = []

    def make(html: str, csp: str) -> RawServer:
        server = RawServer(html, csp)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def load_framed(browser: WebDriver, server: RawServer) -> None:
    browser.get(f"http://127.0.0.1:{server.port}/")
    browser.switch_to.frame(browser.find_element(By.ID, "view"))
    try:
        wait_until(lambda: browser.find_elements(By.ID, "hostile"), what="the framed page")
        assert browser.find_element(By.TAG_NAME, "title").get_attribute("textContent") == "untouched"
        browser.find_element(By.ID, "submit").click()  # forms are blocked by the sandbox
    finally:
        browser.switch_to.default_content()
    time.sleep(1.0)


def test_the_view_policy_alone_blocks_scripts_handlers_and_every_remote_load(
    browser: WebDriver, recorder: Recorder, raw_server: Callable[[str, str], RawServer]
) -> None:
    server = raw_server(hostile_page(recorder.url + "/hit").replace("<meta http-equiv", "<meta name"), VIEW_CSP)
    load_framed(browser, server)
    assert recorder.hits == []
    assert browser.title == "outer"


def test_the_remote_policy_allows_images_styles_and_fonts_but_still_no_script(
    browser: WebDriver, recorder: Recorder, raw_server: Callable[[str, str], RawServer]
) -> None:
    server = raw_server(hostile_page(recorder.url + "/hit").replace("<meta http-equiv", "<meta name"), VIEW_CSP_REMOTE)
    load_framed(browser, server)
    sources = {hit.split("from=")[1] for hit in recorder.hits}
    assert {"img", "link", "css"} <= sources
    assert not sources & {"script", "script-src", "onerror", "iframe", "object", "form"}

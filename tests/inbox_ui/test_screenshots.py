"""Screenshots of the UI: written to $SMTPGATE_SCREENSHOTS (scripts/ui-screenshots) or a tmp folder."""

from __future__ import annotations

import json
import os
import struct
import urllib.request
from pathlib import Path

import ui_samples as samples
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from ui_support import Inbox, texts, wait_until

WIDTH, HEIGHT = 1440, 860


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def mark_read(inbox: Inbox, subjects: set[str]) -> None:
    with urllib.request.urlopen(inbox.url + "api/v1/messages", timeout=20) as response:
        listing = json.loads(response.read())
    ids = [m["ID"] for m in listing["messages"] if m["Subject"] in subjects]
    request = urllib.request.Request(
        inbox.url + "api/v1/messages",
        data=json.dumps({"IDs": ids, "Read": True}).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=20).close()


def test_screenshots_of_the_list_and_a_message(browser: WebDriver, inbox: Inbox, tmp_path: Path) -> None:
    folder = Path(os.environ.get("SMTPGATE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    for message, recipients in samples.showcase():
        inbox.send(message, recipients)
    mark_read(inbox, {"Welcome to the team", "[CI] main passed: 1,221 tests"})
    browser.set_window_size(WIDTH, HEIGHT)
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "light"}]}
    )
    # The size of the page itself, not of the window around it.
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        browser.get(inbox.url)
        wait_until(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#messages .row")) == 6, what="six rows")
        wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, ".mailbox"), what="mailboxes")
        wait_until(lambda: browser.find_element(By.ID, "live").get_attribute("data-state") == "live", what="live")
        browser.save_screenshot(str(folder / "inbox-list.png"))

        browser.find_element(By.CSS_SELECTOR, "#messages .row").click()
        frame = wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#panel-html iframe"), what="frame")[0]
        wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, ".verdict"), what="verdicts")
        browser.switch_to.frame(frame)
        logo = wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "img[alt=Northwind]"), what="logo")[0]
        wait_until(lambda: browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", logo))
        browser.switch_to.default_content()
        badge = '.mailbox[data-mailbox="sam@example.test"] .badge'
        wait_until(lambda: texts(browser, badge) == ["1"], what="counts")
        browser.save_screenshot(str(folder / "inbox-message.png"))

        browser.execute_cdp_cmd(
            "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}
        )
        browser.find_element(By.CSS_SELECTOR, "#messages .row:nth-child(3)").click()
        wait_until(
            lambda: any("Reset" in text for text in texts(browser, ".message-subject") or []),
            what="the reset message",
        )
        browser.find_element(By.ID, "tab-text").click()
        badge = '.mailbox[data-mailbox="qa+reset@example.test"] .badge'
        wait_until(lambda: texts(browser, badge) == [], what="the mailbox counts")
        browser.save_screenshot(str(folder / "inbox-dark.png"))
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})

    for name in ("inbox-list.png", "inbox-message.png", "inbox-dark.png"):
        assert png_size(folder / name) == (WIDTH, HEIGHT)

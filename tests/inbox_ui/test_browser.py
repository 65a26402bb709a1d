"""The web UI in a real browser (Debian's Chromium through selenium) against a running inbox."""

from __future__ import annotations

import json
import smtplib
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import ui_samples as samples
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from ui_support import Inbox, Recorder, wait_until


@pytest.fixture(autouse=True)
def no_script_errors(browser: WebDriver) -> Iterator[None]:
    """Every test also checks that the UI's own JavaScript threw nothing."""
    browser.get_log("browser")  # forget what earlier tests left
    yield
    uncaught = [entry["message"] for entry in browser.get_log("browser") if "Uncaught" in entry["message"]]
    assert uncaught == []


def api(inbox: Inbox, path: str) -> Any:
    with urllib.request.urlopen(inbox.url + path, timeout=20) as response:
        return json.loads(response.read())


def open_page(browser: WebDriver, inbox: Inbox, fragment: str = "") -> None:
    browser.get(inbox.url + fragment)
    wait_until(lambda: browser.find_element(By.ID, "live").get_attribute("data-state") == "live", what="websocket")


def subjects(browser: WebDriver) -> list[str]:
    try:
        return [row.find_element(By.CSS_SELECTOR, ".subject span").text for row in rows(browser)]
    except StaleElementReferenceException:
        return []


def rows(browser: WebDriver) -> list[Any]:
    return browser.find_elements(By.CSS_SELECTOR, "#messages .row")


def row_for(browser: WebDriver, subject: str) -> Any:
    def find() -> Any:
        for row in rows(browser):
            try:
                if row.find_element(By.CSS_SELECTOR, ".subject span").text == subject:
                    return row
            except (StaleElementReferenceException, NoSuchElementException):
                return None
        return None

    return wait_until(find, what=f"a row for {subject!r}")


def open_subject(browser: WebDriver) -> str:
    """The subject of the open message ("" while none is shown)."""
    try:
        return " ".join(element.text for element in browser.find_elements(By.CSS_SELECTOR, ".message-subject"))
    except StaleElementReferenceException:
        return ""


def press(browser: WebDriver, keys: str) -> None:
    browser.find_element(By.TAG_NAME, "body").send_keys(keys)


def test_a_new_message_appears_in_an_open_page_without_reload(browser: WebDriver, inbox: Inbox) -> None:
    inbox.send(samples.plain("First one"))
    open_page(browser, inbox)
    row_for(browser, "First one")
    browser.execute_script("window.sameDocument = 'yes'")

    inbox.send(samples.plain("Arrived while watching"))

    row = row_for(browser, "Arrived while watching")
    assert subjects(browser)[:2] == ["Arrived while watching", "First one"]  # newest first
    assert "unread" in row.get_attribute("class")
    assert browser.execute_script("return window.sameDocument") == "yes"  # no reload happened
    assert browser.find_element(By.ID, "total-count").text == "2 messages"
    assert browser.title.startswith("(2)")


def test_opening_a_message_shows_its_html_inline_images_and_attachments(browser: WebDriver, inbox: Inbox) -> None:
    inbox.send(samples.newsletter())
    open_page(browser, inbox)
    row = row_for(browser, "Your March report is ready")
    assert "unread" in row.get_attribute("class")

    row.click()

    frame = wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#panel-html iframe"), what="the HTML frame")[0]
    assert frame.get_attribute("sandbox") == "allow-popups allow-popups-to-escape-sandbox"
    links = browser.find_elements(By.CSS_SELECTOR, ".attachment a")
    assert [link.get_attribute("download") for link in links] == ["march-report.pdf", "orders-chart.png"]
    with urllib.request.urlopen(links[0].get_attribute("href"), timeout=20) as response:
        assert response.headers["Content-Disposition"].startswith("attachment")
        assert response.read().startswith(b"%PDF")
    thumbnail = browser.find_element(By.CSS_SELECTOR, ".attachment img")
    wait_until(lambda: browser.execute_script("return arguments[0].naturalWidth", thumbnail) == 160, what="thumbnail")
    verdicts = wait_until(
        lambda: [" ".join(v.text.split()) for v in browser.find_elements(By.CSS_SELECTOR, ".verdict")], what="verdicts"
    )
    assert verdicts == ["SPF pass", "DKIM pass", "DMARC pass"]  # the topmost header's only
    assert browser.find_element(By.CSS_SELECTOR, ".verdict-server").text == "checked by mx.test"

    browser.switch_to.frame(frame)
    try:
        heading = wait_until(lambda: browser.find_elements(By.TAG_NAME, "h1"), what="the message HTML")[0]
        assert heading.text == "Your March report is ready"
        logo = browser.find_element(By.CSS_SELECTOR, "img[alt=Northwind]")
        assert "/part/" in logo.get_attribute("src")  # cid: rewritten to the part
        wait_until(lambda: browser.execute_script("return arguments[0].naturalWidth", logo) == 88, what="cid image")
    finally:
        browser.switch_to.default_content()

    # Opening read it: the row is no longer bold, and the API agrees.
    wait_until(lambda: "unread" not in row_for(browser, "Your March report is ready").get_attribute("class"))
    assert wait_until(lambda: api(inbox, "api/v1/messages")["messages"][0]["Read"], what="Read in the API")


def test_scripts_and_event_handlers_in_a_message_never_run(
    browser: WebDriver, inbox: Inbox, recorder: Recorder
) -> None:
    inbox.send(samples.hostile(recorder.url + "/hit"))
    open_page(browser, inbox)
    row_for(browser, "Hostile HTML").click()
    frame = wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#panel-html iframe"), what="frame")[0]
    browser.switch_to.frame(frame)
    try:
        wait_until(lambda: browser.find_elements(By.ID, "hostile"), what="the hostile message's body")
        title = browser.find_element(By.TAG_NAME, "title").get_attribute("textContent")
        assert title == "untouched"
    finally:
        browser.switch_to.default_content()
    time.sleep(1.0)  # time for anything that would run to call home
    assert recorder.hits == []
    assert "ran" not in browser.title


def test_remote_content_is_fetched_only_after_the_reader_asks(
    browser: WebDriver, inbox: Inbox, recorder: Recorder
) -> None:
    inbox.send(samples.remote_image(recorder.url + "/pixel.png"))
    open_page(browser, inbox)
    row_for(browser, "Remote content").click()
    banner = wait_until(
        lambda: [b for b in browser.find_elements(By.CSS_SELECTOR, ".remote-banner") if b.is_displayed()]
    )
    assert "127.0.0.1" in banner[0].text
    frame = browser.find_element(By.CSS_SELECTOR, "#panel-html iframe")
    browser.switch_to.frame(frame)
    wait_until(lambda: browser.find_elements(By.ID, "remote"), what="the message body")
    browser.switch_to.default_content()
    time.sleep(1.0)
    assert recorder.hits == []

    browser.find_element(By.ID, "load-remote").click()

    wait_until(lambda: len(recorder.hits) >= 2, what="the remote image and background")
    assert sorted(hit.split("from=")[1] for hit in recorder.hits[:2]) == ["css", "img"]


def test_search_narrows_the_list_and_escape_clears_it(browser: WebDriver, inbox: Inbox) -> None:
    for subject in ("Banana bread recipe", "Quarterly numbers", "Banana split"):
        inbox.send(samples.plain(subject))
    open_page(browser, inbox)
    wait_until(lambda: len(rows(browser)) == 3, what="three rows")

    press(browser, "/")
    search = browser.switch_to.active_element
    assert search.get_attribute("id") == "search"
    search.send_keys("subject:banana", Keys.ENTER)

    wait_until(lambda: subjects(browser) == ["Banana split", "Banana bread recipe"], what="the search result")
    assert browser.current_url.endswith("#q=subject%3Abanana")  # the address keeps the query
    search.send_keys(Keys.ESCAPE)
    wait_until(lambda: len(rows(browser)) == 3, what="the full list again")


def test_a_bad_search_is_explained(browser: WebDriver, inbox: Inbox) -> None:
    open_page(browser, inbox, '#q=subject:"unclosed')
    error = wait_until(lambda: [e for e in browser.find_elements(By.ID, "error") if e.is_displayed()], what="error")
    assert error[0].text.startswith("Search:")


def test_delete_one_then_delete_all_with_confirmation(browser: WebDriver, inbox: Inbox) -> None:
    for subject in ("Keep me", "Delete me", "Me too"):
        inbox.send(samples.plain(subject))
    open_page(browser, inbox)
    row_for(browser, "Delete me").click()
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, ".message-subject"), what="the message")

    press(browser, Keys.DELETE)

    wait_until(lambda: "Delete me" not in subjects(browser), what="the row to go")
    assert sorted(m["Subject"] for m in api(inbox, "api/v1/messages")["messages"]) == ["Keep me", "Me too"]

    browser.find_element(By.ID, "delete-all").click()
    dialog = browser.find_element(By.ID, "confirm")
    assert dialog.is_displayed()
    assert "Delete all 2 messages?" in browser.find_element(By.ID, "confirm-text").text
    browser.find_element(By.ID, "confirm-cancel").click()
    assert len(rows(browser)) == 2  # cancelled: nothing deleted

    # Another client deletes one: the open page follows without a reload.
    [keep] = [m["ID"] for m in api(inbox, "api/v1/messages")["messages"] if m["Subject"] == "Keep me"]
    request = urllib.request.Request(
        inbox.url + "api/v1/messages",
        data=json.dumps({"IDs": [keep]}).encode(),
        method="DELETE",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=20).close()
    wait_until(lambda: subjects(browser) == ["Me too"], what="the row deleted elsewhere to go")

    browser.find_element(By.ID, "delete-all").click()
    browser.find_element(By.ID, "confirm-delete").click()

    wait_until(lambda: not rows(browser), what="an empty list")
    assert api(inbox, "api/v1/messages")["total"] == 0
    assert browser.find_element(By.ID, "empty").is_displayed()


def test_keyboard_moves_opens_switches_tabs_and_marks_unread(browser: WebDriver, inbox: Inbox) -> None:
    for subject in ("Oldest", "Middle", "Newest"):
        inbox.send(samples.plain(subject, text=f"Body of {subject}\n"))
    open_page(browser, inbox)
    wait_until(lambda: len(rows(browser)) == 3, what="three rows")

    press(browser, "j")
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, ".message-subject"), what="a message")
    press(browser, "j")
    wait_until(lambda: open_subject(browser) == "Middle", what="the middle message")
    press(browser, "2")
    text = wait_until(lambda: [p for p in browser.find_elements(By.ID, "panel-text") if p.is_displayed()])
    assert "Body of Middle" in text[0].text
    press(browser, "3")
    headers = wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#panel-headers th"), what="headers")
    assert "Subject" in [header.text for header in headers]
    press(browser, "u")
    wait_until(lambda: "unread" in row_for(browser, "Middle").get_attribute("class"), what="unread again")
    press(browser, "k")
    wait_until(lambda: open_subject(browser) == "Newest", what="the newest message")
    press(browser, Keys.ESCAPE)
    wait_until(lambda: not browser.find_elements(By.CSS_SELECTOR, ".message-subject"), what="the message to close")


def test_mailbox_filter_shows_one_mailbox(browser: WebDriver, inbox: Inbox) -> None:
    inbox.send(samples.plain("For A", to="a-123@test"), ["a-123@test"])
    inbox.send(samples.plain("For B", to="b-456@test"), ["b-456@test"])
    open_page(browser, inbox)
    wait_until(lambda: len(rows(browser)) == 2, what="two rows")
    button = wait_until(
        lambda: browser.find_elements(By.CSS_SELECTOR, '.mailbox[data-mailbox="a-123@test"]'), what="mailbox"
    )[0]
    button.click()
    wait_until(lambda: subjects(browser) == ["For A"], what="mailbox a only")
    inbox.send(samples.plain("Another for B", to="b-456@test"), ["b-456@test"])
    inbox.send(samples.plain("Another for A", to="a-123@test"), ["a-123@test"])
    wait_until(lambda: subjects(browser) == ["Another for A", "For A"], what="live update within the mailbox")

    browser.find_element(By.ID, "delete-all").click()
    assert "matching mailbox a-123@test" in browser.find_element(By.ID, "confirm-text").text
    browser.find_element(By.ID, "confirm-delete").click()
    wait_until(lambda: not rows(browser), what="mailbox a to be empty")
    assert sorted(m["Subject"] for m in api(inbox, "api/v1/messages")["messages"]) == ["Another for B", "For B"]


def test_a_big_message_shows_a_bounded_part_of_its_source_and_attachments(browser: WebDriver, inbox: Inbox) -> None:
    inbox.send(samples.many_attachments(300, 3 * 1024 * 1024))
    open_page(browser, inbox)
    row_for(browser, "300 attachments").click()
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, ".attachment-more"), what="the attachment list")
    assert len(browser.find_elements(By.CSS_SELECTOR, ".attachment a")) == 100
    assert browser.find_element(By.CSS_SELECTOR, ".attachment-more").text == "and 200 more (see Raw)"
    press(browser, "4")
    notice = wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#panel-raw .notice"), what="the raw notice")
    assert notice[0].text.startswith("Showing the first 1.0 MB of 3.")
    shown = browser.execute_script("return document.querySelector('#panel-raw pre').textContent.length")
    assert shown <= 1024 * 1024


def test_pages_of_fifty_newest_first(browser: WebDriver, inbox: Inbox) -> None:
    with smtplib.SMTP("127.0.0.1", inbox.smtp_port, local_hostname="client.test", timeout=30) as client:
        for number in range(1, 56):
            client.sendmail("sender@example.test", ["dev@example.test"], samples.plain(f"Message {number:02d}"))
    open_page(browser, inbox)
    wait_until(lambda: len(rows(browser)) == 50, what="a full page")
    assert subjects(browser)[0] == "Message 55"
    assert browser.find_element(By.ID, "count").text == "1–50 of 55"
    assert not browser.find_element(By.ID, "prev-page").is_enabled()

    press(browser, "]")

    wait_until(lambda: subjects(browser) == [f"Message {n:02d}" for n in range(5, 0, -1)], what="the second page")
    assert browser.find_element(By.ID, "count").text == "51–55 of 55"
    assert not browser.find_element(By.ID, "next-page").is_enabled()
    browser.find_element(By.ID, "prev-page").click()
    wait_until(lambda: len(rows(browser)) == 50, what="the first page again")

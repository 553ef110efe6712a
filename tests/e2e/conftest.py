"""A real Chromium (Debian's, driven by Playwright) against the live dev server."""

import email
import email.policy
import os
import re
from pathlib import Path

import pytest
from django.db import connections

from tests.conftest import service_missing
from tests.support import BASE_DIR

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = BASE_DIR / "artifacts" / "screenshots"
PHONE, DESKTOP = 375, 1280
# The bundled sample day of papers the demo loads.
SAMPLE_PAPERS = BASE_DIR / "digest" / "sample_data" / "daily_papers.json"


def in_the_browser(*, timeout: int = 180) -> list[pytest.MarkDecorator]:
    """The marks of a browser test: the live server's threads see the test's committed rows,
    and the migrations' seed data is back after each test."""
    return [
        pytest.mark.browser,
        pytest.mark.timeout(timeout),
        pytest.mark.django_db(transaction=True, serialized_rollback=True),
    ]


# Text that sticks out of the viewport: an element, other than one taken out of
# the flow on purpose, whose box reaches past the right (or left) edge.
OVERFLOW_JS = """() => {
  const width = document.documentElement.clientWidth;
  const found = [];
  for (const el of document.body.querySelectorAll('*')) {
    const style = getComputedStyle(el);
    if (style.position === 'absolute' || style.position === 'fixed' || style.display === 'none') continue;
    const box = el.getBoundingClientRect();
    if (box.width && (box.right > width + 1 || box.left < -1)) {
      found.push(`${el.tagName.toLowerCase()} ${Math.round(box.left)}..${Math.round(box.right)}: `
        + (el.innerText || '').trim().slice(0, 60));
    }
  }
  return {pageWidth: document.documentElement.scrollWidth, width, found: found.slice(0, 10)};
}"""


@pytest.fixture
def browser():
    """One Chromium per test. Playwright's sync API switches greenlets, and Django
    keeps connections per context: started once per module, it would leave the
    next test's database setup on a connection that never saw the seeded rows'
    snapshot, so serialized_rollback would restore nothing."""
    if not Path(CHROMIUM).exists():
        service_missing(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread, which Django's
    # async-safety check takes for async code; the test's own ORM calls are sync.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
            # Connections opened by the test inside Playwright's context are its own.
            connections.close_all()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Watched:
    """A page whose console errors, uncaught exceptions and dialogs are recorded."""

    def __init__(self, browser, width: int):
        self.context = browser.new_context(viewport={"width": width, "height": 900})
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        self.page.on("dialog", self._dialog)
        self.page.on("response", self._response)
        self.context.on("page", self._popup)

    def _popup(self, page):
        if page is not self.page:
            page.on("console", self._console)
            page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
            page.on("dialog", self._dialog)
            page.on("response", self._response)

    def _response(self, response):
        if response.status >= 400:
            self.problems.append(f"{response.status} for {response.url}")

    def _console(self, message):
        if message.type == "error":
            self.problems.append(f"console error: {message.text} ({message.location.get('url', '')})")

    def _dialog(self, dialog):
        self.problems.append(f"a script opened a {dialog.type} dialog: {dialog.message}")
        dialog.dismiss()


@pytest.fixture
def watched(browser):
    """Open pages at a given width; the test fails on any console error or dialog."""
    opened: list[Watched] = []

    def open_page(width: int = DESKTOP):
        page = Watched(browser, width)
        opened.append(page)
        return page.page

    yield open_page
    problems = [problem for page in opened for problem in page.problems]
    for page in opened:
        page.context.close()
    assert not problems, problems


def screenshot(page, name: str) -> Path:
    """Save the whole page at its width; at phone width, fail on text that overflows."""
    width = page.viewport_size["width"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}-{width}.png"
    page.screenshot(path=str(path), full_page=True)
    if width <= PHONE:
        layout = page.evaluate(OVERFLOW_JS)
        assert layout["pageWidth"] <= layout["width"] and not layout["found"], (name, layout)
    return path


def outbox_messages(outbox: Path, *, to: str) -> list:
    messages = []
    for path in sorted(outbox.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if message["To"] == to:
            messages.append(message)
    return messages


def html_part(message) -> str:
    return message.get_body(("html",)).get_content()


def link_in(html: str, text: str) -> str:
    match = re.search(rf'<a [^>]*href="([^"]+)"[^>]*>\s*{re.escape(text)}\s*</a>', html)
    assert match, f"no link {text!r} in the email"
    return match.group(1).replace("&amp;", "&")

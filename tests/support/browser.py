"""A real Chromium for tests: Debian's ``chromium`` driven by Playwright for Python.

Never ``playwright install``: the browser is the system's (``.ci/run`` installs it
with apt), launched headless with no network of its own beside the page's. Below it,
the helpers the tests of the try-it page (``GET /``) share.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Request,
    ViewportSize,
    expect,
    sync_playwright,
)

from tests.support.observe import ServiceProcess

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
)
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(FLAGS))
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Watched:
    """Every request a page made and every console error it logged."""

    requests: list[str] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (method, URL)
    console_errors: list[str] = field(default_factory=list)

    def outside(self, host: str = "127.0.0.1") -> list[str]:
        """Requests that left ``host`` (``blob:`` and ``data:`` URLs stay in the page)."""
        return [
            url
            for url in self.requests
            if urlsplit(url).scheme not in ("blob", "data") and urlsplit(url).hostname != host
        ]


def watch(page: Page) -> Watched:
    watched = Watched()

    def on_request(request: Request) -> None:
        watched.requests.append(request.url)
        watched.calls.append((request.method, request.url))

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            watched.console_errors.append(message.text)

    page.on("request", on_request)
    page.on("console", on_console)
    return watched


@contextlib.contextmanager
def desktop_page(browser: Browser) -> Iterator[Page]:
    """A page in a fresh context (no storage shared with other tests)."""
    context = browser.new_context(viewport=DESKTOP)
    try:
        yield context.new_page()
    finally:
        context.close()


# -- the try-it page ------------------------------------------------------------


def open_page(page: Page, service: ServiceProcess) -> Watched:
    watched = watch(page)
    page.goto(service.base_url + "/")
    return watched


def api_answer(
    service: ServiceProcess, path: Path, query: str, *, route: str = "/classify", **headers: str
) -> httpx.Response:
    """The request the page makes, made with httpx."""
    content_type = "video/mp4" if path.suffix == ".mp4" else "application/octet-stream"
    return httpx.post(
        f"{service.base_url}{route}{query}",
        content=path.read_bytes(),
        headers={"Content-Type": content_type, **headers},
        timeout=60,
    )


def classify_in_page(page: Page, clip: Path) -> None:
    """Choose ``clip``, press Classify (POST /classify), wait until it answered."""
    page.set_input_files("#file", str(clip))
    page.click("#classify")
    expect(page.locator("#classify")).to_be_enabled(timeout=60_000)


def drop_file(page: Page, path: Path, mime: str) -> None:
    """Drop ``path`` on the page's drop zone, as a drag from the desktop would."""
    transfer = page.evaluate_handle(
        """([data, name, type]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type }));
            return transfer;
        }""",
        [base64.b64encode(path.read_bytes()).decode(), path.name, mime],
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})


def shown_bars(page: Page) -> list[tuple[str, float]]:
    """The page's top labels and their percentages, in order."""
    rows = page.locator("#bars li")
    return [
        (
            rows.nth(i).locator(".bar-label").inner_text(),
            float(rows.nth(i).locator(".bar-pct").inner_text().rstrip("%")),
        )
        for i in range(rows.count())
    ]


def assert_bars_match(page: Page, top: list[dict[str, object]]) -> None:
    """The bars show ``top`` (the API's answer), to the 0.1 % the page rounds to."""
    bars = shown_bars(page)
    assert [label for label, _ in bars] == [t["label"] for t in top]
    for (_, pct), expected in zip(bars, top, strict=True):
        assert isinstance(expected["score"], float)
        assert abs(pct - expected["score"] * 100) <= 0.051


def assert_local_and_clean(watched: Watched) -> None:
    """The page asked only the service, and broke no rule of its Content-Security-Policy."""
    assert watched.requests, "the page made no request"
    assert watched.outside() == []
    csp = [e for e in watched.console_errors if "Content Security Policy" in e]
    assert csp == []

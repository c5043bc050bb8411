"""The dashboard in headless Chromium: the browser's flags, what went wrong in a page, opening
the dashboard, screenshots, pixels a chart inked, and numbers as the page shows them."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30_000
INKED_PIXELS_JS = """(canvas) => {
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let inked = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i] > 0) inked++;
  return inked;
}"""


@dataclass
class PageLog:
    """What went wrong in the page: console errors, uncaught exceptions, failed or 4xx/5xx requests."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return self.console_errors + self.page_errors + self.failed_requests


def watch(page: Page) -> PageLog:
    log = PageLog()
    page.on("console", lambda message: log.console_errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: log.page_errors.append(str(error)))
    page.on("requestfailed", lambda request: log.failed_requests.append(f"{request.url}: {request.failure}"))
    page.on("request", lambda request: log.requested.append(request.url))

    def on_response(response) -> None:  # type: ignore[no-untyped-def]
        if response.status >= 400:
            log.failed_requests.append(f"{response.url}: HTTP {response.status}")

    page.on("response", on_response)
    return log


def open_dashboard(page: Page, url: str) -> None:
    page.goto(f"{url}/dashboard/")
    expect(page.locator("#models-body tr[data-model]").first).to_be_visible()
    expect(page.locator("#loss-chart canvas")).to_have_count(1)


def snapshot(target: Page | Locator, path: Path, copy_to: str | None = None) -> None:
    if isinstance(target, Page):
        target.screenshot(path=path, full_page=True)
    else:
        target.screenshot(path=path)
    if copy_to:
        shutil.copyfile(path, copy_to)


def shown_number(value: float) -> float:
    """A metric as the table shows it: four significant digits."""
    return float(f"{value:.4g}")

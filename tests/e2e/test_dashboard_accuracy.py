"""The dashboard's accuracy panel in a real headless Chromium against a real `forecast serve`, on a
registry whose accuracy records the real `forecast evaluate` wrote: production's MASE on fresh
data per record beside the baselines, the version each record scored and where it changed, the
latest record's verdict, and the message of a model without records."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect, sync_playwright

from tests.support.browser import (
    CHROMIUM_ARGS,
    INKED_PIXELS_JS,
    WAIT_MS,
    open_dashboard,
    shown_number,
    snapshot,
    watch,
)
from tests.support.cli import run_forecast_many
from tests.support.data import seasonal_frame
from tests.support.servers import TRAIN_ARGS, Server, start_server

WIDE: ViewportSize = {"width": 1280, "height": 900}  # as tests/e2e/test_dashboard.py's
PHONE: ViewportSize = {"width": 390, "height": 844}

# Version 1 trains on the first 400 points of two hourly series, version 2 (the retraining) on
# the first 450; after point 450 the series change behaviour.
FIRST_TRAINING, SECOND_TRAINING, ALL_POINTS = 400, 450, 500


def _changed_after(frame: pd.DataFrame, start: int) -> pd.DataFrame:
    """From point `start` on, the daily cycle becomes a clean twelve-hour one (as in
    test_production_watch.py): the seasonal naive follows at once, a model of the old cycle not."""
    changed = frame.copy()
    for _, rows in changed.groupby("series_id"):
        later = rows.index[start:]
        steps = np.arange(len(later))
        level = float(rows["value"].iloc[start - 1])
        changed.loc[later, "value"] = level + 4.0 * np.sin(2 * np.pi * steps / 12) + 0.01 * steps
    return changed


@pytest.fixture(scope="module")
def accuracy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`watched`: three accuracy records, two of version 1 (the first degraded against a strict
    ratio of 1.0), then version 2 promoted and scored on the changed data (it loses to the
    seasonal naive); `quiet`: a model never evaluated."""
    workdir = tmp_path_factory.mktemp("accuracy")
    full = seasonal_frame(series_ids=("a", "b"), n_points=ALL_POINTS, seed=3)
    files = {
        "first": full.groupby("series_id").head(FIRST_TRAINING),
        "second": full.groupby("series_id").head(SECOND_TRAINING),
        "later": full.groupby("series_id").head(475),
        "changed": _changed_after(full, SECOND_TRAINING),
    }
    paths = {key: workdir / f"{key}.csv" for key in files}
    for key, frame in files.items():
        frame.to_csv(paths[key], index=False)
    registry = workdir / "registry"
    where = ("--registry", str(registry))
    model = (*TRAIN_ARGS, "--no-refit", "--force", *where)
    evaluate = ("evaluate", "--name", "watched", *where, "--data")
    steps = [
        ["train", "--data", str(paths["first"]), "--name", "watched", "--arch", "lstm", *model],
        ["train", "--data", str(paths["first"]), "--name", "quiet", "--arch", "gru", *model],
        [*evaluate, str(paths["second"]), "--degradation-ratio", "1.0"],
        [*evaluate, str(paths["later"])],
        ["train", "--data", str(paths["second"]), "--name", "watched", "--arch", "lstm", *model],
        ["models", "promote", "watched", "2", *where],
        [*evaluate, str(paths["changed"])],
    ]
    # one interpreter imports torch once and forks each step, in order
    for result in run_forecast_many(steps, workdir / "runs"):
        assert result.returncode == 0, result.describe()
    server = start_server(registry, workdir)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is missing: run `make browser` (or `apt-get install chromium`) first")
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=WIDE)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    yield page
    context.close()


def show_model(page: Page, name: str, records: int) -> None:
    panel = page.locator("#accuracy")
    panel.get_by_label("Model", exact=True).select_option(name)
    expect(panel).to_have_attribute("data-shown", name)
    expect(panel).to_have_attribute("data-records", str(records))


def test_each_record_is_drawn_beside_the_baselines_with_its_version_and_the_loss_is_flagged(
    page: Page, accuracy_server: Server, tmp_path: Path
) -> None:
    with accuracy_server.client() as client:
        records = client.get("/v1/models/watched").json()["accuracy"]
    assert [(r["record"], r["version"]) for r in records] == [(1, 1), (2, 1), (3, 2)]
    assert records[0]["status"] == "degraded" and records[-1]["status"] == "loses_to_seasonal_naive"
    log = watch(page)
    open_dashboard(page, accuracy_server.url)
    show_model(page, "watched", len(records))

    # The latest record's verdict, flagged above the chart.
    status = page.get_by_test_id("accuracy-status")
    expect(status).to_be_visible()
    expect(status).to_have_attribute("data-status", "loses_to_seasonal_naive")
    expect(status.get_by_test_id("accuracy-badge")).to_have_text("Loses to the seasonal naive")
    expect(status).to_contain_text("Record #3, version 2")
    expect(status).to_contain_text(
        f"the seasonal naive's {shown_number(records[-1]['metrics']['seasonal_naive']['mase']):g}"
    )
    expect(page.get_by_test_id("accuracy-empty")).to_be_hidden()

    # One point per record, a line per version beside the two baselines, a marker where the
    # version evaluated changed.
    chart = page.locator("#accuracy-chart")
    expect(chart).to_have_attribute("data-points", str(len(records)))
    expect(chart).to_have_attribute("data-series", "model v1 MASE|model v2 MASE|naive MASE|seasonal naive MASE")
    expect(chart).to_have_attribute("data-versions", "1|1|2")  # by the data's last timestamp, which grows here
    expect(chart).to_have_attribute("data-promotions", "3:v2")
    assert chart.locator("canvas").evaluate(INKED_PIXELS_JS) > 500
    expect(page.locator("#accuracy-caption")).to_contain_text("version 2 from record 3")

    # The table, newest first: each record's version, metrics and status as the API says.
    rows = page.locator("#accuracy-table tbody tr")
    expect(rows).to_have_count(len(records))
    for row_index, record in enumerate(reversed(records)):
        row = rows.nth(row_index)
        expect(row).to_have_attribute("data-record", str(record["record"]))
        expect(row).to_have_attribute("data-version", str(record["version"]))
        expect(row).to_have_attribute("data-status", record["status"])
        expect(row.locator('td[data-label="Version"]')).to_contain_text(f"v{record['version']}")
        expect(row.locator('td[data-label="Forecasts"]')).to_have_text(str(record["data"]["windows"]))
        for label, method in (
            ("Model MASE", "model"),
            ("Naive MASE", "naive"),
            ("Seasonal naive MASE", "seasonal_naive"),
        ):
            shown = row.locator(f'td[data-label="{label}"]').inner_text()
            assert float(shown) == shown_number(record["metrics"][method]["mase"]), (label, record["record"])
        promoted = row.locator(".badge.promotion")
        expect(promoted).to_have_count(1 if record["record"] == 3 else 0)
    statuses = page.locator('#accuracy-table tbody td[data-label="Status"]')
    expect(statuses).to_have_text(["Loses to the seasonal naive", "Holds", "Degraded"])
    snapshot(page.locator("#accuracy"), tmp_path / "accuracy.png", copy_to="/tmp/dashboard-accuracy.png")

    # Fits a phone: the table becomes one card per record.
    page.set_viewport_size(PHONE)
    expect(rows).to_have_count(len(records))
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    snapshot(page.locator("#accuracy"), tmp_path / "accuracy-phone.png")
    assert log.problems() == []


def test_a_model_without_records_says_how_to_get_them(page: Page, accuracy_server: Server) -> None:
    log = watch(page)
    open_dashboard(page, accuracy_server.url)
    show_model(page, "watched", 3)
    expect(page.locator("#accuracy-chart canvas")).to_have_count(1)

    show_model(page, "quiet", 0)
    empty = page.get_by_test_id("accuracy-empty")
    expect(empty).to_be_visible()
    expect(empty).to_contain_text("No accuracy records yet for quiet: schedule `forecast evaluate")
    expect(page.get_by_test_id("accuracy-status")).to_be_hidden()
    expect(page.locator("#accuracy-content")).to_be_hidden()
    expect(page.locator("#accuracy-chart canvas")).to_have_count(0)  # the other model's chart is gone
    assert log.problems() == []

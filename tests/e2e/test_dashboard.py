"""The dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright) against a
real `forecast serve` on a copy of the trained registry: what a user sees, what they download,
the errors they get, and what changes by itself while the page is open."""

from __future__ import annotations

import csv
import functools
import http.server
import io
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from playwright.sync_api import Browser, Download, Page, Playwright, expect, sync_playwright

from tests.support.browser import (
    CHROMIUM_ARGS,
    INKED_PIXELS_JS,
    WAIT_MS,
    open_dashboard,
    shown_number,
    snapshot,
    watch,
)
from tests.support.servers import Server, free_port, run_cli, start_server, train

STATIC = Path(__file__).resolve().parents[2] / "api" / "static"
WIDE = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
ALLOWED_ORIGIN = "http://example.test"
# Training a version takes tens of seconds on two shared cores; the page then sees it within a
# poll (3 s) after the server's reload (0.5 s here).
NEW_VERSION_WAIT_MS = 60_000
# The forecast band's fill, rgba(37, 99, 235, 0.16): shaded pixels are this blue, translucent.
BAND_PIXELS_JS = """(canvas) => {
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let shaded = 0;
  for (let i = 0; i < data.length; i += 4) {
    const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
    if (a > 20 && a < 140 && Math.abs(r - 37) < 12 && Math.abs(g - 99) < 12 && Math.abs(b - 235) < 12) shaded++;
  }
  return shaded;
}"""


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def static_origin() -> Iterator[str]:
    """The dashboard's files served by a plain static server on another origin, as an external
    dashboard would be: it can use the API only through CORS."""
    handler = functools.partial(QuietHandler, directory=str(STATIC))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def dashboard_server(
    tmp_path_factory: pytest.TempPathFactory, registry_template: Path, static_origin: str
) -> Iterator[Server]:
    """One server for the tests that only read: demo-lstm v1 (production) and v2 (staging), demo-gru v1."""
    root = tmp_path_factory.mktemp("dashboard")
    registry = root / "registry"
    shutil.copytree(registry_template, registry)
    server = start_server(registry, root, cors_origins=f"{ALLOWED_ORIGIN},{static_origin}")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is missing: run `make browser` (or `apt-get install chromium`) first")
    browser = playwright_driver.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=WIDE, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    yield page
    context.close()


def models(server: Server) -> dict[str, dict]:  # type: ignore[type-arg]
    with server.client() as client:
        return {m["name"]: m for m in client.get("/v1/models").json()["models"]}


def input_size(server: Server, name: str, version: int) -> int:
    """How many points the version reads (a stand-in anchor may read more than the network's window)."""
    return int(next(v["input_size"] for v in models(server)[name]["versions"] if v["version"] == version))


def long_csv(history_csv: Path, points: int = 100) -> tuple[str, list[dict[str, object]]]:
    """The last `points` rows of series a and b as long-format CSV text, and the same series as
    the API's JSON."""
    frame = pd.read_csv(history_csv, dtype={"value": str})
    lines = ["series_id,timestamp,value"]
    series = []
    for series_id in ("a", "b"):
        rows = frame[frame.series_id == series_id].iloc[-points:]
        lines += [f"{series_id},{t},{v}" for t, v in zip(rows.timestamp, rows.value, strict=True)]
        series.append(
            {"id": series_id, "timestamps": rows.timestamp.tolist(), "values": [float(v) for v in rows.value]}
        )
    return "\n".join(lines) + "\n", series


def read_download(download: Download) -> list[dict[str, str]]:
    with open(download.path(), newline="") as handle:
        return list(csv.DictReader(handle))


def rows_of_response(body: dict) -> list[dict[str, object]]:  # type: ignore[type-arg]
    rows = []
    for forecast in body["forecasts"]:
        for step, timestamp in enumerate(forecast["timestamps"]):
            row: dict[str, object] = {
                "series_id": forecast["id"],
                "timestamp": timestamp,
                "mean": forecast["mean"][step],
            }
            for level, interval in forecast["intervals"].items():
                row[f"lower_{level}"] = interval["lower"][step]
                row[f"upper_{level}"] = interval["upper"][step]
            rows.append(row)
    return rows


# --- the page -------------------------------------------------------------------------------


def test_the_page_loads_without_console_errors_or_failed_requests(
    page: Page, dashboard_server: Server, tmp_path: Path
) -> None:
    log = watch(page)
    page.goto(f"{dashboard_server.url}/")  # the root redirects to the dashboard
    expect(page).to_have_url(f"{dashboard_server.url}/dashboard/")
    expect(page.locator("#models-body tr[data-model]")).to_have_count(3)
    expect(page.locator("#report-charts canvas").first).to_be_visible()
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    page.wait_for_load_state("networkidle")
    snapshot(page, tmp_path / "loaded.png")
    assert log.problems() == []
    # Works offline: everything, the charting library included, comes from the service itself.
    assert log.requested and all(url.startswith(dashboard_server.url) for url in log.requested), log.requested
    assert any(url.endswith("/vendor/uplot/uPlot.iife.min.js") for url in log.requested)


def test_every_version_is_listed_with_its_metrics_beside_the_baselines(
    page: Page, dashboard_server: Server, tmp_path: Path
) -> None:
    open_dashboard(page, dashboard_server.url)
    expected = models(dashboard_server)
    assert set(expected) == {"demo-lstm", "demo-gru"}
    for name, model in expected.items():
        for version in model["versions"]:
            row = page.locator(f'#models-body tr[data-model="{name}"][data-version="{version["version"]}"]')
            expect(row).to_have_count(1)
            expect(row.locator('td[data-label="Arch"]')).to_have_text(version["arch"].upper())
            expect(row.locator('td[data-label="Input"]')).to_have_text(str(version["input_size"]))
            expect(row.locator('td[data-label="Horizon"]')).to_have_text(str(version["horizon"]))
            expect(row.locator('td[data-label="Freq"]')).to_have_text(version["freq"])
            for alias in version["aliases"]:
                expect(row.locator(f'.badge[data-alias="{alias}"]')).to_be_visible()
            metrics = version["test_metrics"]
            for key, label in (("mae", "MAE"), ("rmse", "RMSE"), ("smape", "sMAPE %"), ("mase", "MASE")):
                cell = row.locator(f'td.metric[data-label="{label}"]')
                assert float(cell.locator(".model-value").inner_text()) == shown_number(metrics["model"][key])
                chips = cell.locator(".chip")
                for index, baseline in enumerate(("naive", "seasonal_naive")):
                    wins = metrics["model"][key] < metrics[baseline][key]
                    expect(chips.nth(index)).to_have_class(re.compile(r"\bwin\b" if wins else r"\blose\b"))
                    assert shown_number(metrics[baseline][key]) == float(chips.nth(index).inner_text().split()[-1])
                beats_both = all(metrics["model"][key] < metrics[b][key] for b in ("naive", "seasonal_naive"))
                if beats_both:
                    expect(cell.locator(".model-value")).to_have_class(re.compile(r"\bwin\b"))
    production = page.locator(
        '#models-body tr[data-model="demo-lstm"][data-version="1"] .badge[data-alias="production"]'
    )
    expect(production.locator(".served-dot")).to_have_count(1)  # the server answers production with v1
    snapshot(page.locator("#models"), tmp_path / "models.png", copy_to="/tmp/dashboard-models.png")


def test_a_versions_loss_chart_coverage_and_report_are_drawn(
    page: Page, dashboard_server: Server, tmp_path: Path
) -> None:
    open_dashboard(page, dashboard_server.url)
    page.get_by_role("button", name="Inspect demo-lstm version 2").click()
    expect(page.locator("#version")).to_have_attribute("data-shown", "demo-lstm/2")
    expect(page.locator("#version-heading")).to_be_focused()
    with dashboard_server.client() as client:
        manifest = client.get("/v1/models/demo-lstm/versions/2").json()
        report = client.get("/v1/models/demo-lstm/versions/2/report").json()

    loss = page.locator("#loss-chart")
    first_member = [epoch for epoch in report["epochs"] if epoch.get("member", 0) == 0]  # an ensemble's first
    expect(loss).to_have_attribute("data-points", str(len(first_member)))
    expect(loss).to_have_attribute("data-series", "train loss|validation loss")
    canvas = loss.locator("canvas")
    box = canvas.bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 100
    assert canvas.evaluate(INKED_PIXELS_JS) > 500  # lines were drawn, not just an empty canvas

    facts = page.locator("#hyperparameters")
    expect(facts).to_contain_text(f"Hidden size{manifest['training']['network']['hidden_size']}")
    expect(facts).to_contain_text(f"Best epoch{manifest['best_epoch']}")
    coverage = manifest["intervals"]["coverage"]
    for level, empirical in coverage.items():
        row = page.locator(f'#coverage-table tr[data-level="{level}"]')
        expect(row).to_contain_text(f"{level}%")
        expect(row).to_contain_text(f"{empirical * 100:.1f}%")
    expect(page.locator("#report-charts canvas")).to_have_count(len(report["samples"]))
    expect(page.locator("#report-charts .chart").first).to_have_attribute("data-bands", "1")
    snapshot(page.locator("#version"), tmp_path / "version.png")


def test_a_pasted_csv_gives_charts_with_intervals_and_a_csv_equal_to_the_api(
    page: Page, dashboard_server: Server, history_csv: Path, tmp_path: Path
) -> None:
    open_dashboard(page, dashboard_server.url)
    panel = page.locator("#forecast")
    text, series = long_csv(history_csv)
    panel.get_by_label("Model", exact=True).select_option("demo-lstm")
    panel.get_by_label("Version or alias").select_option("alias:staging")
    panel.get_by_label("Horizon (steps)").fill("6")
    panel.get_by_label("Interval levels (%)").fill("80, 95")
    panel.get_by_label("CSV", exact=True).fill(text)
    with page.expect_response("**/v1/forecast") as answer:
        panel.get_by_role("button", name="Forecast", exact=True).click()
    sent = answer.value.request.post_data_json
    received = answer.value.json()
    request = {"model": "demo-lstm", "alias": "staging", "horizon": 6, "levels": [80, 95], "series": series}
    assert sent == request  # the CSV became exactly the series it holds

    charts = page.locator("#fc-charts .chart")
    expect(charts).to_have_count(2)
    # the model's input (or four horizons, if more) of the 100 points posted
    shown = min(100, max(input_size(dashboard_server, "demo-lstm", 2), 4 * 6))
    expect(page.locator("#fc-served")).to_contain_text("Served by demo-lstm version 2 (LSTM), asked for alias staging")
    expect(page.locator("#live-forecasts tbody tr").first.locator(".served-by")).to_have_text("demo-lstm v2 (lstm)")
    for index in range(2):
        chart = charts.nth(index)
        expect(chart).to_have_attribute("data-series", "history|forecast|95% interval|95% lower|80% interval|80% lower")
        expect(chart).to_have_attribute("data-bands", "2")
        expect(chart).to_have_attribute("data-forecast-points", "6")
        expect(chart).to_have_attribute("data-history-points", str(shown))
        assert (
            chart.locator("canvas").evaluate(BAND_PIXELS_JS) > 200
        )  # the intervals are shaded (a chart without them has none)

    with page.expect_download() as downloading:
        panel.get_by_role("link", name="Download forecast CSV").click()
    download = downloading.value
    assert download.suggested_filename == "forecast-demo-lstm-v2.csv"
    rows = read_download(download)
    with dashboard_server.client() as client:
        direct = client.post("/v1/forecast", json=request)
    assert direct.status_code == 200, direct.text
    for body in (received, direct.json()):
        expected = rows_of_response(body)
        assert len(rows) == len(expected) == 12
        for got, want in zip(rows, expected, strict=True):
            assert got.keys() == want.keys()
            assert (got["series_id"], got["timestamp"]) == (want["series_id"], want["timestamp"])
            assert {k: float(v) for k, v in got.items() if k not in ("series_id", "timestamp")} == {
                k: v for k, v in want.items() if k not in ("series_id", "timestamp")
            }
    snapshot(panel, tmp_path / "forecast.png", copy_to="/tmp/dashboard-forecast.png")


def test_quoted_fields_are_read_as_the_dashboards_own_download_writes_them(
    page: Page, dashboard_server: Server, history_csv: Path
) -> None:
    """Ids holding the delimiter, doubled quotes and a semicolon-separated paste: RFC 4180 as the
    download writes it, read back field for field."""
    open_dashboard(page, dashboard_server.url)
    panel = page.locator("#forecast")
    frame = pd.read_csv(history_csv, dtype={"value": str})
    ids = {"a": 'store "north", aisle 1', "b": "store; south"}
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\n")
    writer.writerow(["series_id", "timestamp", "value"])
    for source, series_id in ids.items():
        rows = frame[frame.series_id == source].iloc[-60:]
        writer.writerows([series_id, t, v] for t, v in zip(rows.timestamp, rows.value, strict=True))
    panel.get_by_label("Model", exact=True).select_option("demo-lstm")
    panel.get_by_label("CSV", exact=True).fill(buffer.getvalue())
    with page.expect_response("**/v1/forecast") as answer:
        panel.get_by_role("button", name="Forecast", exact=True).click()
    sent = answer.value.request.post_data_json
    assert [series["id"] for series in sent["series"]] == list(ids.values())
    assert all(len(series["values"]) == 60 for series in sent["series"])
    with page.expect_download() as downloading:
        panel.get_by_role("link", name="Download forecast CSV").click()
    assert sorted({row["series_id"] for row in read_download(downloading.value)}) == sorted(ids.values())


def test_a_csv_with_empty_cells_and_a_short_series_is_forecast_with_both_marked(
    page: Page, dashboard_server: Server, history_csv: Path
) -> None:
    open_dashboard(page, dashboard_server.url)
    panel = page.locator("#forecast")
    frame = pd.read_csv(history_csv)
    reads = input_size(dashboard_server, "demo-gru", 1)
    long_rows = frame[frame.series_id == "a"].iloc[: max(60, reads)]  # as long as the model's input: not padded
    short_rows = frame[frame.series_id == "b"].iloc[:10]
    lines = ["series_id,timestamp,value"]
    for index, row in enumerate(long_rows.itertuples()):
        lines.append(f"a,{row.timestamp},{'' if index in (50, 51) else row.value}")  # a two-hour gap
    lines += [f"b,{row.timestamp},{row.value}" for row in short_rows.itertuples()]
    panel.get_by_label("Model", exact=True).select_option("demo-gru")
    panel.get_by_label("CSV", exact=True).fill("\n".join(lines))
    with page.expect_response("**/v1/forecast") as answer:
        panel.get_by_role("button", name="Forecast", exact=True).click()
    sent = answer.value.request.post_data_json
    received = answer.value.json()
    assert sent["series"][0]["values"][50:52] == [None, None]  # empty cells are gaps, posted as null
    assert [(f["id"], f["padded"], f["missing"]) for f in received["forecasts"]] == [("a", 0, 2), ("b", reads - 10, 0)]
    captions = page.locator("#fc-charts figcaption")
    expect(captions).to_have_count(2)
    expect(captions.nth(0)).to_have_text("series a · 2 missing points filled")
    expect(captions.nth(1)).to_have_text(f"series b · padded with {reads - 10} points (shorter than the model's input)")
    expect(page.locator("#fc-served")).to_contain_text("1 series was shorter than the model's input and padded")


def test_a_bad_csv_shows_the_apis_error_next_to_the_input(
    page: Page, dashboard_server: Server, history_csv: Path, tmp_path: Path
) -> None:
    open_dashboard(page, dashboard_server.url)
    panel = page.locator("#forecast")
    csv_error = page.locator("#fc-csv-error .api-message")
    frame = pd.read_csv(history_csv)
    rows = frame[frame.series_id == "a"]

    def api_message(series: list[dict[str, object]], **options: object) -> str:
        with dashboard_server.client() as client:
            response = client.post(
                "/v1/forecast",
                json={"model": "demo-gru", "alias": "production", "levels": [80], **options, "series": series},
            )
        assert 400 <= response.status_code < 500, response.text
        return str(response.json()["message"])

    panel.get_by_label("Model", exact=True).select_option("demo-gru")
    panel.get_by_label("Interval levels (%)").fill("80")

    # Too little signal, uploaded as a file: the series takes the file's name, and the empty
    # cells go to the API as gaps (null), which words the bound.
    sparse = tmp_path / "short.csv"
    sparse_values = [f"{v}" if i % 20 == 0 else "" for i, v in enumerate(rows.value[:60])]
    sparse.write_text(
        "timestamp,value\n" + "".join(f"{t},{v}\n" for t, v in zip(rows.timestamp[:60], sparse_values, strict=True))
    )
    panel.get_by_label("Upload a CSV file").set_input_files(sparse)
    expect(panel.get_by_label("CSV", exact=True)).to_have_value(re.compile(r"^timestamp,value\n"))
    panel.get_by_role("button", name="Forecast", exact=True).click()
    message = api_message(
        [
            {
                "id": "short",
                "timestamps": rows.timestamp[:60].tolist(),
                "values": [float(v) if v else None for v in sparse_values],
            }
        ]
    )
    assert "short" in message and "missing" in message
    expect(csv_error).to_have_text(message)
    expect(panel.get_by_label("CSV", exact=True)).to_have_attribute("aria-invalid", "true")

    # Not a number: the text goes to the API as written, and the API words the error.
    lines = [f"{t},{v}" for t, v in zip(rows.timestamp[:60], rows.value[:60], strict=True)]
    lines[5] = f"{rows.timestamp.iloc[5]},abc"
    panel.get_by_label("CSV", exact=True).fill("\n".join(lines))
    panel.get_by_role("button", name="Forecast", exact=True).click()
    values: list[object] = rows.value[:60].tolist()
    values[5] = "abc"
    message = api_message([{"id": "short", "timestamps": rows.timestamp[:60].tolist(), "values": values}])
    assert "valid number" in message
    expect(csv_error).to_have_text(message)
    snapshot(panel, tmp_path / "bad-value.png")

    # A horizon beyond the model's: the error sits beside the horizon field.
    lines[5] = f"{rows.timestamp.iloc[5]},{rows.value.iloc[5]}"
    panel.get_by_label("CSV", exact=True).fill("\n".join(lines))
    panel.get_by_label("Horizon (steps)").fill("99")
    panel.get_by_role("button", name="Forecast", exact=True).click()
    message = api_message(
        [{"id": "short", "timestamps": rows.timestamp[:60].tolist(), "values": rows.value[:60].tolist()}], horizon=99
    )
    expect(page.locator("#fc-horizon-error .api-message")).to_have_text(message)
    expect(page.locator("#fc-csv-error")).to_be_hidden()
    expect(page.locator("#live-forecasts tbody tr.failed")).to_have_count(3)
    snapshot(panel, tmp_path / "bad-horizon.png")


def test_the_page_fits_a_phone_and_works_from_the_keyboard(
    browser: Browser, dashboard_server: Server, tmp_path: Path
) -> None:
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        open_dashboard(page, dashboard_server.url)
        page.get_by_label("Bundled sample").focus()
        page.keyboard.press("Tab")
        expect(page.get_by_role("button", name="Load sample")).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.get_by_label("CSV", exact=True)).to_have_value(re.compile(r"^timestamp,value\n"))
        page.get_by_label("CSV", exact=True).focus()
        page.keyboard.press("Tab")
        expect(page.get_by_role("button", name="Forecast", exact=True)).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("#fc-charts canvas")).to_have_count(1)
        expect(page.locator("#fc-charts figure figcaption")).to_have_text("series etth1-ot")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        snapshot(page, tmp_path / "phone.png")
        snapshot(page.locator("#forecast"), tmp_path / "phone-forecast.png")
    finally:
        context.close()


def test_a_version_trained_while_the_page_is_open_appears_without_a_reload(
    page: Page, server_factory: Callable[..., Server], registry: Path, history_csv: Path, tmp_path: Path
) -> None:
    server = server_factory(registry, reload_seconds="0.5")
    open_dashboard(page, server.url)
    page.evaluate("window.sameDocument = true")
    expect(page.locator('#models-body tr[data-model="demo-lstm"]')).to_have_count(2)

    train(registry, history_csv, "demo-lstm", "lstm", "--seed", "2")
    new_row = page.locator('#models-body tr[data-model="demo-lstm"][data-version="3"]')
    expect(new_row).to_be_visible(timeout=NEW_VERSION_WAIT_MS)
    expect(new_row.locator(".badge.new")).to_be_visible()
    expect(page.locator("#live-events")).to_contain_text("demo-lstm: version 3 (LSTM) appeared in the registry")

    run_cli("models", "promote", "demo-lstm", "3", registry=registry)
    production = new_row.locator('.badge[data-alias="production"]')
    expect(production.locator(".served-dot")).to_have_count(1, timeout=NEW_VERSION_WAIT_MS)  # served, not only listed
    expect(page.locator("#live-events")).to_contain_text(
        "demo-lstm: alias production moved from version 1 to version 3"
    )
    expect(page.locator("#live-events")).to_contain_text("demo-lstm: the server now answers production with version 3")

    panel = page.locator("#forecast")
    panel.get_by_label("Model", exact=True).select_option("demo-lstm")
    expect(panel.get_by_label("Version or alias").locator("option:checked")).to_have_text(
        "alias production → version 3"
    )
    text, _ = long_csv(history_csv, points=60)
    panel.get_by_label("CSV", exact=True).fill(text)
    panel.get_by_role("button", name="Forecast", exact=True).click()
    expect(page.locator("#fc-served")).to_contain_text("Served by demo-lstm version 3")
    expect(page.locator("#live-forecasts tbody tr").first.locator(".served-by")).to_have_text("demo-lstm v3 (lstm)")
    assert page.evaluate("window.sameDocument") is True  # no reload happened
    snapshot(page.locator("#models"), tmp_path / "new-version-models.png")
    snapshot(page.locator("#live"), tmp_path / "new-version-live.png")


# --- CORS -----------------------------------------------------------------------------------


def test_cors_headers_go_only_to_the_configured_origins(
    page: Page, dashboard_server: Server, static_origin: str, tmp_path: Path
) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    with httpx.Client(base_url=dashboard_server.url, timeout=10) as client:
        allowed = client.options("/v1/forecast", headers={"Origin": ALLOWED_ORIGIN, **preflight})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        assert "POST" in allowed.headers["access-control-allow-methods"]
        refused = client.options("/v1/forecast", headers={"Origin": "http://other.test", **preflight})
        assert "access-control-allow-origin" not in refused.headers
        listed = client.get("/v1/models", headers={"Origin": ALLOWED_ORIGIN})
        assert listed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        unlisted = client.get("/v1/models", headers={"Origin": "http://other.test"})
        assert unlisted.status_code == 200 and "access-control-allow-origin" not in unlisted.headers

    # The same page served from another origin that is on the list works against the API...
    log = watch(page)
    page.goto(f"{static_origin}/index.html?api={dashboard_server.url}")
    expect(page.locator("#models-body tr[data-model]")).to_have_count(3)
    expect(page.locator("#loss-chart canvas")).to_have_count(1)
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    assert log.problems() == []
    snapshot(page, tmp_path / "cors-allowed.png")

    # ...and from an origin that is not (localhost is not 127.0.0.1), the browser refuses it.
    port = dashboard_server.url.rsplit(":", 1)[1]
    page.goto(f"http://localhost:{port}/dashboard/?api={dashboard_server.url}")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "offline")
    expect(page.locator("#live-status")).to_contain_text("does not allow this page's origin")
    snapshot(page, tmp_path / "cors-refused.png")


# --- API keys -------------------------------------------------------------------------------

DASHBOARD_KEY = "dashboard-key-" + "d" * 30
FORECAST_ONLY_KEY = "forecast-only-" + "f" * 30


def stored_key(page: Page) -> str | None:
    return page.evaluate("() => sessionStorage.getItem('forecast-api-key')")  # type: ignore[no-any-return]


def test_with_keys_the_page_asks_for_one_keeps_it_for_the_session_and_shows_the_models(
    browser: Browser, registry_template: Path, static_origin: str, tmp_path: Path
) -> None:
    server = start_server(
        registry_template,
        tmp_path,
        api_keys=f"dash:read:{DASHBOARD_KEY},batch:forecast:{FORECAST_ONLY_KEY}",
        cors_origins=static_origin,
    )
    context = browser.new_context(viewport=WIDE)
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        sent: list[tuple[str, str | None]] = []  # (url, Authorization) of each API call
        page.on("request", lambda r: sent.append((r.url, r.headers.get("authorization"))) if "/v1/" in r.url else None)
        page.goto(f"{server.url}/dashboard/")
        prompt, reason = page.locator("#access"), page.locator("#access-reason")
        expect(prompt).to_be_visible()
        expect(reason).to_have_text("This API needs a key. Enter yours below.")
        expect(page.locator("#api-key")).to_be_focused()
        expect(page.locator("#live-status")).to_have_attribute("data-state", "locked")
        expect(page.locator("#models-body tr[data-model]")).to_have_count(0)
        snapshot(page, tmp_path / "key-prompt.png", copy_to="/tmp/dashboard-key-prompt.png")

        page.fill("#api-key", "not-the-key-" + "x" * 20)
        page.click("#key-submit")
        expect(reason).to_contain_text("The API refused the key (the API key is not valid")
        expect(prompt).to_be_visible()
        assert stored_key(page) is None  # a refused key is not kept

        page.fill("#api-key", FORECAST_ONLY_KEY)
        page.click("#key-submit")
        expect(reason).to_contain_text("This key may not read the registry (the key 'batch' has scope forecast")
        expect(page.locator("#models-body tr[data-model]")).to_have_count(0)

        page.fill("#api-key", DASHBOARD_KEY)
        page.click("#key-submit")
        expect(page.locator("#models-body tr[data-model]")).to_have_count(3)
        expect(prompt).to_be_hidden()
        expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
        expect(page.locator("#loss-chart canvas")).to_have_count(1)  # the version's calls carry it too
        assert stored_key(page) == DASHBOARD_KEY
        accepted = sent[[auth for _, auth in sent].index(f"Bearer {DASHBOARD_KEY}") :]
        assert len({url for url, _ in accepted}) >= 3 and {auth for _, auth in accepted} == {f"Bearer {DASHBOARD_KEY}"}

        # Kept for the browser session: a reload shows the models without asking.
        page.reload()
        expect(page.locator("#models-body tr[data-model]")).to_have_count(3)
        expect(prompt).to_be_hidden()
        # Another session (a new browser context) has no key; forgetting it asks again.
        other = browser.new_context(viewport=WIDE)
        fresh = other.new_page()
        fresh.goto(f"{server.url}/dashboard/")
        expect(fresh.locator("#access")).to_be_visible()
        other.close()
        page.click("#key-forget")
        expect(prompt).to_be_visible()
        assert stored_key(page) is None

        # A dashboard on another origin can read the 401 (CORS headers on the refusal) and
        # send the key (the preflight allows Authorization).
        page.goto(f"{static_origin}/index.html?api={server.url}")
        expect(prompt).to_be_visible()
        page.fill("#api-key", DASHBOARD_KEY)
        page.click("#key-submit")
        expect(page.locator("#models-body tr[data-model]")).to_have_count(3)
        snapshot(page, tmp_path / "key-accepted.png")
    finally:
        context.close()
        server.stop()


# --- covariates -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def covariate_server(tmp_path_factory: pytest.TempPathFactory, covariate_registry: Path) -> Iterator[Server]:
    """demo-driven alone: a version that reads a past, a future-known and a static covariate."""
    root = tmp_path_factory.mktemp("dashboard-covariates")
    shutil.copytree(covariate_registry, root / "registry")
    server = start_server(root / "registry", root)
    yield server
    server.stop()


def covariate_csv_text(covariate_csv: Path, points: int = 60, horizon: int = 12) -> tuple[str, dict[str, object]]:
    """Series a's last `points` rows and the `horizon` rows after them (their value left empty,
    the future-known covariate given), with a column the model does not read; and the series as
    the API's JSON."""
    frame = pd.read_csv(covariate_csv, dtype=str)
    rows = frame[frame.series_id == "a"].iloc[-(points + horizon) :]
    lines = ["series_id,timestamp,value,temperature,load,region,note"]
    for index, row in enumerate(rows.itertuples()):
        value = row.value if index < points else ""
        lines.append(f"a,{row.timestamp},{value},{row.temperature},{row.load},{row.region},x")
    known = rows.iloc[:points]
    series = {
        "id": "a",
        "timestamps": known.timestamp.tolist(),
        "values": [float(v) for v in known.value],
        "past_covariates": {"load": [float(v) for v in known.load]},
        "future_covariates": {"temperature": [float(v) for v in rows.temperature]},
        "static_covariates": {"region": rows.region.iloc[0]},
    }
    return "\n".join(lines) + "\n", series


def test_a_csv_with_covariates_is_posted_by_kind_and_the_future_covariate_drawn(
    page: Page, covariate_server: Server, covariate_csv: Path, tmp_path: Path
) -> None:
    log = watch(page)
    open_dashboard(page, covariate_server.url)
    panel = page.locator("#forecast")
    text, series = covariate_csv_text(covariate_csv)
    panel.get_by_label("Model", exact=True).select_option("demo-driven")
    panel.get_by_label("CSV", exact=True).fill(text)
    with page.expect_response("**/v1/forecast") as answer:
        panel.get_by_role("button", name="Forecast", exact=True).click()
    assert answer.value.status == 200, answer.value.text()
    sent = answer.value.request.post_data_json
    assert sent["series"] == [series]  # each column under the kind the model reads it as
    expect(page.locator("#fc-csv-note")).to_have_text("Columns not used by this model (not sent): note.")

    covariate_chart = page.locator('#fc-charts .covariate-chart[data-covariate="temperature"]')
    expect(covariate_chart).to_have_count(1)
    expect(covariate_chart).to_have_attribute("data-series", "temperature (observed)|temperature (known ahead)")
    assert covariate_chart.locator("canvas").evaluate(INKED_PIXELS_JS) > 300
    with covariate_server.client() as client:
        direct = client.post("/v1/forecast", json={**sent, "series": [series]})
    assert direct.status_code == 200
    assert answer.value.json()["forecasts"] == direct.json()["forecasts"]
    snapshot(page.locator("#forecast"), tmp_path / "covariates.png", copy_to="/tmp/dashboard-covariates.png")
    assert log.problems() == []


def test_a_csv_without_the_models_covariate_gets_the_apis_error_beside_the_csv(
    page: Page, covariate_server: Server, covariate_csv: Path
) -> None:
    open_dashboard(page, covariate_server.url)
    panel = page.locator("#forecast")
    text, _ = covariate_csv_text(covariate_csv)
    lines = [",".join(line.split(",")[:3] + line.split(",")[4:6]) for line in text.splitlines()]  # no temperature
    panel.get_by_label("Model", exact=True).select_option("demo-driven")
    panel.get_by_label("CSV", exact=True).fill("\n".join(lines[:61]) + "\n")
    panel.get_by_role("button", name="Forecast", exact=True).click()
    error = page.locator("#fc-csv-error")
    expect(error).to_contain_text("missing future-known covariate(s) ['temperature']")
    expect(error).to_contain_text("series a")

"""POST /v1/backtest over HTTP against a real server process: the training job's own test
metrics reproduced, the answer's shape, and hostile backtests refused small, before any forward
pass, while the server keeps answering (their time is measured by bench/backtest.py)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.support.servers import Server

HORIZON, TEST_SIZE = 12, 48  # tests.e2e.conftest.TRAIN_ARGS


def whole_series(history_csv: Path) -> list[dict[str, object]]:
    frame = pd.read_csv(history_csv)
    return [
        {"id": sid, "timestamps": rows.timestamp.tolist(), "values": rows.value.tolist()}
        for sid, rows in frame.groupby("series_id", sort=True)
    ]


def test_a_backtest_over_the_test_block_equals_the_versions_test_metrics(
    shared_server: Server, registry_template: Path, history_csv: Path
) -> None:
    """demo-gru was trained with --no-refit on these series: its published network is the one the
    job scored, so a backtest at the test block's origins gives the manifest's numbers."""
    manifest = json.loads((registry_template / "demo-gru" / "versions" / "1" / "manifest.json").read_text())
    body = {"model": "demo-gru", "last_points": TEST_SIZE, "levels": [80, 95], "series": whole_series(history_csv)}
    with shared_server.client() as client:
        response = client.post("/v1/backtest", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"] == {"name": "demo-gru", "version": 1, "arch": "gru"}
    assert answer["windows"] == 2 * (TEST_SIZE - HORIZON + 1)
    expected = manifest["metrics"]["test"]
    for method in ("model", "naive", "seasonal_naive"):
        for metric in ("mae", "mse", "rmse", "smape", "mase"):
            assert answer["metrics"][method][metric] == pytest.approx(expected[method][metric], rel=2e-4)
    assert set(answer["coverage"]) == {"80", "95"} and answer["coverage"]["80"] <= answer["coverage"]["95"]
    assert [s["id"] for s in answer["series"]] == ["a", "b"]
    assert all("forecasts" not in s for s in answer["series"])


def test_the_answer_names_each_origin_and_carries_the_forecasts_when_asked(
    shared_server: Server, history_csv: Path
) -> None:
    series = whole_series(history_csv)[:1]
    body = {"model": "demo-lstm", "alias": "staging", "origins": 4, "stride": 24, "horizon": 6}
    with shared_server.client() as client:
        response = client.post("/v1/backtest", json={**body, "return_forecasts": True, "series": series})
        metrics = client.get("/metrics").text
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"]["version"] == 2 and answer["horizon"] == 6 and answer["windows"] == 4
    stamps = pd.to_datetime(series[0]["timestamps"])  # type: ignore[arg-type]
    last = len(stamps) - 6
    assert answer["series"][0]["origins"] == [stamps[i].isoformat() for i in (last - 72, last - 48, last - 24, last)]
    forecasts = answer["series"][0]["forecasts"]
    assert len(forecasts) == 4 and all(len(row) == 6 for row in forecasts)
    assert 'forecast_backtest_windows_total{model="demo-lstm",version="2"}' in metrics


HOSTILE = [
    ("origins far beyond any series", {"origins": 10**12}, 422),
    ("a stride of zero", {"origins": 3, "stride": 0}, 422),
    ("a negative stride", {"origins": 3, "stride": -1}, 422),
    ("a fractional count", {"origins": 2.5}, 422),
    ("origins and last_points together", {"origins": 3, "last_points": 48}, 422),
    ("a horizon past the model's", {"horizon": 13}, 422),
    ("last_points shorter than the horizon", {"last_points": 5}, 422),
]


def test_hostile_backtests_get_a_small_4xx_within_a_second_while_health_answers(
    shared_server: Server, history_csv: Path
) -> None:
    series = whole_series(history_csv)[:1]
    # About 100,000 windows (25 series of 4,000 points, every origin of each) in a body under the
    # server's limits: twice the window cap.
    flood = [{"id": f"s{i}", "start": "2024-01-01T00:00:00", "values": [i % 7] * 4000} for i in range(25)]
    cases = [*((name, {**extra, "series": series}, status) for name, extra, status in HOSTILE)]
    cases.append(("twice the window cap", {"last_points": 4000, "series": flood}, 413))
    stop, health = threading.Event(), []

    def probe() -> None:
        with shared_server.client(timeout_s=5.0) as client:
            while not stop.is_set():
                started = time.perf_counter()
                health.append((client.get("/healthz").status_code, time.perf_counter() - started))
                time.sleep(0.05)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        with shared_server.client() as client:
            before = _forward_passes(client.get("/metrics").text)
            for name, extra, status in cases:
                response = client.post("/v1/backtest", json={"model": "demo-gru", **extra})
                assert response.status_code == status, (name, response.text)
                assert len(response.content) < 4096, name
                assert response.json()["message"], name
                if status == 413:
                    assert "FORECAST_MAX_BACKTEST_WINDOWS" in response.json()["message"]
            passes = _forward_passes(client.get("/metrics").text)
    finally:
        stop.set()
        prober.join()
    assert health and all(code == 200 for code, _ in health)
    assert passes == before, "a refused backtest ran forward passes"


def _forward_passes(metrics: str) -> float:
    prefix = 'forecast_batch_size_count{model="demo-gru",version="1"}'
    return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(prefix))

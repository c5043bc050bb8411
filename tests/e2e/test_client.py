"""The Python client against real server processes: a 5,000-series frame split under low limits
comes back whole and equal to single requests; a rate-limited key gets through its 429s without
losing or repeating a series; a bad series raises an error naming it; the async client answers
the same; and the client imports nothing of the server or torch."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from forecast.client import AsyncClient, Client, InvalidSeries, RetryPolicy
from tests.support.servers import Server, start_server

SERIES, POINTS = 5000, 60
KEY = "batch-key-" + "k" * 24


def frame_of(count: int = SERIES, seed: int = 0) -> pd.DataFrame:
    """Hourly series on a daily cycle, starting at different hours, as a long frame."""
    rng = np.random.default_rng(seed)
    steps = np.arange(POINTS)
    frames = []
    for index in range(count):
        values = 10 + 3 * np.sin(2 * np.pi * (steps + index) / 24) + rng.normal(0, 0.3, POINTS)
        start = pd.Timestamp("2024-01-01") + pd.Timedelta(hours=index % 48)
        frames.append(
            pd.DataFrame(
                {"series_id": f"s{index}", "timestamp": pd.date_range(start, periods=POINTS, freq="h"), "value": values}
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def split_server(tmp_path_factory: pytest.TempPathFactory, registry_template: Path) -> Iterator[Server]:
    """Limits low enough that 5,000 series take about 20 requests, and an answer bound (12,000
    numbers: 200 series x 12 steps x 5) that /v1/limits does not tell, under which the client halves
    a request with levels [80, 95] it was refused."""
    server = start_server(
        registry_template,
        tmp_path_factory.mktemp("client"),
        max_series_per_request="300",
        max_points_per_request="15000",
        max_points_per_series="1000",
        max_answer_values="12000",
        queue_limit_per_client="1200",
    )
    yield server
    server.stop()


def test_a_large_frame_is_split_under_the_limits_and_equals_single_requests(split_server: Server) -> None:
    frame = frame_of()
    with Client(split_server.url, concurrency=4) as client:
        limits = client.limits()
        assert limits.max_series_per_request == 300 and limits.max_points_per_request == 15000
        result = client.forecast(frame, model="demo-lstm", levels=[80])
    with Client(split_server.url, concurrency=8) as eager:
        # Eight requests in flight hold at most the server's 1,200 queued series per client.
        assert eager.limits().max_series_per_request == 150
    assert list(result.columns) == ["series_id", "timestamp", "demo-lstm", "demo-lstm-lo-80", "demo-lstm-hi-80"]
    assert len(result) == SERIES * 12
    assert result.groupby("series_id").size().eq(12).all() and result.series_id.nunique() == SERIES
    assert list(result.series_id.unique()) == [f"s{i}" for i in range(SERIES)], "the frame's order"
    with split_server.client() as http:
        for index in range(0, SERIES, 250):  # 20 series across the requests, one request each
            rows = frame[frame.series_id == f"s{index}"]
            body = {
                "model": "demo-lstm",
                "levels": [80],
                "series": [
                    {
                        "id": f"s{index}",
                        "timestamps": [t.isoformat() for t in rows.timestamp],
                        "values": rows.value.tolist(),
                    }
                ],
            }
            single = http.post("/v1/forecast", json=body).json()["forecasts"][0]
            mine = result[result.series_id == f"s{index}"]
            assert [t.isoformat() for t in mine.timestamp] == single["timestamps"]
            # float32 forward passes: a batch of 300 and a batch of one round apart in the 7th digit
            np.testing.assert_allclose(mine["demo-lstm"], single["mean"], rtol=1e-6)
            np.testing.assert_allclose(mine["demo-lstm-hi-80"], single["intervals"]["80"]["upper"], rtol=1e-6)


def test_the_async_client_answers_what_the_sync_one_does(split_server: Server) -> None:
    frame = frame_of(600, seed=1)

    async def run() -> pd.DataFrame:
        async with AsyncClient(split_server.url, concurrency=3) as client:
            return await client.forecast(frame, model="demo-lstm", levels=[80, 95])

    with Client(split_server.url) as client:
        expected = client.forecast(frame, model="demo-lstm", levels=[80, 95])
    pd.testing.assert_frame_equal(asyncio.run(run()), expected)


def test_the_answer_is_bounded_and_the_client_halves_what_it_refuses(split_server: Server) -> None:
    """series x horizon x (1 + 2 x levels) past FORECAST_MAX_ANSWER_VALUES is a 413 naming the
    sizes, before any forward pass; the client, which cannot know the model's horizon, halves such
    a request until it fits, and the frame is whole."""
    frame = frame_of(250, seed=5)
    rows = [(sid, r) for sid, r in frame.groupby("series_id", sort=False)]
    series = [
        {"id": sid, "timestamps": [t.isoformat() for t in r.timestamp], "values": r.value.tolist()} for sid, r in rows
    ]
    with split_server.client() as http:
        passes = _forward_passes(http)
        over = http.post("/v1/forecast", json={"model": "demo-lstm", "levels": [80, 95], "series": series})
        assert over.status_code == 413 and over.json()["error"] == "too_large", over.text
        assert "15,000 numbers" in over.json()["message"] and "FORECAST_MAX_ANSWER_VALUES" in over.json()["message"]
        assert _forward_passes(http) == passes, "the refused request ran a forward pass"
    with Client(split_server.url) as client:
        result = client.forecast(frame, model="demo-lstm", levels=[80, 95])
    assert result.groupby("series_id").size().eq(12).all() and result.series_id.nunique() == 250


def _forward_passes(http: httpx.Client) -> float:
    metrics = http.get("/metrics").text
    return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("forecast_batch_size_count"))


def test_a_bad_series_raises_an_error_that_names_it(split_server: Server) -> None:
    """Refused by the server (timestamps off the model's hourly grid), and by the client before
    sending (an infinite value, which JSON cannot carry): the same typed error either way."""
    frame = frame_of(400, seed=2)
    off_grid = frame.copy()
    off_grid.loc[off_grid.series_id == "s321", "timestamp"] += pd.Timedelta(minutes=30)
    off_grid.loc[(off_grid.series_id == "s321") & (off_grid.index % 2 == 0), "timestamp"] += pd.Timedelta(minutes=7)
    infinite = frame.copy()
    infinite.loc[infinite.series_id == "s123", "value"] = np.inf
    with Client(split_server.url) as client:
        for bad, name in ((off_grid, "s321"), (infinite, "s123")):
            with pytest.raises(InvalidSeries) as raised:
                client.forecast(bad, model="demo-lstm")
            assert raised.value.series_id == name and raised.value.status == 422, raised.value.message


def test_a_rate_limited_key_gets_through_without_losing_or_repeating_a_series(
    tmp_path: Path, registry_template: Path
) -> None:
    server = start_server(
        registry_template,
        tmp_path,
        api_keys=f"batch:forecast:{KEY}",
        rate_limit_series="1500/2 seconds",
        max_series_per_request="250",
    )
    try:
        frame = frame_of(4000, seed=3)
        with Client(server.url, api_key=KEY, concurrency=4, retry=RetryPolicy(attempts=20)) as client:
            result = client.forecast(frame, model="demo-lstm")
            retried = client.retried
    finally:
        server.stop()
    assert result.groupby("series_id").size().eq(12).all()
    assert sorted(result.series_id.unique()) == sorted(f"s{i}" for i in range(4000))
    assert retried[429] > 0, "the limit was never reached: the test would show nothing"


def test_covariates_go_by_kind_and_the_future_rows_carry_the_horizon(
    tmp_path: Path, covariate_registry: Path, covariate_csv: Path
) -> None:
    """demo-driven reads a past `load`, a future-known `temperature` and a static `region`: the
    frame's rows after each series' last value (the value empty) give the horizon's temperature,
    and the answer equals a request written by hand."""
    history = pd.read_csv(covariate_csv, parse_dates=["timestamp"])
    rng = np.random.default_rng(4)
    ahead = []
    for sid, rows in history.groupby("series_id", sort=False):
        stamps = pd.date_range(rows.timestamp.iloc[-1], periods=13, freq="h")[1:]
        ahead.append(
            pd.DataFrame(
                {
                    "series_id": sid,
                    "timestamp": stamps,
                    "value": np.nan,
                    "temperature": rng.normal(0, 2, 12).round(2),
                    "load": np.nan,
                    "region": rows.region.iloc[0],
                }
            )
        )
    frame = pd.concat([history, *ahead]).sort_values(["series_id", "timestamp"], kind="stable")
    server = start_server(covariate_registry, tmp_path)
    try:
        with Client(server.url) as client:
            result = client.forecast(
                frame,
                model="demo-driven",
                past_covariates=["load"],
                future_covariates=["temperature"],
                static_covariates=["region"],
            )
        rows = frame[frame.series_id == "b"]
        known = rows[rows.value.notna()]
        body = {
            "model": "demo-driven",
            "series": [
                {
                    "id": "b",
                    "timestamps": [t.isoformat() for t in known.timestamp],
                    "values": known.value.tolist(),
                    "past_covariates": {"load": known.load.tolist()},
                    "future_covariates": {"temperature": rows.temperature.tolist()},
                    "static_covariates": {"region": known.region.iloc[0]},
                }
            ],
        }
        with server.client() as http:
            single = http.post("/v1/forecast", json=body).json()["forecasts"][0]
    finally:
        server.stop()
    assert result.groupby("series_id").size().to_dict() == {"a": 12, "b": 12}
    np.testing.assert_allclose(result[result.series_id == "b"]["demo-driven"], single["mean"], rtol=1e-6)


def test_the_client_imports_nothing_of_the_server_or_torch() -> None:
    code = (
        "import sys, forecast.client; "
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('api', 'forecast.serving', 'forecast.training', "
        "'forecast.registry', 'forecast.model'))]; print(bad); sys.exit(1 if bad else 0)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stdout + run.stderr

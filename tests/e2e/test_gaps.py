"""Data as users bring it, over real HTTP: a business-day file with holidays, empty cells and a
new series trains through the real CLI; the server forecasts business days only, takes gaps as
nulls or as omitted timestamps (the same forecast either way), pads a 3-point series and says so,
and refuses only a series with too little signal, naming it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support.cli import manifest
from tests.support.servers import Server, run_cli, start_server

INPUT_SIZE, HORIZON = 15, 5  # three business weeks in, one out
TRAIN_ARGS = [
    "--input-size",
    str(INPUT_SIZE),
    "--horizon",
    str(HORIZON),
    "--hidden-size",
    "16",
    "--val-size",
    "20",
    "--test-size",
    "20",
    "--max-epochs",
    "3",
    "--seed",
    "0",
    "--device",
    "cpu",
    "--quiet",
]


def business_day_frame() -> pd.DataFrame:
    """Two weekday series with a weekly cycle, public holidays absent (missing timestamps on the
    B grid) and a few empty cells, beside a new series of 12 business days."""
    rng = np.random.default_rng(3)
    days = pd.bdate_range("2023-01-02", periods=300)
    holidays = days[rng.choice(np.arange(5, 295), 8, replace=False)]
    frames = []
    for index, series_id in enumerate(("store-1", "store-2", "new-store")):
        steps = np.arange(len(days))
        values = 50 + 10 * index + 8 * np.sin(2 * np.pi * steps / 5) + 0.05 * steps + rng.normal(0, 1, len(days))
        frame = pd.DataFrame({"series_id": series_id, "timestamp": days, "value": values})
        frame = frame[~frame.timestamp.isin(holidays)]
        if series_id == "new-store":
            frame = frame.iloc[-12:]
        else:
            frame.loc[frame.sample(6, random_state=index).index, "value"] = np.nan
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gaps")
    data = root / "shops.csv"
    business_day_frame().to_csv(data, index=False)
    registry = root / "registry"
    result = run_cli("train", "--data", str(data), "--name", "shops", "--arch", "gru", *TRAIN_ARGS, registry=registry)
    assert "series feeding each block" in result.stderr  # the new store fed only what it could
    return registry


@pytest.fixture(scope="module")
def server(registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(registry, tmp_path_factory.mktemp("gaps-logs"))
    yield running
    running.stop()


def _forecast(server: Server, *series: dict[str, object]) -> list[dict[str, object]]:
    with server.client() as client:
        response = client.post("/v1/forecast", json={"model": "shops", "series": list(series)})
    assert response.status_code == 200, response.text
    return list(response.json()["forecasts"])


def _nulls(values: pd.Series) -> list[float | None]:
    """JSON's missing value: null where the frame has NaN."""
    return [None if np.isnan(v) else float(v) for v in values]


def _history() -> pd.DataFrame:
    return business_day_frame().query("series_id == 'store-1'")


def test_the_model_is_on_business_days_and_its_forecast_skips_weekends(server: Server, registry: Path) -> None:
    assert manifest(registry, "shops", 1)["freq"] == "B"
    history = _history()
    (forecast,) = _forecast(
        server, {"id": "store-1", "timestamps": [str(t) for t in history.timestamp], "values": _nulls(history.value)}
    )
    stamps = pd.DatetimeIndex(forecast["timestamps"])  # type: ignore[arg-type]
    last = history.timestamp.iloc[-1]
    assert list(stamps) == list(pd.bdate_range(last + pd.offsets.BDay(), periods=HORIZON))
    assert (stamps.dayofweek < 5).all()


def test_gaps_posted_as_nulls_or_omitted_timestamps_give_the_same_forecast(server: Server) -> None:
    history = _history().iloc[-60:]
    full = pd.bdate_range(history.timestamp.iloc[0], history.timestamp.iloc[-1])
    on_grid = history.set_index("timestamp").value.reindex(full)  # holidays and empty cells: NaN
    on_grid.iloc[-3] = np.nan  # and one inside the input window for sure
    gaps = int(on_grid.iloc[-INPUT_SIZE:].isna().sum())  # `missing` counts the window's
    with_nulls = {
        "id": "store-1",
        "timestamps": [str(t) for t in full],
        "values": _nulls(on_grid),
    }
    observed = on_grid.dropna()
    omitted = {"id": "store-1", "timestamps": [str(t) for t in observed.index], "values": observed.tolist()}
    (by_nulls,) = _forecast(server, with_nulls)
    (by_omission,) = _forecast(server, omitted)
    assert by_nulls["missing"] == by_omission["missing"] == gaps
    assert by_nulls["padded"] == by_omission["padded"] == 0
    assert by_nulls["timestamps"] == by_omission["timestamps"]
    np.testing.assert_allclose(by_nulls["mean"], by_omission["mean"], rtol=0, atol=1e-9)  # type: ignore[arg-type]
    assert np.isfinite(by_nulls["mean"]).all()  # type: ignore[arg-type]


def test_a_three_point_series_is_padded_and_marked(server: Server) -> None:
    days = pd.bdate_range("2024-06-03", periods=3)
    forecasts = _forecast(
        server,
        {"id": "brand-new", "timestamps": [str(t) for t in days], "values": [40.0, 42.0, 41.0]},
        {"id": "store-1", "start": "2024-01-01", "freq": "B", "values": [50.0 + (i % 5) for i in range(INPUT_SIZE)]},
    )
    assert [(f["id"], f["padded"]) for f in forecasts] == [("brand-new", INPUT_SIZE - 3), ("store-1", 0)]
    assert np.isfinite(forecasts[0]["mean"]).all()  # type: ignore[arg-type]
    assert forecasts[0]["timestamps"][0] == "2024-06-06T00:00:00"  # type: ignore[index]


def test_only_a_series_with_too_little_signal_is_refused_by_name(server: Server) -> None:
    values = [50.0 if i % 15 == 0 else None for i in range(61)]  # 5 of 61 observed
    with server.client() as client:
        response = client.post(
            "/v1/forecast",
            json={
                "model": "shops",
                "series": [
                    {"id": "fine", "start": "2024-01-01", "freq": "B", "values": [50.0] * 20},
                    {"id": "sensor-off", "start": "2024-01-01", "freq": "B", "values": values},
                ],
            },
        )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["series_id"] == "sensor-off"
    assert "too little signal" in body["message"] and "56 of the 61" in body["message"]

"""M4 Hourly the way the held-back check uses it, on the given training part: the last 48 points
of each series are hidden, the rest is the user's history (start 2000-01-01 00:00, hourly). The
real `forecast train` command fits it with its defaults, the real server forecasts each whole
history posted in the start/freq form, and the forecasts are scored on the hidden points with
M4's definitions. The seasonal naive and statsforecast's MSTL are scored on the same points.

Used by bench/accuracy.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from bench.common import SHARED_DATA
from bench.serve import Server

HORIZON, INPUT_SIZE, SEASON = 48, 168, 24
START = "2000-01-01T00:00:00"
NAIVE2 = {"smape": 18.383, "mase": 2.395}  # M4's published Naive2 on Hourly, OWA's reference
# The issue's figures on M4's own held-back test values (not this hidden block): for reference.
ANCHORS_HELD_BACK_OWA = {
    "product_before_lstm": 0.675,
    "product_before_gru": 0.605,
    "seasonal_naive": 0.628,
    "statsforecast_mstl": 0.604,
    "neuralforecast_lstm": 0.681,
    "es_rnn_m4_winner": 0.440,
}


@dataclass(slots=True)
class Split:
    data: Path  # long CSV of the known part
    known: dict[str, np.ndarray]
    hidden: dict[str, np.ndarray]


def split(workdir: Path) -> Split:
    train = pd.read_csv(SHARED_DATA / "m4" / "m4_hourly_train.csv", index_col=0)
    known, hidden, frames = {}, {}, []
    for series_id in train.index:
        values = train.loc[series_id].dropna().to_numpy(np.float64)
        known[series_id], hidden[series_id] = values[:-HORIZON], values[-HORIZON:]
        stamps = pd.date_range(START, periods=len(known[series_id]), freq="h")
        frames.append(pd.DataFrame({"series_id": series_id, "timestamp": stamps, "value": known[series_id]}))
    data = workdir / "m4_hourly_known.csv"
    pd.concat(frames).to_csv(data, index=False)
    return Split(data, known, hidden)


def score(forecasts: dict[str, np.ndarray], parts: Split) -> dict[str, float]:
    """M4's sMAPE (percent), MASE (scaled by the in-sample seasonal difference, period 24) and OWA."""
    smapes, mases = [], []
    for series_id, actual in parts.hidden.items():
        forecast, history = forecasts[series_id], parts.known[series_id]
        smapes.append(np.mean(200.0 * np.abs(actual - forecast) / (np.abs(actual) + np.abs(forecast))))
        mases.append(np.mean(np.abs(actual - forecast)) / np.mean(np.abs(history[SEASON:] - history[:-SEASON])))
    smape, mase = float(np.mean(smapes)), float(np.mean(mases))
    return {"smape": smape, "mase": mase, "owa": owa(smape, mase)}


def owa(smape: float, mase: float) -> float:
    return 0.5 * (smape / NAIVE2["smape"] + mase / NAIVE2["mase"])


def seasonal_naive(parts: Split) -> dict[str, np.ndarray]:
    return {sid: np.tile(history[-SEASON:], HORIZON // SEASON) for sid, history in parts.known.items()}


def mstl(parts: Split) -> tuple[dict[str, np.ndarray], float]:
    """statsforecast's MSTL, seasons 24 and 168, AutoETS on the trend (the issue's anchor)."""
    from statsforecast import StatsForecast
    from statsforecast.models import MSTL, AutoETS

    frame = pd.concat(
        pd.DataFrame({"unique_id": sid, "ds": np.arange(len(history)), "y": history})
        for sid, history in parts.known.items()
    )
    model = MSTL(season_length=[SEASON, 168], trend_forecaster=AutoETS(model="ZZN"))
    started = time.perf_counter()
    predicted = StatsForecast(models=[model], freq=1, n_jobs=1).forecast(df=frame, h=HORIZON)
    seconds = time.perf_counter() - started
    predicted = predicted.reset_index() if "unique_id" not in predicted.columns else predicted
    return {str(sid): rows["MSTL"].to_numpy() for sid, rows in predicted.groupby("unique_id")}, seconds


def train_with_cli(parts: Split, registry: Path, name: str, arch: str, extra: list[str]) -> float:
    """The user's command (the issue's), defaults otherwise; seconds of wall time."""
    command = [
        sys.executable,
        "-m",
        "forecast.cli",
        "train",
        "--data",
        str(parts.data),
        "--name",
        name,
        "--arch",
        arch,
        "--horizon",
        str(HORIZON),
        "--input-size",
        str(INPUT_SIZE),
        "--freq",
        "h",
        "--registry",
        str(registry),
        "--quiet",
        *extra,
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    return time.perf_counter() - started


def forecast_with_api(parts: Split, registry: Path, name: str) -> dict[str, np.ndarray]:
    """Every whole history posted to the real server in the start/freq form, 100 series a request,
    to the name's one version: also an ablation the baseline gate kept out of production."""
    server = Server(registry)
    try:
        forecasts: dict[str, np.ndarray] = {}
        ids = list(parts.known)
        with httpx.Client(base_url=server.url, timeout=120) as client:
            for first in range(0, len(ids), 100):
                series = [
                    {"id": sid, "start": START, "freq": "h", "values": parts.known[sid].tolist()}
                    for sid in ids[first : first + 100]
                ]
                response = client.post("/v1/forecast", json={"model": name, "version": 1, "series": series})
                response.raise_for_status()
                forecasts.update({f["id"]: np.asarray(f["mean"]) for f in response.json()["forecasts"]})
        return forecasts
    finally:
        server.stop()


def cli_and_api(parts: Split, registry: Path, arch: str, extra: list[str], *, name: str) -> dict[str, Any]:
    seconds = train_with_cli(parts, registry, name, arch, extra)
    gate = json.loads((registry / name / "versions" / "1" / "manifest.json").read_text())["gate"]
    return {
        "arch": arch,
        "flags": extra,
        "train_s": round(seconds, 1),
        "passed_gate": gate["passed"],
        **score(forecast_with_api(parts, registry, name), parts),
    }

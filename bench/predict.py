"""Batch scoring benchmark: `forecast predict` on M4 Hourly's given training part (414 series,
H=48) beside the same forecasts through the HTTP API from the Python client, in one run on one
machine, and whether the two tables are equal.

The served LSTM is trained by the real `forecast train` (bench/backtest.py's training: one
epoch, each series less its last 48 points): the benchmark measures scoring speed, not accuracy.

    python bench/predict.py [--series N] [--quick]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.backtest import MODEL, load_panel, train
from bench.common import emit, machine
from bench.m4_hourly import START
from bench.serve import Server
from forecast.client import Client

LEVELS = [80, 95]


def data_file(values: dict[str, np.ndarray], path: Path) -> pd.DataFrame:
    frame = pd.concat(
        pd.DataFrame({"series_id": sid, "timestamp": pd.date_range(START, periods=len(v), freq="h"), "value": v})
        for sid, v in values.items()
    )
    frame.to_csv(path, index=False)
    return frame


def run_predict(data: Path, registry: Path, out: Path) -> dict[str, Any]:
    """The command in a fresh process: its own reported seconds (loading the version and
    forecasting) and the wall time of the whole command (interpreter, imports, reading the file)."""
    command = [
        sys.executable,
        "-m",
        "forecast.cli",
        "predict",
        "--data",
        str(data),
        "--name",
        MODEL,
        "--out",
        str(out),
        "--quiet",
        "--registry",
        str(registry),
        "--levels",
        *map(str, LEVELS),
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    reported = re.search(r"in ([0-9.]+) s", done.stdout)
    return {
        "wall_s": round(wall, 2),
        "scoring_s": float(reported.group(1)) if reported else None,
        "line": done.stdout.strip(),
    }


def compare(written: pd.DataFrame, served: pd.DataFrame) -> dict[str, Any]:
    columns = [MODEL, *(f"{MODEL}-{side}-{level}" for level in LEVELS for side in ("lo", "hi"))]
    same_keys = written[["series_id", "timestamp"]].equals(served[["series_id", "timestamp"]])
    diff = np.abs(written[columns].to_numpy() - served[columns].to_numpy())
    scale = np.maximum(np.abs(served[columns].to_numpy()), 1e-12)
    return {"same_rows": bool(same_keys), "max_rel_diff": float((diff / scale).max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=None, help="the first N series (default: all 414)")
    parser.add_argument("--quick", action="store_true", help="40 series; prints, writes nothing")
    args = parser.parse_args()
    panel = load_panel(40 if args.quick else args.series, 1)
    workdir = Path(tempfile.mkdtemp(prefix="bench-predict-"))
    try:
        trained = train(panel, workdir, workdir / "registry")
        frame = data_file(panel.values, workdir / "m4_hourly.csv")
        predicted = run_predict(workdir / "m4_hourly.csv", workdir / "registry", workdir / "forecasts.parquet")
        written = pd.read_parquet(workdir / "forecasts.parquet")
        server = Server(workdir / "registry")
        try:
            with Client(server.url) as client:
                client.limits()  # read once, as any first call would
                started = time.perf_counter()
                served = client.forecast(frame, model=MODEL, levels=LEVELS)
                client_s = time.perf_counter() - started
                requests = len(frame.series_id.unique()) // client.limits().max_series_per_request + 1
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    series = len(panel.values)
    scoring_s = predicted["scoring_s"] or predicted["wall_s"]
    result = {
        "machine": machine(),
        "data": {"set": "M4 Hourly, given training part", "series": series, "horizon": 48, "levels": LEVELS},
        "model": {"flags": trained.flags, "train_s": trained.train_s, "network": trained.network},
        "predict": {**predicted, "series_per_s": round(series / scoring_s, 1)},
        "client_over_http": {
            "seconds": round(client_s, 3),
            "series_per_s": round(series / client_s, 1),
            "requests_at_least": requests,
        },
        "equal": compare(written, served),
    }
    if args.quick:
        print(result)
    else:
        emit("predict", result)


if __name__ == "__main__":
    main()

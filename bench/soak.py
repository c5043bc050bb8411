"""Soak: the real server on the serving benchmark's small model (bench/serve.py) under wrk, 64
connections of one series per request, for `--duration-s` (600 s by default). Halfway, a new
version is published and the production alias moved to it with the real commands, `forecast
train` and `forecast models promote`, into the server's own registry, which picks them up by
polling. Every second it samples the server's /metrics (answered forecasts by version and
status) and its resident memory, so per-second throughput is the server's own count.

It prints JSON: median requests/s, the slowest second and its ratio to the median, wrk's
timeouts, socket errors and non-2xx answers, the server's RSS at the start, end and peak, when
the new version was published, promoted and first served.

    python bench/soak.py [--duration-s 600] [--connections 64] [--publish-at-s DURATION/2]

By default the new version is trained before the load starts, in a copy of the registry, and
published halfway by the registry's own mechanism (its folder written beside the versions and
renamed into place), as a training job on another machine publishes: the server's two cores
then measure the server alone through the publish, the load, the warm-up and the switch. With
`--train-during-load` the trainer runs halfway on this machine instead, at the lowest CPU
priority (nice 19): its seconds are marked in the output, and the slowest second outside them
is reported beside the overall one.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, machine
from bench.serve import MODELS, Server, request_body, short_training, wrk
from forecast.series.tables import BUNDLED_SETS

MODEL = "small"
CLI = [sys.executable, "-m", "forecast.cli"]
# One short epoch, as the serving benchmark trains: serving speed does not depend on accuracy.
TRAINING = short_training(MODEL)
_SAMPLE = re.compile(r"^forecast_requests_total\{(?P<labels>[^}]*)\} (?P<count>\S+)$", re.M)
_LABEL = re.compile(r'(\w+)="([^"]*)"')


@dataclass(slots=True)
class Sample:
    t_s: float  # since wrk started
    answered: dict[str, float]  # version -> 200s so far
    other_statuses: dict[str, float]  # status -> non-200 answers so far
    rss_mib: float
    cpu_ticks: tuple[int, int]  # (steal, total) jiffies of the whole machine so far


@dataclass(slots=True)
class Publication:
    """The mid-run publish: times in seconds since wrk started."""

    started_s: float | None = None
    trained_s: float | None = None
    promoted_s: float | None = None
    error: str | None = None
    output: list[str] = field(default_factory=list)


def forecast_cli(*args: str, registry: Path, nice: bool = False) -> str:
    argv = [*(["nice", "-n", "19"] if nice else []), *CLI, *args, "--registry", str(registry)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        raise RuntimeError(f"forecast {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout.strip()


def train(data: Path, config: Path, registry: Path, *extra: str, nice: bool = False) -> str:
    return forecast_cli(
        "train",
        "--data",
        str(data),
        "--name",
        MODEL,
        "--config",
        str(config),
        "--force",
        "--quiet",
        *extra,
        registry=registry,
        nice=nice,
    )


def publish_trained(staged: Path, registry: Path, clock: float, record: Publication) -> None:
    """Version 2, trained beforehand (elsewhere, as it were), into the served registry: written
    beside the versions, then renamed into place, so the server sees it whole or not at all;
    then the production alias moved to it."""
    try:
        record.started_s = time.monotonic() - clock
        incoming = registry / MODEL / ".staging" / "soak-2"
        shutil.copytree(staged, incoming)
        incoming.rename(registry / MODEL / "versions" / "2")
        record.trained_s = time.monotonic() - clock
        record.output.append(forecast_cli("models", "promote", MODEL, "2", registry=registry))
        record.promoted_s = time.monotonic() - clock
    except (OSError, RuntimeError) as exc:
        record.error = str(exc)


def publish(data: Path, config: Path, registry: Path, clock: float, record: Publication) -> None:
    """A new version (another seed), then the production alias moved to it."""
    try:
        record.started_s = time.monotonic() - clock
        record.output.append(train(data, config, registry, "--seed", "1", nice=True))
        record.trained_s = time.monotonic() - clock
        record.output.append(forecast_cli("models", "promote", MODEL, "2", registry=registry))
        record.promoted_s = time.monotonic() - clock
    except RuntimeError as exc:
        record.error = str(exc)


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, flags=re.M)
    return int(match.group(1)) / 1024 if match else float("nan")


def cpu_ticks() -> tuple[int, int]:
    """(steal, total) from /proc/stat: time the hypervisor gave this VM's vCPUs to someone else,
    the one stall a process cannot cause or see from inside."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (fields[7] if len(fields) > 7 else 0), sum(fields)


def sample(client: httpx.Client, pid: int, clock: float) -> Sample:
    text = client.get("/metrics").text
    answered: dict[str, float] = {}
    others: dict[str, float] = {}
    for match in _SAMPLE.finditer(text):
        labels = dict(_LABEL.findall(match["labels"]))  # in whatever order the client writes them
        if labels.get("model") != MODEL:
            continue
        version, status, count = labels.get("version", ""), labels.get("status", ""), float(match["count"])
        if status == "200":
            answered[version] = answered.get(version, 0.0) + count
        else:
            others[status] = others.get(status, 0.0) + count
    return Sample(time.monotonic() - clock, answered, others, rss_mib(pid), cpu_ticks())


def per_second(samples: list[Sample], duration_s: float) -> list[dict[str, float]]:
    """Answered forecasts per second between consecutive samples; the first interval (wrk
    opening its connections) and any that ends after wrk's duration (wrk closing its
    connections) are left out."""
    rates = []
    for before, after in itertools.pairwise(samples[1:]):
        if after.t_s > duration_s:
            break
        done = sum(after.answered.values()) - sum(before.answered.values())
        steal = after.cpu_ticks[0] - before.cpu_ticks[0]
        ticks = max(1, after.cpu_ticks[1] - before.cpu_ticks[1])
        rates.append(
            {
                "t_s": round(after.t_s, 2),
                "requests_per_s": done / (after.t_s - before.t_s),
                "cpu_steal_pct": round(100 * steal / ticks, 1),
            }
        )
    return rates


def socket_errors(summary: str) -> dict[str, int]:
    """wrk's 'connect 0, read 0, write 0, timeout 0' (absent when there were none)."""
    found = {kind: 0 for kind in ("connect", "read", "write", "timeout")}
    found.update({kind: int(count) for kind, count in re.findall(r"(\w+) (\d+)", summary)})
    return found


def summarize(samples: list[Sample], record: Publication, load: dict[str, Any], duration_s: float) -> dict[str, Any]:
    rates = per_second(samples, duration_s)
    values = [r["requests_per_s"] for r in rates]
    median = statistics.median(values)
    if median == 0:
        raise RuntimeError(f"no forecast answered; the server's last counts: {samples[-1]}")
    training = (record.started_s or float("inf"), record.trained_s or float("inf"))
    outside = [r["requests_per_s"] for r in rates if not training[0] <= r["t_s"] <= training[1] + 1]
    served_v2 = next((s.t_s for s in samples if s.answered.get("2", 0) > 0), None)
    errors = socket_errors(load["socket_errors"])
    rss = [s.rss_mib for s in samples]
    return {
        "median_requests_per_s": round(median, 1),
        "min_requests_per_s": round(min(values), 1),
        "min_to_median": round(min(values) / median, 3),
        "min_requests_per_s_outside_training": round(min(outside), 1) if outside else None,
        "min_to_median_outside_training": round(min(outside) / median, 3) if outside else None,
        "timeouts": errors["timeout"],
        "socket_errors": errors,
        "non_2xx": load["failed"],
        "server_non_200_by_status": samples[-1].other_statuses,
        "answered_by_version": samples[-1].answered,
        "wrk": {key: round(value, 2) for key, value in load.items() if isinstance(value, float)},
        "rss_mib": {"start": round(rss[0], 1), "end": round(rss[-1], 1), "max": round(max(rss), 1)},
        "publication": {
            "train_started_s": record.started_s,
            "trained_s": record.trained_s,
            "promoted_s": record.promoted_s,
            "first_served_v2_s": served_v2,
            # False when training outlasted the load (a short run on a busy machine): no swap was
            # measured, so run longer or pass an earlier --publish-at-s.
            "swapped_during_load": served_v2 is not None and served_v2 <= duration_s,
            "error": record.error,
        },
        "cpu_steal_pct": {
            "max": max(r["cpu_steal_pct"] for r in rates),
            "median": statistics.median(r["cpu_steal_pct"] for r in rates),
            "at_the_slowest_second": min(rates, key=lambda r: r["requests_per_s"])["cpu_steal_pct"],
        },
        "per_second": [
            {"t_s": r["t_s"], "requests_per_s": round(r["requests_per_s"], 1), "cpu_steal_pct": r["cpu_steal_pct"]}
            for r in rates
        ],
        "rss_mib_per_second": [round(value, 1) for value in rss],
    }


def soak(
    workdir: Path, duration_s: float, connections: int, publish_at_s: float, train_during_load: bool
) -> dict[str, Any]:
    frame = pd.read_csv(BUNDLED_SETS["etth1"])[["date", "OT"]].iloc[:4000]
    data = workdir / "ett.csv"
    frame.to_csv(data, index=False)
    config = workdir / "training.json"
    config.write_text(json.dumps(TRAINING))
    registry = workdir / "registry"
    train(data, config, registry, "--promote")  # version 1, production
    body = workdir / "body.json"
    body.write_text(
        request_body(MODELS[MODEL]["input_size"], 1, frame["OT"].to_numpy()).replace(
            '"model":"m"', f'"model":"{MODEL}"'
        )
    )
    staged = workdir / "side" / MODEL / "versions" / "2"
    if not train_during_load:  # version 2 of the same registry, trained in a copy of it
        shutil.copytree(registry, workdir / "side")
        train(data, config, workdir / "side", "--seed", "1")
    server = Server(registry)
    try:
        load: dict[str, Any] = {}
        loader = threading.Thread(target=lambda: load.update(wrk(server.url, body, connections, duration_s)))
        record, samples = Publication(), []
        with httpx.Client(base_url=server.url, timeout=10) as client:
            clock = time.monotonic()
            if train_during_load:
                publisher = threading.Thread(target=publish, args=(data, config, registry, clock, record))
            else:
                publisher = threading.Thread(target=publish_trained, args=(staged, registry, clock, record))
            loader.start()
            next_at = clock
            while loader.is_alive():
                samples.append(sample(client, server.process.pid, clock))
                if publisher.ident is None and time.monotonic() - clock >= publish_at_s:
                    publisher.start()
                next_at += 1.0
                time.sleep(max(0.0, next_at - time.monotonic()))  # the sampling period, not a sync
            loader.join()
            samples.append(sample(client, server.process.pid, clock))
            if publisher.ident is not None:
                publisher.join()
    finally:
        server.stop()
    if not load:
        raise RuntimeError("wrk did not finish; see its output above")
    result = summarize(samples, record, load, duration_s)
    result["publication"]["commands_output"] = record.output
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration-s", type=float, default=600.0, help="seconds of load (wrk's -d)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--train-during-load", action="store_true", help="train the new version on this machine, halfway"
    )
    parser.add_argument("--publish-at-s", type=float, help="when the new version's training starts (default: halfway)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/soak.py needs wrk: apt-get install wrk (make bench-tools)")
    publish_at_s = args.duration_s / 2 if args.publish_at_s is None else args.publish_at_s
    workdir = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    try:
        result = soak(workdir, args.duration_s, args.connections, publish_at_s, args.train_during_load)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    settings = {
        "duration_s": args.duration_s,
        "connections": args.connections,
        "publish_at_s": publish_at_s,
        "train_during_load": args.train_during_load,
        "series_per_request": 1,
        "model": {"name": MODEL, **MODELS[MODEL]},
    }
    name = f"soak_{round(args.duration_s)}s" + ("_train_during_load" if args.train_during_load else "")
    emit(name, {"machine": machine(), "settings": settings, **result})


if __name__ == "__main__":
    main()

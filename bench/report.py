"""Render the latest bench/results/*.json as the Markdown tables docs/benchmarks.md shows.

python bench/report.py > /tmp/tables.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _coverage(row: dict[str, Any]) -> str:
    coverage = row.get("coverage") or {}
    return f"{coverage['80']:.2f} / {coverage['95']:.2f}" if "80" in coverage and "95" in coverage else ""


def _gate(row: dict[str, Any]) -> str:
    passed = row.get("passed_gate")
    return "" if passed is None else ("yes" if passed else "no (not production)")


def accuracy() -> list[str]:
    lines = []
    ett = _load("accuracy_ett") or _load("accuracy")
    if ett and "etth1" in ett:
        lines += [
            "| ETTh1 OT | variant | H | L | anchor | segment | members | MSE model | MSE naive | MSE seasonal naive | MAE model | coverage 80 / 95 | anchors (MSE) | s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in ett["etth1"]:
            anchors = ", ".join(f"{k} {v}" for k, v in row["anchors_mse"].items())
            lines.append(
                f"| {row['arch'].upper()} | {row.get('variant', 'defaults')} | {row['horizon']} | {row['input_size']} | "
                f"{row.get('anchor_period', 1)} | {row.get('segment_length', 1)} | {row.get('ensemble', 1)} | "
                f"**{row['mse']['model']:.4f}** | {row['mse']['naive']:.4f} | {row['mse']['seasonal_naive']:.4f} | "
                f"{row['mae']['model']:.4f} | {_coverage(row)} | {anchors} | {row['seconds']:.0f} |"
            )
        lines.append("")
    m4h = _load("accuracy_m4h") or _load("accuracy")
    if m4h and "m4_hourly" in m4h:
        hourly = m4h["m4_hourly"]
        lines += [
            "| M4 Hourly, hidden last 48 | variant | sMAPE | MASE | OWA | train s (2 cores) | past the gate |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, row in hourly["baselines"].items():
            lines.append(
                f"| {name} | | {row['smape']:.2f} | {row['mase']:.3f} | {row['owa']:.3f} | {row.get('seconds', 0)} | |"
            )
        for row in hourly["runs"]:
            lines.append(
                f"| {row['arch'].upper()} | {row['variant']} | {row['smape']:.2f} | {row['mase']:.3f} | "
                f"**{row['owa']:.3f}** | {row['train_s']:.0f} | {_gate(row)} |"
            )
        lines.append("")
    m4 = _load("accuracy_m4") or _load("accuracy")
    if m4 and "m4_weekly" in m4:
        lines += [
            "| M4 Weekly | H | L | sMAPE model | sMAPE naive | MASE model | MASE naive | coverage 80 / 95 | beats naive |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for row in m4["m4_weekly"]:
            lines.append(
                f"| {row['arch'].upper()} | {row['horizon']} | {row['input_size']} | **{row['smape']['model']:.3f}** | "
                f"{row['smape']['naive']:.3f} | **{row['mase']['model']:.3f}** | {row['mase']['naive']:.3f} | "
                f"{row['coverage']['80']:.3f} / {row['coverage']['95']:.3f} | {'yes' if row['beats_naive'] else 'no'} |"
            )
        lines.append("")
    return lines


def train_speed() -> list[str]:
    speed = _load("train_speed")
    if not speed:
        return []
    ours = [key for key in speed["speed"][0] if key.startswith("ours_")]
    lines = [
        "| arch (2 x 128, L 168, H 24) | plain torch loop, batch 128 | "
        + " | ".join(ours)
        + " | x NeuralForecast's 250 |",
        "|---|---|" + "---|" * len(ours) + "---|",
    ]
    for row in speed["speed"]:
        cells = " | ".join(f"{row[key]['windows_per_s']:.0f} w/s" for key in ours)
        versus = " / ".join(f"{v:.1f}x" for v in row.get("speedup_vs_neuralforecast", {}).values())
        lines.append(
            f"| {row['arch'].upper()} | {row['plain_torch_batch128']['windows_per_s']:.0f} w/s | {cells} | {versus} |"
        )
    lines += [
        "",
        "| synthetic points | peak RSS | RSS before training | windows would take if materialised |",
        "|---|---|---|---|",
    ]
    for row in speed["memory"]:
        lines.append(
            f"| {row['points']:,} | {row['peak_rss_mb']:.0f} MB | {row['rss_before_training_mb']:.0f} MB | "
            f"{row['materialised_windows_would_need_mb']:,.0f} MB |"
        )
    return [*lines, ""]


def serve() -> list[str]:
    result = _load("serve")
    return serve_tables(result) if result else []


def serve_tables(result: dict[str, Any]) -> list[str]:
    lines = [
        "| model | series/request | clients | batching req/s | p50 / p99 ms | unbatched req/s | HTTP ceiling req/s | mean batch | model ceiling series/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, model in result["models"].items():
        curves = model["curves"]
        for row in curves["batching"]:
            key = (row["series_per_request"], row["connections"])
            off = next(r for r in curves["unbatched"] if (r["series_per_request"], r["connections"]) == key)
            http = next(r for r in curves["http_ceiling"] if (r["series_per_request"], r["connections"]) == key)
            lines.append(
                f"| {name} | {key[0]} | {key[1]} | {row['requests_per_s']:.1f} | {row['p50_ms']:.0f} / {row['p99_ms']:.0f} | "
                f"{off['requests_per_s']:.1f} | {http['requests_per_s']:.1f} | {row['mean_batch_size'] or 0:.1f} | "
                f"{row['model_ceiling_series_per_s']:.0f} |"
            )
    lines += ["", "| bar | measured | rounds (ratio of medians) | required | met |", "|---|---|---|---|---|"]
    bars = result["bars"]
    first, second, third = (bars[k] for k in sorted(bars))
    lines.append(
        f"| large model, 64 clients: batching / unbatched req/s | {first['value']:.2f}x | "
        f"{_rounds(first, '{:.2f}x')} | 2.5x | {first['pass']} |"
    )
    lines.append(
        f"| small model, 64 clients: share of HTTP ceiling | {second['value']:.0%} | {_rounds(second, '{:.0%}')} | "
        f"70% | {second['pass']} |"
    )
    for name in ("small", "large"):
        share = third[name]
        lines.append(
            f"| 32-series requests, {name}: share of the lower ceiling | {share['share_of_lower_ceiling']:.0%} | "
            f"{_rounds(share, '{:.0%}')} | 50% | {share['share_of_lower_ceiling'] >= 0.5} |"
        )
    return [*lines, ""]


def _rounds(bar: dict[str, Any], style: str) -> str:
    """Per-round ratios and the ratio of the medians; runs from before rounds have neither."""
    if "per_round" not in bar:
        return "-"
    rounds = " / ".join(style.format(v) for v in bar["per_round"])
    return f"{rounds} ({style.format(bar['ratio_of_medians'])})"


def backtest() -> list[str]:
    """bench/backtest.py: one rolling-origin evaluation three ways (seconds, the ratio to the
    product's), the product's overall metrics, and the hostile backtest's refusal."""
    result = _load("backtest")
    if not result:
        return []
    data, product, loop, peer = result["data"], result["product"], result["loop"], result["peer"]
    windows = f"{data['series']} series x {data['origins']} origins, H {data['horizon']}"
    lines = [f"| M4 Hourly, {windows} | s | windows/s | x the backtest's s |", "|---|---|---|---|"]
    lines.append(
        f"| POST /v1/backtest ({product['requests']} request{'s' if product['requests'] > 1 else ''}, "
        f"median of {len(product['runs_s'])}) | "
        f"**{product['seconds']:.2f}** | {product['windows_per_s']:,.0f} | 1 |"
    )
    if "seconds_with_forecasts" in product:
        with_forecasts = product["seconds_with_forecasts"]
        lines.append(
            f"| the same, return_forecasts on (1 run) | {with_forecasts:.2f} | "
            f"{product['windows'] / with_forecasts:,.0f} | {with_forecasts / product['seconds']:.1f} |"
        )
    timed = loop["extrapolated_from"]
    subset = f", 1 in {loop['every']} timed ({timed:,} windows), extrapolated" if timed else ""
    lines.append(
        f"| POST /v1/forecast per window, one client{subset} | {loop['seconds']:.1f} | "
        f"{loop['windows_per_s']:,.0f} | {loop['seconds'] / product['seconds']:.1f} |"
    )
    if "seconds" in peer:
        lines.append(
            f"| NeuralForecast {peer['version']} LSTM, cross_validation (fit apart: {peer['fit']['seconds']:.1f} s) | "
            f"{peer['seconds']:.2f} | {peer['windows_per_s']:,.0f} | {peer['seconds'] / product['seconds']:.1f} |"
        )
    else:
        lines.append(f"| NeuralForecast | {peer.get('error') or peer.get('skipped')} | | |")
    lines += ["", "| method | MAE | sMAPE | MASE |", "|---|---|---|---|"]
    for method, row in product["metrics"].items():
        lines.append(f"| {method} | {row['mae']:.1f} | {row['smape']:.2f} | {row['mase']:.3f} |")
    hostile, health = result["hostile"], result["hostile"]["healthz"]
    lines += [
        "",
        f"Hostile backtest ({hostile['windows_asked']:,} windows asked, limit {hostile['limit']:,}, "
        f"{hostile['body_mb']} MB): {'/'.join(map(str, hostile['statuses']))} in {hostile['median_refused_in_s']} s "
        f"(median); /healthz meanwhile: {health['answers']} answers, all 200: {health['all_200']}, "
        f"p50 {health['p50_ms']} ms, max {health['max_ms']} ms.",
        "",
    ]
    return lines


def gpu() -> list[str]:
    """bench/gpu_check.py runs: gpu_check.json (the latest, at the CUDA default batch size) and
    gpu_check_max_batch_64.json (the CPU default on CUDA, with the raw forward ceiling)."""
    lines: list[str] = []
    for name in ("gpu_check", "gpu_check_max_batch_64"):
        result = _load(name)
        if not result:
            continue
        machine = result["machine"]
        lines += [f"`{name}.json`: {machine['cuda']}, {machine['cpu_cores']} cores, torch {machine['torch']}", ""]
        tests = result.get("gpu_tests")
        if tests:
            lines += [f"GPU tests: {' '.join(tests['summary'])}", ""]
        forward = result.get("cuda_forward_series_per_s")
        if forward:
            batches = list(next(iter(forward.values())))
            lines += [
                "| raw CUDA forward, series/s | " + " | ".join(f"batch {b}" for b in batches) + " |",
                "|---" * (len(batches) + 1) + "|",
            ]
            lines += [
                f"| {model} | " + " | ".join(f"{rates[b]:,.0f}" for b in batches) + " |"
                for model, rates in forward.items()
            ]
            lines.append("")
        served = result.get("serve_on_cuda")
        if served and "bars" in served:
            lines += serve_tables(served)
    return lines


# The runs of bench/collection.py beside the defaults: (results file, column heading).
COLLECTION_RUNS = (
    ("collection_no_refit", "no refit"),
    ("collection_input_size_picked", "L left out (picked L)"),
    ("collection_single_member", "1 member"),
    ("collection_loss_mase", "loss mase"),
    ("collection_theta_anchor", "Theta anchor"),
    ("collection_before", "before"),
)


def collection() -> list[str]:
    """bench/collection.py: OWA by set for the product with its defaults, each ablation kept in
    bench/results, and the statistical peers measured in the same run as the defaults."""
    latest = _load("collection")
    if not latest:
        return []
    runs = [
        (label, {row["set"]: row for row in run["sets"]}) for name, label in COLLECTION_RUNS if (run := _load(name))
    ]
    head = ["set", "series", "H", "L", "history (min / median)", "product", *(label for label, _ in runs)]
    head += [
        "AutoETS",
        "AutoARIMA",
        "AutoTheta",
        "seasonal naive",
        "naive",
        "anchor",
        "beats best peer / seasonal naive",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in latest["sets"]:
        owa = {name: method["owa"] for name, method in row["methods"].items()}
        cells = [row["set"], str(row["series"]), str(row["horizon"]), str(row["product"]["input_size"])]
        cells += [f"{row['history_points']['min']} / {row['history_points']['median']}", f"**{owa['product']:.3f}**"]
        for label, sets in runs:
            other = sets.get(row["set"])
            picked = f" ({other['product']['input_size']})" if other and label.startswith("L left out") else ""
            cells.append(f"{other['methods']['product']['owa']:.3f}{picked}" if other else "")
        cells += [
            f"{owa[m]:.3f}" if m in owa else ""
            for m in ("auto_ets", "auto_arima", "auto_theta", "seasonal_naive", "naive")
        ]
        facts = row["product"]
        cells.append(f"{facts['anchor']}({facts['anchor_period']})" + ("" if facts["recurrent"] else ", alone"))
        cells.append(
            f"{'yes' if row['product_beats_best_peer'] else 'no'} / {'yes' if row['product_beats_seasonal_naive'] else 'no'}"
        )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    sys.stdout.write("\n".join(accuracy() + collection() + train_speed() + serve() + backtest() + gpu()) + "\n")


if __name__ == "__main__":
    main()

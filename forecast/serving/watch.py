"""Production watched on fresh data: a version backtested on the points that arrived after its
training data ended, through the serving pipeline (`forecast.serving.backtest`), and the result
as an accuracy record (`forecast.registry.accuracy`) for the registry, the API and the metrics.

The file holds each series' recent history: the points after the version's training data (the
ones scored) and, before them, what the windows read (the model's input size, or the whole
history). Every origin whose first forecast step comes after the training data's last instant is
scored, stride 1 unless told otherwise; a series without a whole horizon of fresh points is left
out and named.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from forecast.errors import InvalidInput
from forecast.registry.accuracy import DEFAULT_DEGRADATION_RATIO, AccuracyRecord, EvaluatedData
from forecast.registry.manifest import Manifest
from forecast.registry.store import Registry
from forecast.serving.backtest import BacktestLimits, BacktestResult, BacktestSpec, backtest
from forecast.serving.local import load_for_version, posted_series, served_here
from forecast.settings import Settings


@dataclass(frozen=True, slots=True)
class EvaluationRequest:
    name: str
    data: str  # the file of recent data
    version: int | None = None  # None: production
    stride: int = 1
    static_data: str | None = None
    degradation_ratio: float = DEFAULT_DEGRADATION_RATIO


@dataclass(slots=True)
class Evaluation:
    record: AccuracyRecord
    left_out: list[str] = field(default_factory=list)  # series with no whole horizon of fresh points


def _fresh_points(timestamps: pd.DatetimeIndex, since: pd.Timestamp) -> int:
    return int((timestamps > since).sum())


def evaluate_version(registry: Registry, settings: Settings, request: EvaluationRequest) -> Evaluation:
    """The version (production by default) backtested on the file's points after its training
    data; nothing is written (the caller writes the record)."""
    version = registry.resolve(request.name, request.version)
    manifest = registry.manifest(request.name, version)
    dataset = load_for_version(request.data, manifest, request.static_data)
    since = pd.Timestamp(manifest.data.last_timestamp)
    horizon = manifest.horizon
    fresh = {s.series_id: _fresh_points(s.timestamps, since) for s in dataset.series}
    scored = [s for s in posted_series(dataset, manifest) if fresh[s.id] >= horizon]
    left_out = [s.series_id for s in dataset.series if fresh[s.series_id] < horizon]
    if not scored:
        raise InvalidInput(
            f"{request.data} holds no series with {horizon} points (the horizon) after {since}, where the training "
            f"data of {request.name!r} version {version} ends: nothing to evaluate yet"
        )
    spec = BacktestSpec(stride=request.stride, since_ns=since.value)
    limits = BacktestLimits(settings.max_backtest_windows, settings.max_backtest_values)

    async def run() -> BacktestResult:
        async with served_here(registry, settings, request.name, version) as pipeline:
            return await backtest(pipeline, scored, spec, limits=limits, timeout_s=settings.request_timeout_s)

    result = asyncio.run(run())
    kept = [s for s in dataset.series if fresh[s.series_id] >= horizon]
    record = AccuracyRecord(
        name=request.name,
        version=version,
        created_at=datetime.now(UTC),
        horizon=result.horizon,
        data=EvaluatedData(
            source=request.data,
            sha256=dataset.fingerprint(),
            n_series=len(scored),
            windows=result.windows,
            first_origin=min(pd.Timestamp(s.origins[0]) for s in result.series).to_pydatetime(),
            last_timestamp=max(s.timestamps[-1] for s in kept).to_pydatetime(),
            since=since.to_pydatetime(),
        ),
        metrics=result.metrics,
        coverage=result.coverage,
        test_mase=_test_mase(manifest),
        degradation_ratio=request.degradation_ratio,
    )
    return Evaluation(record, left_out)


def _test_mase(manifest: Manifest) -> float | None:
    return manifest.metrics.get("test", {}).get("model", {}).get("mase")


def summary(evaluation: Evaluation) -> str:
    """One line: what was scored, the model against its baselines and its own test score, and
    the verdict."""
    record = evaluation.record
    model, baseline = record.metrics["model"], record.metrics["seasonal_naive"]

    def number(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4g}"

    line = (
        f"{record.name} version {record.version} on {record.data.n_series} series, {record.data.windows} forecasts "
        f"after {record.data.since:%Y-%m-%d %H:%M}: MASE {number(model.get('mase'))} "
        f"(seasonal naive {number(baseline.get('mase'))}, its test {number(record.test_mase)}): "
        + record.status.replace("_", " ")
    )
    if evaluation.left_out:
        line += f"; {len(evaluation.left_out)} series without {record.horizon} fresh points left out"
    return line

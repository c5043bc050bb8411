"""Retraining when it pays (`forecast train --retrain --if-degraded`): the production version,
scored on the new data's points after its training (an accuracy record), is retrained only when
it no longer beats the seasonal naive there, or when it has degraded past a stated ratio of its
own test score. The decision is one line that says which and why."""

from __future__ import annotations

from dataclasses import dataclass

from forecast.registry.accuracy import AccuracyRecord


@dataclass(frozen=True, slots=True)
class RetrainDecision:
    retrain: bool
    reason: str


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def retrain_decision(record: AccuracyRecord) -> RetrainDecision:
    where = f"on {record.data.windows} forecasts after {record.data.since:%Y-%m-%d %H:%M}"
    mase, naive = record.mase, record.metrics["seasonal_naive"].get("mase")
    if record.status == "loses_to_seasonal_naive":
        return RetrainDecision(
            True,
            f"retraining: production (version {record.version}) no longer beats the seasonal naive {where} "
            f"(MASE {_number(mase)} against {_number(naive)})",
        )
    if record.status == "degraded":
        return RetrainDecision(
            True,
            f"retraining: production (version {record.version}) degraded {where}: MASE {_number(mase)} against "
            f"{_number(record.test_mase)} on its test block, beyond the ratio {record.degradation_ratio:g}",
        )
    return RetrainDecision(
        False,
        f"not retraining: production (version {record.version}) holds {where}: MASE {_number(mase)} (its test "
        f"{_number(record.test_mase)}, ratio limit {record.degradation_ratio:g}; seasonal naive {_number(naive)})",
    )

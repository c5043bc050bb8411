"""Which version is `production`: the first version of a name, and later ones only with
--promote when they beat the production version on the same test data."""

from __future__ import annotations

import math
from dataclasses import dataclass

from forecast.errors import AliasMoved, TrainingFailed
from forecast.registry.manifest import GateVerdict, Metrics
from forecast.registry.store import PRODUCTION, Registry

# Promotion compares scale-free errors so that many series of different sizes weigh alike;
# MAE where MASE is undefined (every training history constant; then it is so for both sides,
# which are scored on the same data).
PROMOTION_METRIC = "mase"
FALLBACK_METRIC = "mae"


@dataclass(frozen=True, slots=True)
class Score:
    """One version's error on this job's test block."""

    metric: str
    value: float


@dataclass(frozen=True, slots=True)
class Comparison:
    """The production version as it scored on this job's test block."""

    version: int
    score: Score


@dataclass(frozen=True, slots=True)
class Promotion:
    promoted: bool
    note: str


def promotion_score(metrics: dict[str, float | None]) -> Score:
    value = metrics[PROMOTION_METRIC]
    if value is not None:
        return Score(PROMOTION_METRIC, value)
    return Score(FALLBACK_METRIC, float(metrics[FALLBACK_METRIC] or 0.0))


def anchor_verdict(test_metrics: dict[str, dict[str, float | None]], network_lost: float) -> GateVerdict:
    """The verdict of the anchor published in place of a network that lost: the seasonal naive
    itself, or a baseline that beats it on the test block, so it passes."""
    model, baseline = promotion_score(test_metrics["model"]), promotion_score(test_metrics["seasonal_naive"])
    return GateVerdict(
        passed=True, metric=model.metric, model=model.value, seasonal_naive=baseline.value, network_lost=network_lost
    )


def gate_verdict(test_metrics: dict[str, dict[str, float | None]], *, force: bool) -> GateVerdict:
    """The baseline gate: does the model beat the seasonal naive on its own test block? Both are
    scored by the same metric (MASE is defined for both or for neither)."""
    model, baseline = promotion_score(test_metrics["model"]), promotion_score(test_metrics["seasonal_naive"])
    passed = model.value < baseline.value
    return GateVerdict(
        passed=passed,
        metric=model.metric,
        model=model.value,
        seasonal_naive=baseline.value,
        forced=force and not passed,
    )


def require_finite(name: str, metrics: Metrics) -> None:
    """A NaN or infinite error means the network produced non-finite forecasts (diverged):
    refuse to publish it rather than write a version nobody can use."""
    for block, methods in metrics.items():
        for metric, value in methods["model"].items():
            if value is not None and not math.isfinite(value):
                raise TrainingFailed(
                    f"model {name!r}: the {block} {metric} is {value} (the network's forecasts are not finite); "
                    "nothing was written. Try a lower --learning-rate or check the data's scale"
                )


@dataclass(frozen=True, slots=True)
class Candidate:
    """The version just written, as promotion weighs it."""

    name: str
    version: int
    score: Score  # its test error
    gate: GateVerdict


def move_production(
    registry: Registry, candidate: Candidate, *, promote: bool, comparison: Comparison | None
) -> Promotion:
    """Runs under the model's lock. A version that does not beat the seasonal naive on its own
    test block never becomes production unless forced. Past that gate the first version becomes
    production; later ones only with --promote and only when they beat production on this job's
    test data. An anchor published for a network that lost passes the gate; the note says so."""
    moved = _move(registry, candidate, promote, comparison)
    gate = candidate.gate
    if gate.network_lost is None:
        return moved
    lost = (
        f"the network's test {gate.metric} {gate.network_lost:.4f} did not beat the seasonal naive "
        f"({gate.seasonal_naive:.4f}): published its anchor (test {gate.metric} {gate.model:.4f})"
    )
    return Promotion(moved.promoted, f"{lost}; {moved.note}")


def _move(registry: Registry, candidate: Candidate, promote: bool, comparison: Comparison | None) -> Promotion:
    name, version, new_score, gate = candidate.name, candidate.version, candidate.score, candidate.gate
    if not gate.passed and not gate.forced:
        return Promotion(
            False,
            f"test {gate.metric} {gate.model:.4f} does not beat the seasonal naive ({gate.seasonal_naive:.4f}): "
            "written, but not production (--force promotes it anyway)",
        )
    current = registry.aliases(name).get(PRODUCTION)
    if current is None:
        # `expected`: on S3 nothing locks the model, so the move is a compare-and-swap on what was read.
        try:
            registry.set_alias(name, PRODUCTION, version, expected=None)
        except AliasMoved:
            return Promotion(False, "another version became production meanwhile; not promoted")
        return Promotion(True, "first version of this model: now production")
    if not promote:
        return Promotion(False, f"production stays at version {current} (pass --promote to compare and promote)")
    if comparison is None:
        return Promotion(
            False,
            f"production (version {current}) cannot be scored on this data (different horizon, frequency or input "
            "size, or covariates the data does not hold); not promoted",
        )
    if comparison.version != current:
        return Promotion(False, f"production moved to version {current} while training; not promoted")
    old, new = comparison.score, new_score
    if new.metric != old.metric:  # cannot happen on the same data; refuse rather than compare unlike errors
        return Promotion(False, f"test {new.metric} and production's {old.metric} are not comparable; not promoted")
    verdict = "beats" if new.value < old.value else "does not beat"
    outcome = "promoted" if new.value < old.value else "not promoted"
    if new.value < old.value:
        try:
            registry.set_alias(name, PRODUCTION, version, expected=current)
        except AliasMoved:
            return Promotion(False, f"production moved from version {current} while publishing; not promoted")
    return Promotion(
        new.value < old.value,
        f"test {new.metric} {new.value:.4f} {verdict} production version {current} ({old.value:.4f}): {outcome}",
    )

"""What readiness and metrics say about the registry: whether the last scan could be used, and
which wanted versions (alias targets on disk) are not the ones served, and why.

The engine serves its last good state through registry faults; these records are how an
operator learns that the state is stale or degraded while every request still succeeds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from forecast.serving.failures import LoadFailures
from forecast.serving.telemetry import (
    REGISTRY_LAST_GOOD_SCAN,
    REGISTRY_LAST_SCAN_OK,
    REGISTRY_MODEL_ERRORS,
    REGISTRY_SCAN_ERRORS,
    UNSERVED_ALIASES,
)


@dataclass(slots=True)
class ScanHealth:
    ok: bool  # the last scan could be used
    ever_ok: bool  # some scan could: the server has a registry state to serve
    last_error: str | None  # the last scan's problem, None when it was fine
    consecutive_failures: int
    last_ok_age_s: float | None  # seconds since the last usable scan
    last_scan_age_s: float | None  # seconds since the last scan finished (growing: a hung mount)


@dataclass(slots=True)
class ModelProblem:
    """A model that is not served as its registry files say: one alias, or the whole model
    (alias None) when its files could not be read."""

    alias: str | None
    wanted: int | None  # the version on disk
    served: int | None  # the version served instead, None when nothing serves the alias
    error: str
    attempts: int | None = None  # failed loads of the wanted version's current files
    retry_in_s: float | None = None  # until the next try, unless its files change first


@dataclass(slots=True)
class EngineHealth:
    registry: ScanHealth
    problems: dict[str, list[ModelProblem]] = field(default_factory=dict)

    @property
    def degraded(self) -> bool:
        return not self.registry.ok or bool(self.problems)


class ScanTracker:
    """Scan outcomes over time, mirrored in the Prometheus gauges."""

    def __init__(self) -> None:
        self.last_error: str | None = None
        self.consecutive_failures = 0
        self._last_ok: float | None = None  # time.monotonic()
        self._last_scan: float | None = None
        self._scanned = False

    def record(self, error: str | None) -> None:
        now = time.monotonic()
        self._scanned = True
        self._last_scan = now
        self.last_error = error
        if error is None:
            self.consecutive_failures = 0
            self._last_ok = now
            REGISTRY_LAST_GOOD_SCAN.set(time.time())
        else:
            self.consecutive_failures += 1
            REGISTRY_SCAN_ERRORS.inc()
        REGISTRY_LAST_SCAN_OK.set(1 if error is None else 0)

    def health(self) -> ScanHealth:
        now = time.monotonic()
        return ScanHealth(
            ok=self._scanned and self.last_error is None,
            ever_ok=self._last_ok is not None,
            last_error=self.last_error,
            consecutive_failures=self.consecutive_failures,
            last_ok_age_s=None if self._last_ok is None else round(now - self._last_ok, 3),
            last_scan_age_s=None if self._last_scan is None else round(now - self._last_scan, 3),
        )


def publish_problems(problems: dict[str, list[ModelProblem]]) -> None:
    REGISTRY_MODEL_ERRORS.set(sum(any(p.alias is None for p in found) for found in problems.values()))
    UNSERVED_ALIASES.set(sum(p.alias is not None for found in problems.values() for p in found))


def model_problems(
    model_errors: dict[str, str],
    alias_errors: dict[tuple[str, str], str],
    wanted: dict[str, dict[str, int]],
    served: dict[str, dict[str, int]],
    failures: LoadFailures,
    now: float,
) -> dict[str, list[ModelProblem]]:
    """Per model: its unreadable files (alias None), then each alias not served as wanted."""
    problems: dict[str, list[ModelProblem]] = {}
    for name, error in sorted(model_errors.items()):
        problems.setdefault(name, []).append(ModelProblem(alias=None, wanted=None, served=None, error=error))
    for (name, alias), error in sorted(alias_errors.items()):
        version = wanted.get(name, {}).get(alias)
        failure = failures.get((name, version)) if version is not None else None
        problems.setdefault(name, []).append(
            ModelProblem(
                alias=alias,
                wanted=version,
                served=served.get(name, {}).get(alias),
                error=error,
                attempts=failure.attempts if failure else None,
                retry_in_s=round(max(0.0, failure.retry_at - now), 3) if failure else None,
            )
        )
    return problems

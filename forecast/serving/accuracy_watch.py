"""The latest accuracy record of each served model (`forecast evaluate` writes them), read from
the registry at a slow cadence (FORECAST_ACCURACY_REFRESH_S, a minute) and exported as one gauge
family on /metrics. Records arrive a few times a day, so a minute's delay costs nothing, and the
registry is not listed on every scan."""

from __future__ import annotations

import logging
import math

from forecast.registry.accuracy import AccuracyRecord, latest_records
from forecast.registry.store import Registry
from forecast.serving.telemetry import PRODUCTION_ACCURACY

logger = logging.getLogger(__name__)

MEASURES = ("mase", "ratio_to_seasonal_naive", "ratio_to_test")


def _measures(record: AccuracyRecord) -> dict[str, float | None]:
    return {
        "mase": record.mase,
        "ratio_to_seasonal_naive": record.ratio_to_seasonal_naive,
        "ratio_to_test": record.ratio_to_test,
    }


class AccuracyGauges:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._shown: dict[str, int] = {}  # model -> the record number its gauges show

    def refresh(self, models: list[str]) -> None:
        """Runs on a worker thread: one listing per model, one read per new record."""
        for name in set(self._shown) - set(models):
            self._drop(name)
        for name in models:
            try:
                records = latest_records(self.registry.storage, name, 1)
            except OSError as exc:  # the registry's own problem: the scan reports it
                logger.debug("accuracy records of %s unreadable now: %s", name, exc)
                continue
            if not records:
                self._drop(name)
            elif self._shown.get(name) != records[-1].record:
                for measure, value in _measures(records[-1]).items():
                    PRODUCTION_ACCURACY.labels(name, measure).set(math.nan if value is None else value)
                self._shown[name] = records[-1].record

    def _drop(self, name: str) -> None:
        if self._shown.pop(name, None) is not None:
            for measure in MEASURES:
                PRODUCTION_ACCURACY.remove(name, measure)

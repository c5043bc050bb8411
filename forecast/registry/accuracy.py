"""Accuracy records: how a version did on data that arrived after its training (`forecast
evaluate`), kept in the registry beside the model, append-only.

    <root>/<name>/accuracy/<N>/record.json

Each run publishes one new folder through the storage's `publish` (atomic on disk and on S3
alike: a reader sees a record whole or not at all, and none is ever rewritten). Records are read
back as hostile input: bounded in size, validated by pydantic, a bad one skipped with a warning.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, computed_field

from forecast.registry.layout import VERSION_PATTERN, check_name
from forecast.registry.storage.base import Storage

logger = logging.getLogger(__name__)

RECORD_FILE = "record.json"
_MAX_RECORD_BYTES = 64 * 1024
# A production version "degraded" when its MASE on fresh data is this much above its own test
# MASE (1.5: half as bad again), the default of `forecast train --if-degraded` and of the verdict a
# record is written with. The test MASE is itself an estimate from one block of a few origins: on
# unchanged data a fresh block scores up to about a third worse by chance (tests/e2e/
# test_production_watch.py's unchanged series: 1.30), which must not trigger a retraining.
DEFAULT_DEGRADATION_RATIO = 1.5

MethodMetrics = dict[str, float | None]  # mae, mse, rmse, smape, mase (None: undefined)
Status = Literal["holds", "degraded", "loses_to_seasonal_naive"]


class EvaluatedData(BaseModel):
    """The fresh data a record scored: where it came from and what it covered."""

    source: str
    sha256: str  # the data's fingerprint (forecast.series.dataset.Dataset.fingerprint)
    n_series: int
    windows: int  # forecasts scored: series x origins
    first_origin: datetime  # the earliest forecast's first step
    last_timestamp: datetime  # the latest actual scored
    since: datetime  # origins start after this instant: the version's training data's end


class AccuracyRecord(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    format_version: Literal[1] = 1
    name: str
    version: int = Field(ge=1, description="the version evaluated (production at the time)")
    record: int = Field(default=0, ge=0, description="the record's number, set when it is written")
    created_at: datetime
    horizon: int
    data: EvaluatedData
    metrics: dict[str, MethodMetrics]  # model, naive, seasonal_naive
    coverage: dict[str, float] = Field(default_factory=dict)
    test_mase: float | None = Field(description="the version's MASE on its own test block, when it was trained")
    degradation_ratio: float = Field(description="MASE / test MASE above which the version counts as degraded")

    @property
    def mase(self) -> float | None:
        return self.metrics["model"].get("mase")

    @computed_field  # type: ignore[prop-decorator]  # written out for the API, the dashboard, a reader
    @property
    def ratio_to_seasonal_naive(self) -> float | None:
        """The model's MASE over the seasonal naive's on the same points (below 1: it wins)."""
        mase, baseline = self.mase, self.metrics["seasonal_naive"].get("mase")
        return None if mase is None or not baseline else mase / baseline

    @computed_field  # type: ignore[prop-decorator]  # written out for the API, the dashboard, a reader
    @property
    def ratio_to_test(self) -> float | None:
        """The model's MASE on fresh data over its test MASE (above 1: worse than promised)."""
        return None if self.mase is None or not self.test_mase else self.mase / self.test_mase

    @computed_field  # type: ignore[prop-decorator]  # written out for the API, the dashboard, a reader
    @property
    def status(self) -> Status:
        """Whether production holds: it must beat the seasonal naive, and stay within the
        degradation ratio of its own test score."""
        versus_naive = self.ratio_to_seasonal_naive
        if versus_naive is not None and versus_naive >= 1.0:
            return "loses_to_seasonal_naive"
        versus_test = self.ratio_to_test
        if versus_test is not None and versus_test > self.degradation_ratio:
            return "degraded"
        return "holds"


def _parent(name: str) -> str:
    return f"{check_name(name)}/accuracy"


def write_record(storage: Storage, record: AccuracyRecord) -> AccuracyRecord:
    """Publish the record as the next one of its model and return it with its number."""
    parent = _parent(record.name)
    try:
        numbers = [int(folder) for folder in storage.folders(parent) if VERSION_PATTERN.fullmatch(folder)]
    except (FileNotFoundError, NotADirectoryError):
        numbers = []
    landed: dict[int, AccuracyRecord] = {}

    def record_for(number: int) -> bytes:
        landed[number] = record.model_copy(update={"record": number})
        return landed[number].model_dump_json(indent=2).encode()

    number = storage.publish(parent, max(numbers, default=0) + 1, {}, RECORD_FILE, record_for)
    return landed[number]


def latest_records(storage: Storage, name: str, limit: int) -> list[AccuracyRecord]:
    """The model's last `limit` records, oldest first; unreadable ones are skipped (logged)."""
    parent = _parent(name)
    try:
        folders = storage.folders_holding(parent, RECORD_FILE)
    except (FileNotFoundError, NotADirectoryError):
        return []
    numbers = sorted(int(folder) for folder in folders if VERSION_PATTERN.fullmatch(folder))[-limit:]
    records = []
    for number in numbers:
        key = f"{parent}/{number}/{RECORD_FILE}"
        try:
            records.append(AccuracyRecord.model_validate_json(storage.read(key, _MAX_RECORD_BYTES).payload))
        except (OSError, ValidationError, ValueError) as exc:
            logger.warning("skipping the unreadable accuracy record %s: %s", storage.where(key), str(exc)[:200])
    return records

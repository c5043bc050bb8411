"""Accuracy records in the registry, on disk and on a real S3 server alike: appended one folder
per run and never rewritten, read back newest last, a hostile record skipped; the status says
what the numbers say."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from forecast.registry.accuracy import AccuracyRecord, EvaluatedData, latest_records, write_record
from forecast.registry.store import Registry, open_registry


def record(mase: float, seasonal_naive: float, test_mase: float | None = 0.5, version: int = 1) -> AccuracyRecord:
    stamp = datetime(2024, 3, 1, tzinfo=UTC)
    return AccuracyRecord(
        name="demand",
        version=version,
        created_at=stamp,
        horizon=24,
        data=EvaluatedData(
            source="recent.csv",
            sha256="0" * 64,
            n_series=2,
            windows=10,
            first_origin=stamp,
            last_timestamp=stamp,
            since=stamp,
        ),
        metrics={
            "model": {"mae": 1.0, "mse": 1.0, "rmse": 1.0, "smape": 5.0, "mase": mase},
            "naive": {"mae": 2.0, "mse": 4.0, "rmse": 2.0, "smape": 9.0, "mase": 2.0},
            "seasonal_naive": {"mae": 1.5, "mse": 2.0, "rmse": 1.4, "smape": 7.0, "mase": seasonal_naive},
        },
        test_mase=test_mase,
        degradation_ratio=1.5,
    )


@pytest.fixture(params=["disk", "s3"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Registry:
    if request.param == "disk":
        return Registry(tmp_path / "registry")
    url: str = request.getfixturevalue("s3_url")
    return open_registry(url)


def test_records_are_appended_numbered_and_read_back_newest_last(registry: Registry) -> None:
    assert latest_records(registry.storage, "demand", 5) == []
    written = [write_record(registry.storage, record(0.5 + i / 10, 1.0)) for i in range(4)]
    assert [r.record for r in written] == [1, 2, 3, 4]
    latest = latest_records(registry.storage, "demand", 2)
    assert [r.record for r in latest] == [3, 4]
    assert latest[-1].mase == pytest.approx(0.8)


def test_concurrent_writers_never_share_a_number(registry: Registry) -> None:
    with ThreadPoolExecutor(4) as pool:
        numbers = list(pool.map(lambda i: write_record(registry.storage, record(0.5, 1.0)).record, range(8)))
    assert sorted(numbers) == list(range(1, 9))
    assert len(latest_records(registry.storage, "demand", 100)) == 8


def test_a_hostile_record_is_skipped_and_the_others_read(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    write_record(registry.storage, record(0.5, 1.0))
    bad = tmp_path / "registry" / "demand" / "accuracy" / "2"
    bad.mkdir()
    (bad / "record.json").write_text('{"format_version": 1, "name": "demand"' + " " * 70_000 + "}")
    worse = tmp_path / "registry" / "demand" / "accuracy" / "3"
    worse.mkdir()
    (worse / "record.json").write_text("[" * 10_000)
    assert [r.record for r in latest_records(registry.storage, "demand", 10)] == [1]


@pytest.mark.parametrize(
    ("mase", "seasonal_naive", "test_mase", "status"),
    [
        (0.6, 1.0, 0.5, "holds"),  # 1.2 x its test: within 1.5
        (0.8, 1.0, 0.5, "degraded"),  # 1.6 x its test
        (1.0, 1.0, 0.5, "loses_to_seasonal_naive"),  # a tie is no win
        (0.6, 1.0, None, "holds"),  # no test MASE (constant histories): only the naive counts
    ],
)
def test_the_status_says_whether_production_holds(
    mase: float, seasonal_naive: float, test_mase: float | None, status: str
) -> None:
    written = record(mase, seasonal_naive, test_mase)
    assert written.status == status
    assert AccuracyRecord.model_validate_json(written.model_dump_json()).status == status

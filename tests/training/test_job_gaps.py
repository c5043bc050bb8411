"""The data users bring, through the real `forecast train`: missing values, missing timestamps
and series too short for the window and the blocks train into one version that reports what fed
each block, scores only the observed actuals, and serves its own evaluation's numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from forecast.registry.store import PRODUCTION
from tests.support.cli import aliases, manifest, serve_once, train, version_dir
from tests.support.data import messy_frame, write_csv


def test_a_file_with_gaps_and_short_series_trains_and_serves_what_it_evaluated(tmp_path: Path) -> None:
    frame = messy_frame()
    data = write_csv(frame, tmp_path / "messy.csv")
    registry = tmp_path / "registry"
    result = train(data, registry, "messy", "--no-refit")  # serves the network its report evaluated
    assert "series feeding each block: training 2, validation 2, test 3 of 4 (2 shorter" in result.stderr

    recorded = manifest(registry, "messy", 1)
    assert recorded["training"]["network"]["missing_mask"] is True
    assert recorded["data"]["series_per_block"] == {"train": 2, "validation": 2, "test": 3}
    assert recorded["data"]["missing_points"] == 25 + 20  # empty cells and missing timestamps; padding is not data
    assert recorded["data"]["n_points"] == 400 + 400 + 40 + 5
    assert aliases(registry, "messy") == {PRODUCTION: 1}
    for block in ("validation", "test"):
        assert all(np.isfinite(value) for value in recorded["metrics"][block]["model"].values())

    # The report is valid JSON (a missing actual is null, never NaN) and the served forecast of a
    # window with gaps equals the evaluation's, through the engine's pipeline.
    report_text = (version_dir(registry, "messy", 1) / "report.json").read_text()
    report = json.loads(report_text, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
    gappy = [s for s in report["samples"] if s["series_id"] == "a" and None in s["history"]]
    assert gappy, "a test window of series 'a' has a gap in its input"
    sample = gappy[0]
    served = serve_once(registry, "messy", sample["history_timestamps"], sample["history"])
    np.testing.assert_allclose(served, sample["forecast"], rtol=0, atol=1e-4)


def test_a_short_series_gets_a_forecast_that_its_padding_does_not_change(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    train(write_csv(messy_frame(), tmp_path / "messy.csv"), registry, "messy")
    stamps = pd.date_range("2024-03-01", periods=5, freq="h")
    values = [10.0, 11.0, 12.5, 11.0, 10.5]
    five = serve_once(registry, "messy", [t.isoformat() for t in stamps], values)
    assert len(five) == 12 and np.isfinite(five).all()
    # Fewer points than a season: the anchor, whose steps without a value a day back repeat the last one.
    assert five[0] == values[-1]
    # The same five points after a stretch of nulls: the same padding, the same forecast.
    earlier = pd.date_range(end=stamps[0], periods=30, freq="h")[:-1]
    padded = serve_once(
        registry, "messy", [t.isoformat() for t in earlier.append(stamps)], [None] * len(earlier) + values
    )
    np.testing.assert_array_equal(padded, five)


def test_a_series_with_nothing_to_forecast_from_is_left_out_and_named(tmp_path: Path) -> None:
    frame = messy_frame()
    dead = frame[frame.series_id == "a"].assign(series_id="dead-sensor", value=np.nan)
    registry = tmp_path / "registry"
    result = train(write_csv(pd.concat([frame, dead]), tmp_path / "messy.csv"), registry, "messy")
    assert "1 series left out (too little signal), the first series 'dead-sensor': has no observed value" in (
        result.stderr
    )
    assert manifest(registry, "messy", 1)["data"]["n_series"] == 4
    assert aliases(registry, "messy") == {PRODUCTION: 1}

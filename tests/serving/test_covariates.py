"""A posted series' covariates (forecast/serving/covariates.py through prepare_series): cut to what
the window needs, and every bad one refused naming the series and the covariate, a future-known
one that stops early with the number of steps missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from forecast.errors import InvalidRequest, NonFiniteValues, ValueOutOfRange
from forecast.model.config import ScalingParams
from forecast.model.covariates import Covariates, fit_scaled, fit_static
from forecast.model.encoding import encode
from forecast.registry.manifest import Manifest
from forecast.series.covariates import CovariateColumns
from forecast.series.dataset import load_dataset
from forecast.series.windows import build_store, split_blocks
from forecast.serving.covariates import PostedCovariates
from forecast.serving.pipeline import raw_windows, stack_windows
from forecast.training.batches import gather_windows
from forecast.training.covariates import fit_covariates, static_rows
from tests.factories import covariate_frame, make_manifest
from tests.support.requests import HORIZON, INPUT_SIZE, hourly_values, prepare

COUNT = 10


@pytest.fixture
def covariate_manifest() -> Manifest:
    covariates = Covariates(
        past=[fit_scaled("load", np.array([0.0, 2.0]))],
        future=[fit_scaled("temperature", np.array([10.0, 30.0]))],
        static=[fit_static("region", "categorical", ["north", "south"]), fit_static("size", "numeric", [1.0, 3.0])],
    )
    return make_manifest(input_size=INPUT_SIZE, horizon=HORIZON, covariates=covariates, horizon_inputs=True)


def _posted(**changes: object) -> PostedCovariates:
    base: dict[str, object] = {
        "past": {"load": [float(i) for i in range(COUNT)]},
        "future": {"temperature": [float(20 + i) for i in range(COUNT + HORIZON)]},
        "static": {"region": "south", "size": 2.0},
    }
    base.update(changes)
    return PostedCovariates(**base)  # type: ignore[arg-type]


def _refused(manifest: Manifest, covariates: PostedCovariates, *, horizon: int = HORIZON) -> str:
    with pytest.raises((InvalidRequest, NonFiniteValues, ValueOutOfRange)) as error:
        prepare(manifest, hourly_values(COUNT), start="2024-01-01T00:00:00", horizon=horizon, covariates=covariates)
    assert error.value.series_id == "a"
    assert "\n" not in str(error.value)
    return str(error.value)


def test_the_window_holds_the_covariates_it_needs(covariate_manifest: Manifest) -> None:
    prepared = prepare(covariate_manifest, hourly_values(COUNT), start="2024-01-01T00:00:00", covariates=_posted())
    window = prepared.window
    np.testing.assert_array_equal(window.past[:, 0], np.arange(COUNT - INPUT_SIZE, COUNT))
    np.testing.assert_array_equal(window.future[:, 0], 20.0 + np.arange(COUNT - INPUT_SIZE, COUNT + HORIZON))
    assert window.features.shape == (INPUT_SIZE + HORIZON, 4)  # the calendar over the window and the horizon
    assert window.static.tolist() == [2.0, 2.0]  # south's code, the raw size


def test_a_shorter_horizon_needs_future_covariates_over_its_steps_only(covariate_manifest: Manifest) -> None:
    """The steps after it are filled with the covariate's training mean, which no served step reads."""
    short = _posted(future={"temperature": [float(20 + i) for i in range(COUNT + 2)]})
    prepared = prepare(
        covariate_manifest, hourly_values(COUNT), start="2024-01-01T00:00:00", horizon=2, covariates=short
    )
    assert prepared.window.future[-2:, 0].tolist() == [20.0, 20.0]  # the mean of 10 and 30


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"future": None}, "missing future-known covariate(s) ['temperature'] under 'future_covariates'"),
        ({"past": {}}, "missing past covariate(s) ['load']"),
        ({"static": {"region": "south"}}, "missing static covariate(s) ['size']"),
        ({"past": {"load": [1.0] * COUNT, "wind": [1.0] * COUNT}}, "unknown past covariate 'wind'"),
        (
            {"past": {"load": [1.0] * COUNT, "temperature": [1.0] * COUNT}},
            "'temperature' is a future-known covariate of the model; post it under 'future_covariates'",
        ),
        ({"past": {"load": [1.0] * (COUNT - 1)}}, "past covariate 'load' has 9 values but the series has 10"),
        (
            {"future": {"temperature": [1.0] * (COUNT + HORIZON - 3)}},
            "has 11 values but needs 14 (the 10 posted points and the 4 forecast steps): 3 step(s) missing",
        ),
        ({"future": {"temperature": [1.0] * (COUNT + HORIZON + 1)}}, "more than the 14 the model can read"),
        (
            {"past": {"load": [1.0, float("inf")] + [1.0] * (COUNT - 2)}},
            "past covariate 'load' is infinite at position 1",
        ),
        (
            {"future": {"temperature": [20.0] * (COUNT + HORIZON - 1) + [None]}},
            "future-known covariate 'temperature' is missing at the last forecast step (4, position 13)",
        ),
        ({"future": {"temperature": [1e39] * (COUNT + HORIZON)}}, "beyond what the network's float32 can hold"),
        ({"static": {"region": "south", "size": "big"}}, "static covariate 'size' is numeric; 'big'"),
    ],
)
def test_each_bad_covariate_is_refused_naming_series_and_covariate(
    covariate_manifest: Manifest, changes: dict[str, object], expected: str
) -> None:
    assert expected in _refused(covariate_manifest, _posted(**changes))


def test_a_covariate_gap_in_the_window_is_posted_as_null_and_placed_as_missing(covariate_manifest: Manifest) -> None:
    """The model fills it like the target's gaps (forecast/model/encoding.py); a future-known
    covariate must be known at the horizon's last step, as in training at the series' end."""
    past = [float(i) for i in range(COUNT)]
    past[-2] = None  # type: ignore[call-overload]
    future = [float(20 + i) for i in range(COUNT + HORIZON)]
    future[-HORIZON - 3] = future[-2] = None  # type: ignore[call-overload]  # in the window, in the horizon
    prepared = prepare(
        covariate_manifest,
        hourly_values(COUNT),
        start="2024-01-01T00:00:00",
        covariates=_posted(past={"load": past}, future={"temperature": future}),
    )
    assert np.isnan(prepared.window.past[-2, 0]) and np.isnan(prepared.window.future[INPUT_SIZE - 3, 0])
    assert np.isnan(prepared.window.future[-2, 0]) and np.isfinite(prepared.window.future[-1, 0])


def test_a_version_without_covariates_refuses_any(manifest: Manifest) -> None:
    message = _refused(manifest, PostedCovariates(future={"temperature": [1.0] * (COUNT + HORIZON)}))
    assert "unknown future-known covariate 'temperature'" in message and "reads no covariates" in message


def test_an_unseen_category_takes_the_bucket(covariate_manifest: Manifest) -> None:
    posted = _posted(static={"region": "east", "size": 2.0})
    prepared = prepare(covariate_manifest, hourly_values(COUNT), start="2024-01-01T00:00:00", covariates=posted)
    assert prepared.window.static[0] == 0.0


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"static": {"region": float("nan"), "size": 2.0}}, "is a category: send a string or a finite number"),
        ({"static": {"region": "south", "size": 10**400}}, "static covariate 'size' is numeric"),
        ({"past": {"load": [[1.0]] * COUNT}}, "past covariate 'load' must be a list of numbers"),
    ],
)
def test_values_no_json_schema_stops_are_refused_too(
    covariate_manifest: Manifest, changes: dict[str, object], expected: str
) -> None:
    """What a caller of the library (or a lenient client) may pass: NaN as a category, an integer
    beyond any float, nested lists."""
    assert expected in _refused(covariate_manifest, _posted(**changes))


def test_a_served_window_reaches_the_network_as_the_same_training_window(tmp_path: Path) -> None:
    """No skew, covariates included: a series posted up to an origin is encoded into the inputs
    the training job built for that origin, the covariates bit for bit, even a covariate at 1e7
    whose steps are a few units (float32 would round them away on one path only)."""
    frame = covariate_frame(n_points=200)
    frame["temperature"] = 1e7 + frame["temperature"]
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    dataset = load_dataset(path, covariates=CovariateColumns(past=["load"], future=["temperature"], static=["region"]))
    store = build_store(dataset, ["hour_of_day", "day_of_week"])
    blocks = split_blocks(store, input_size=INPUT_SIZE, horizon=HORIZON, val_size=HORIZON, test_size=HORIZON)
    covariates = fit_covariates(dataset, store, blocks)
    store.static = static_rows(dataset, covariates)
    manifest = make_manifest(input_size=INPUT_SIZE, horizon=HORIZON, covariates=covariates, horizon_inputs=True)
    series, cut = dataset.series[1], 150  # series b, forecast from its 150th point
    trained = gather_windows(store, np.array([store.offsets[1] + cut]), manifest.network).windows

    rows = frame[frame["series_id"] == "b"].reset_index(drop=True)
    posted = PostedCovariates(
        past={"load": rows["load"].iloc[:cut].tolist()},
        future={"temperature": rows["temperature"].iloc[: cut + HORIZON].tolist()},
        static={"region": series.static["region"]},
    )
    prepared = prepare(manifest, rows["value"].iloc[:cut].tolist(), start="2024-01-01T00:00:00", covariates=posted)
    served = raw_windows(stack_windows([prepared.window]))

    scaling = ScalingParams(mode="window")
    on_training, on_serving = encode(trained, scaling, covariates), encode(served, scaling, covariates)
    assert torch.equal(on_training.inputs[..., 1:], on_serving.inputs[..., 1:])  # covariates and calendar
    assert torch.equal(on_training.known, on_serving.known)
    assert torch.equal(on_training.static, on_serving.static)
    torch.testing.assert_close(on_training.inputs[..., 0], on_serving.inputs[..., 0])  # the float32-stored target

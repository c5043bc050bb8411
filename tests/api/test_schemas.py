"""The bodies the service writes are the ones its OpenAPI document declares: the forecast body
(built by `forecast_body` from a real pipeline result) against POST /v1/forecast's 200 schema, and
every error body against the ErrorBody schema of each error status the route declares."""

from __future__ import annotations

from typing import Any

import jsonschema
import numpy as np
import pytest

from api.errors import error_body
from api.http.app import create_app
from api.http.schemas import forecast_body
from forecast.serving.backtest import BacktestResult, SeriesBacktest, result_body
from forecast.serving.pipeline import ForecastPipeline, window_forecast
from forecast.serving.requests import prepare_series
from forecast.settings import Settings
from tests.factories import make_manifest

OPENAPI = create_app(Settings(registry="/nonexistent")).openapi()


def _schema_of(status: str, path: str = "/v1/forecast") -> dict[str, Any]:
    """The JSON schema of one response of a POST route, with the document's components so that
    its $refs resolve."""
    response = OPENAPI["paths"][path]["post"]["responses"][status]
    return {**response["content"]["application/json"]["schema"], "components": OPENAPI["components"]}


def _validate(body: dict[str, Any], status: str, path: str = "/v1/forecast") -> None:
    jsonschema.validate(body, _schema_of(status, path), cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize("levels", [[], [80.0], [50.0, 97.5]])
def test_the_forecast_body_matches_the_declared_200_schema(levels: list[float]) -> None:
    manifest = make_manifest(freq="h", features=[], input_size=4, horizon=3)
    prepared = [
        prepare_series(
            manifest, f"s{i}", [1.0, 2.0, 3.0, 4.0], timestamps=None, start="2024-01-01", freq="h", horizon=2
        )
        for i in range(2)
    ]
    outputs = [window_forecast(mean=np.array([5.0, 6.0, 7.0]), spread=1.5)] * 2
    result = ForecastPipeline(manifest, batcher=None).finish(prepared, outputs, 2, levels)  # type: ignore[arg-type]
    body = forecast_body(manifest, result)
    _validate(body, "200")
    assert [f["id"] for f in body["forecasts"]] == ["s0", "s1"]
    assert set(body["forecasts"][0]["intervals"]) == {f"{level:g}" for level in levels}


@pytest.mark.parametrize("return_forecasts", [False, True])
def test_the_backtest_body_matches_the_declared_200_schema(return_forecasts: bool) -> None:
    metrics = {"mae": 1.0, "mse": 1.0, "rmse": 1.0, "smape": 3.0, "mase": None}
    table = {"model": metrics, "naive": metrics, "seasonal_naive": metrics}
    result = BacktestResult(
        horizon=2,
        windows=2,
        metrics=table,
        coverage={"80": 0.5},
        series=[
            SeriesBacktest(
                "a",
                ["2024-01-02T00:00:00", "2024-01-02T01:00:00"],
                table,
                np.ones((2, 2)) if return_forecasts else None,
            )
        ],
    )
    body = result_body(make_manifest(freq="h", features=[], input_size=4, horizon=3), result)
    _validate(body, "200", "/v1/backtest")
    assert ("forecasts" in body["series"][0]) is return_forecasts


def test_a_body_of_the_wrong_shape_fails_the_schema() -> None:
    with pytest.raises(jsonschema.ValidationError):
        _validate({"model": {"name": "m"}, "forecasts": [{"id": "a", "mean": "high"}]}, "200")


@pytest.mark.parametrize("status", ["404", "413", "422", "503", "504"])
def test_error_bodies_match_the_declared_error_schema(status: str) -> None:
    _validate(error_body("not_found", "model 'x' is not served", None), status)
    _validate(error_body("invalid_input", "series 'a': has 3 points", "a"), status)
    _validate(
        error_body("invalid_request", "values[5] is 'x'", "a", [{"loc": ["body"], "msg": "m", "type": "t"}]), status
    )

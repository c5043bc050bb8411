"""Covariates over HTTP against a real server process: a version trained with a past, a
future-known and a static covariate serves the numbers of its own evaluation when a client posts
them; every bad covariate is a 422 that names the series and the covariate; the model's
description lists them; a version without covariates refuses any."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.support.cli import read_json
from tests.support.servers import Server, start_server

HORIZON = 12


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, covariate_registry: Path, registry_template: Path
) -> Iterator[Server]:
    """demo-driven beside the plain demo models, one server."""
    registry = tmp_path_factory.mktemp("both") / "registry"
    shutil.copytree(registry_template, registry)
    shutil.copytree(covariate_registry / "demo-driven", registry / "demo-driven")
    started = start_server(registry, tmp_path_factory.mktemp("logs"))
    yield started
    started.stop()


def posted_at(covariate_csv: Path, series_id: str, origin: str, *, horizon: int = HORIZON) -> dict[str, Any]:
    """The series as a client posts it at `origin`: its history with the past covariate, the
    future-known one through the horizon, its region."""
    frame = pd.read_csv(covariate_csv, parse_dates=["timestamp"])
    rows = frame[frame["series_id"] == series_id].reset_index(drop=True)
    cut = int(np.flatnonzero(rows["timestamp"] == pd.Timestamp(origin))[0])
    return {
        "id": series_id,
        "start": rows["timestamp"].iloc[0].isoformat(),
        "freq": "h",
        "values": rows["value"].iloc[:cut].tolist(),
        "past_covariates": {"load": rows["load"].iloc[:cut].tolist()},
        "future_covariates": {"temperature": rows["temperature"].iloc[: cut + horizon].tolist()},
        "static_covariates": {"region": rows["region"].iloc[0]},
    }


def samples(covariate_registry: Path) -> list[dict[str, Any]]:
    return read_json(covariate_registry / "demo-driven" / "versions" / "1" / "report.json")["samples"]


def test_a_version_with_covariates_serves_the_numbers_of_its_evaluation(
    server: Server, covariate_registry: Path, covariate_csv: Path
) -> None:
    picked = samples(covariate_registry)[:3]
    series = [posted_at(covariate_csv, s["series_id"], s["origin"]) for s in picked]
    for index, posted in enumerate(series):
        posted["id"] = f"{posted['id']}-{index}"
    with server.client() as client:
        response = client.post("/v1/forecast", json={"model": "demo-driven", "levels": [80], "series": series})
    assert response.status_code == 200, response.text
    forecasts = response.json()["forecasts"]
    for forecast, sample in zip(forecasts, picked, strict=True):
        np.testing.assert_allclose(forecast["mean"], sample["forecast"], rtol=0, atol=1e-4)
        assert forecast["intervals"]["80"]["lower"][0] < forecast["mean"][0] < forecast["intervals"]["80"]["upper"][0]


def test_a_shorter_horizon_needs_the_future_covariate_over_its_steps_only(
    server: Server, covariate_registry: Path, covariate_csv: Path
) -> None:
    sample = samples(covariate_registry)[0]
    whole = posted_at(covariate_csv, sample["series_id"], sample["origin"])
    short = posted_at(covariate_csv, sample["series_id"], sample["origin"], horizon=5)
    with server.client() as client:
        answer = client.post("/v1/forecast", json={"model": "demo-driven", "horizon": 5, "series": [short]})
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json()["forecasts"][0]["mean"], sample["forecast"][:5], rtol=0, atol=1e-4)
    assert len(whole["future_covariates"]["temperature"]) == len(short["future_covariates"]["temperature"]) + 7


def _changed(posted: dict[str, Any], change: str) -> dict[str, Any]:
    count = len(posted["values"])
    if change == "missing":
        posted.pop("future_covariates")
    elif change == "misnamed_kind":
        posted["past_covariates"]["temperature"] = posted.pop("future_covariates")["temperature"][:count]
    elif change == "unknown":
        posted["static_covariates"]["colour"] = "red"
    elif change == "too_short":
        posted["future_covariates"]["temperature"] = posted["future_covariates"]["temperature"][: count + 4]
    elif change == "past_too_short":
        posted["past_covariates"]["load"] = posted["past_covariates"]["load"][1:]
    return posted


@pytest.mark.parametrize(
    ("change", "covariate", "words"),
    [
        ("missing", "temperature", "missing future-known covariate"),
        ("misnamed_kind", "temperature", "post it under 'future_covariates'"),
        ("unknown", "colour", "unknown static covariate"),
        ("too_short", "temperature", "8 step(s) missing"),
        ("past_too_short", "load", "a past covariate is posted with every value"),
    ],
)
def test_each_bad_covariate_is_a_422_naming_the_series_and_the_covariate(
    server: Server, covariate_registry: Path, covariate_csv: Path, change: str, covariate: str, words: str
) -> None:
    sample = samples(covariate_registry)[0]
    posted = _changed(posted_at(covariate_csv, sample["series_id"], sample["origin"]), change)
    with server.client() as client:
        response = client.post("/v1/forecast", json={"model": "demo-driven", "series": [posted]})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["series_id"] == sample["series_id"]
    assert covariate in body["message"] and words in body["message"], body


def test_a_covariate_gap_is_served_and_a_missing_horizon_step_is_a_422_naming_it(
    server: Server, covariate_registry: Path, covariate_csv: Path
) -> None:
    sample = samples(covariate_registry)[0]
    posted = posted_at(covariate_csv, sample["series_id"], sample["origin"])
    posted["past_covariates"]["load"][-5] = float("nan")  # NaN, as a client may send it: a gap
    body = json.dumps({"model": "demo-driven", "series": [posted]}, allow_nan=True)
    with server.client() as client:
        response = client.post("/v1/forecast", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 200, response.text
        assert np.isfinite(response.json()["forecasts"][0]["mean"]).all()
        posted["past_covariates"]["load"][-5] = None  # the same gap, as null
        posted["future_covariates"]["temperature"][-1] = None  # the horizon's last step
        response = client.post("/v1/forecast", json={"model": "demo-driven", "series": [posted]})
    assert response.status_code == 422, response.text
    assert "'temperature' is missing at the last forecast step" in response.json()["message"]


def test_the_model_lists_its_covariates_and_the_openapi_requires_them(server: Server) -> None:
    with server.client() as client:
        described = client.get("/v1/models/demo-driven").json()
        document = client.get("/openapi.json").json()
    assert described["versions"][0]["covariates"] == {"past": ["load"], "future": ["temperature"], "static": ["region"]}
    variants = document["components"]["schemas"]["ServedModelRequest"]["anyOf"]
    driven = next(v for v in variants if v["properties"]["model"]["const"] == "demo-driven")
    series = driven["properties"]["series"]["items"]["anyOf"][0]
    assert {"past_covariates", "future_covariates", "static_covariates"} <= set(series["required"])
    assert series["properties"]["static_covariates"]["properties"]["region"] == {"enum": ["north", "south"]}


def test_a_version_without_covariates_refuses_any(server: Server, covariate_csv: Path) -> None:
    frame = pd.read_csv(covariate_csv)
    rows = frame[frame["series_id"] == "a"].iloc[:100]
    posted = {
        "id": "a",
        "timestamps": rows["timestamp"].tolist(),
        "values": rows["value"].tolist(),
        "future_covariates": {"temperature": [1.0] * 112},
    }
    with server.client() as client:
        response = client.post("/v1/forecast", json={"model": "demo-lstm", "series": [posted]})
    assert response.status_code == 422
    assert "unknown future-known covariate 'temperature'" in response.json()["message"]

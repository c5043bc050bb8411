"""The API over HTTP against a real server process: shapes, selection, no skew, bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.support.servers import Server, series_payload


def test_forecast_shapes_and_intervals(shared_server: Server, history_csv: Path) -> None:
    explicit = series_payload(history_csv, "a")
    by_start = {"id": "b", "start": explicit["timestamps"][0], "freq": "h", "values": explicit["values"]}  # type: ignore[index]
    with shared_server.client() as client:
        response = client.post(
            "/v1/forecast",
            json={"model": "demo-lstm", "horizon": 6, "levels": [80, 95], "series": [explicit, by_start]},
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == {"name": "demo-lstm", "version": 1, "arch": "lstm"}
    assert [f["id"] for f in body["forecasts"]] == ["a", "b"]
    last = pd.Timestamp(explicit["timestamps"][-1])  # type: ignore[index]
    for forecast in body["forecasts"]:
        assert forecast["timestamps"] == [(last + pd.Timedelta(hours=h)).isoformat() for h in range(1, 7)]
        assert len(forecast["mean"]) == 6 and all(math.isfinite(v) for v in forecast["mean"])
        inner, outer = forecast["intervals"]["80"], forecast["intervals"]["95"]
        for step in range(6):
            assert outer["lower"][step] <= inner["lower"][step] <= forecast["mean"][step]
            assert forecast["mean"][step] <= inner["upper"][step] <= outer["upper"][step]
    # the same series given by timestamps or by start + freq gets the same forecast
    assert body["forecasts"][0]["mean"] == body["forecasts"][1]["mean"]


def test_default_horizon_is_the_models(shared_server: Server, history_csv: Path) -> None:
    with shared_server.client() as client:
        body = client.post("/v1/forecast", json={"model": "demo-gru", "series": [series_payload(history_csv)]}).json()
    assert body["model"]["arch"] == "gru"
    assert len(body["forecasts"][0]["mean"]) == 12 and body["forecasts"][0]["intervals"] == {}


def test_alias_and_version_selection(shared_server: Server, history_csv: Path) -> None:
    series = [series_payload(history_csv)]
    with shared_server.client() as client:
        default = client.post("/v1/forecast", json={"model": "demo-lstm", "series": series}).json()
        staging = client.post("/v1/forecast", json={"model": "demo-lstm", "alias": "staging", "series": series}).json()
        pinned = client.post("/v1/forecast", json={"model": "demo-lstm", "version": 2, "series": series}).json()
        listing = client.get("/v1/models/demo-lstm").json()
    assert default["model"]["version"] == 1
    assert staging["model"]["version"] == 2 and pinned["model"]["version"] == 2
    assert staging["forecasts"] == pinned["forecasts"]
    assert default["forecasts"][0]["mean"] != staging["forecasts"][0]["mean"]  # a differently trained version
    assert listing["aliases"] == {"production": 1, "staging": 2}
    assert listing["served"] == {"production": 1, "staging": 2}


def test_forecasts_equal_the_training_jobs_own_predictions(shared_server: Server, registry_template: Path) -> None:
    """No training/serving skew: the API reproduces the forecasts the training job computed on
    its test block (report.json) from the same input window, to 1e-5."""
    report = json.loads((registry_template / "demo-gru" / "versions" / "1" / "report.json").read_text())
    with shared_server.client() as client:
        for sample in report["samples"]:
            series = {
                "id": sample["series_id"],
                "timestamps": sample["history_timestamps"],
                "values": sample["history"],
            }
            response = client.post("/v1/forecast", json={"model": "demo-gru", "levels": [80], "series": [series]})
            assert response.status_code == 200, response.text
            served = response.json()["forecasts"][0]
            assert served["timestamps"] == sample["timestamps"]
            assert served["mean"] == pytest.approx(sample["forecast"], abs=1e-5)
            assert served["intervals"]["80"]["lower"] == pytest.approx(sample["lower_80"], abs=1e-5)
            assert served["intervals"]["80"]["upper"] == pytest.approx(sample["upper_80"], abs=1e-5)


def _bad_input_cases(history_csv: Path) -> list[tuple[str, object, int, str]]:
    good = series_payload(history_csv)
    stamps, values = list(good["timestamps"]), list(good["values"])  # type: ignore[call-overload]

    def series(**change: object) -> dict[str, object]:
        return {"model": "demo-lstm", "series": [{"id": "s1", "timestamps": stamps, "values": values, **change}]}

    unsorted = stamps.copy()
    unsorted[10], unsorted[11] = unsorted[11], unsorted[10]
    duplicate = stamps.copy()
    duplicate[11] = duplicate[10]
    irregular = stamps[:50] + [str(pd.Timestamp(t) + pd.Timedelta(minutes=30)) for t in stamps[50:]]
    many = {"model": "demo-lstm", "series": [{"id": f"s{i}", "start": stamps[0], "values": values} for i in range(51)]}
    return [
        ("malformed json", b'{"model": "demo-lstm", "series": [', 422, "JSON"),
        ("wrong type", series(values=[*values[:5], "x", *values[6:]]), 422, "values[5] is 'x'"),
        # NaN and null are gaps; a series is refused only with too little signal left.
        ("all values missing", series(values=[None] * len(values)), 422, "no observed value"),
        (
            "too little signal",
            json.dumps(series(values=[v if i % 20 == 0 else float("nan") for i, v in enumerate(values)])).encode(),
            422,
            "too little signal",
        ),
        ("infinite value", json.dumps(series(values=[float("inf"), *values[1:]])).encode(), 422, "infinite"),
        ("unsorted", series(timestamps=unsorted), 422, "unsorted"),
        ("duplicate timestamps", series(timestamps=duplicate), 422, "duplicate"),
        ("irregular", series(timestamps=irregular), 422, "irregular"),
        ("length mismatch", series(timestamps=stamps[:-1]), 422, "timestamps but"),
        ("bad timestamp", series(timestamps=["not a date", *stamps[1:]]), 422, "not a date"),
        (
            "wrong frequency",
            {"model": "demo-lstm", "series": [{"id": "s1", "start": stamps[0], "freq": "D", "values": values}]},
            422,
            "frequency",
        ),
        ("horizon too long", {**series(), "horizon": 13}, 422, "horizon"),
        ("horizon zero", {**series(), "horizon": 0}, 422, "horizon"),
        ("level 100", {**series(), "levels": [100]}, 422, "level"),
        ("level 0", {**series(), "levels": [0]}, 422, "level"),
        ("duplicate ids", {"model": "demo-lstm", "series": [good, good]}, 422, "duplicate series"),
        ("no series", {"model": "demo-lstm", "series": []}, 422, "series"),
        ("both axes", series(start=stamps[0]), 422, "either"),
        ("version and alias", {**series(), "version": 1, "alias": "staging"}, 422, "not both"),
        ("unknown model", {**series(), "model": "nope"}, 404, "nope"),
        ("unknown version", {**series(), "version": 99}, 404, "99"),
        ("unknown alias", {**series(), "alias": "canary"}, 404, "canary"),
        ("path in model name", {**series(), "model": "../../etc"}, 422, "invalid model name"),
        ("too many series", many, 413, "limit is 50"),
        ("too many points", series(timestamps=None, start=stamps[0], values=[1.0] * 5001), 413, "5001"),
        ("body too large", json.dumps({**series(), "pad": "x" * 500_000}).encode(), 413, "body"),
    ]


def test_bad_input_gets_a_clear_4xx_and_the_server_stays_healthy(shared_server: Server, history_csv: Path) -> None:
    with shared_server.client() as client:
        for label, payload, status, fragment in _bad_input_cases(history_csv):
            if isinstance(payload, bytes):
                response = client.post("/v1/forecast", content=payload, headers={"content-type": "application/json"})
            else:
                response = client.post("/v1/forecast", json=payload)
            assert response.status_code == status, f"{label}: {response.status_code} {response.text}"
            body = response.json()
            assert set(body) >= {"error", "message"}, label
            assert fragment.lower() in body["message"].lower(), f"{label}: {body['message']}"
            if status == 422 and label not in {
                "malformed json",
                "no series",
                "version and alias",
                "path in model name",
                "horizon too long",
                "horizon zero",
                "level 100",
                "level 0",
                "duplicate ids",
            }:
                assert "s1" in body["message"] or body.get("series_id"), f"{label} does not name the series: {body}"
        assert client.get("/healthz").status_code == 200
        assert (
            client.post(
                "/v1/forecast", json={"model": "demo-lstm", "series": [series_payload(history_csv)]}
            ).status_code
            == 200
        )


def test_model_listing_and_manifest(shared_server: Server) -> None:
    with shared_server.client() as client:
        listing = client.get("/v1/models").json()
        manifest = client.get("/v1/models/demo-gru/versions/1").json()
        report = client.get("/v1/models/demo-gru/versions/1/report").json()
        missing = client.get("/v1/models/demo-gru/versions/7")
        docs = client.get("/docs")
    names = {m["name"]: m for m in listing["models"]}
    assert set(names) == {"demo-lstm", "demo-gru"}
    assert [v["version"] for v in names["demo-lstm"]["versions"]] == [1, 2]
    assert set(names["demo-gru"]["versions"][0]["test_metrics"]) == {"model", "naive", "seasonal_naive"}
    assert manifest["training"]["network"]["arch"] == "gru"
    assert manifest["metrics"]["test"]["model"]["mae"] > 0
    assert report["epochs"] and report["samples"]
    assert missing.status_code == 404 and "7" in missing.json()["message"]
    assert docs.status_code == 200


def test_metrics_count_requests_by_model_version_and_status(shared_server: Server, history_csv: Path) -> None:
    with shared_server.client() as client:
        client.post("/v1/forecast", json={"model": "demo-gru", "series": [series_payload(history_csv)]})
        text = client.get("/metrics").text
    assert 'forecast_requests_total{model="demo-gru",status="200",version="1"}' in text
    for name in (
        "forecast_batch_size_bucket",
        "forecast_queue_wait_seconds",
        "forecast_compute_seconds",
        "forecast_queue_depth",
        "forecast_models_loaded",
        "forecast_request_latency_seconds",
    ):
        assert name in text, name


def test_request_id_is_echoed(shared_server: Server) -> None:
    with shared_server.client() as client:
        assert client.get("/healthz", headers={"X-Request-ID": "abc123"}).headers["x-request-id"] == "abc123"
        assert len(client.get("/healthz").headers["x-request-id"]) == 32


def test_server_errors_are_never_tracebacks(shared_server: Server) -> None:
    with shared_server.client() as client:
        response = client.post("/v1/forecast", content=b"\xff\xfe", headers={"content-type": "application/json"})
    assert response.status_code == 422 and "Traceback" not in response.text
    assert httpx.get(f"{shared_server.url}/healthz").status_code == 200


def test_head_answers_every_get_resource_with_headers_only(shared_server: Server) -> None:
    """Load balancers probe with HEAD; HTTP requires it wherever GET is allowed."""
    with shared_server.client() as client:
        for path in ("/healthz", "/readyz", "/v1/models", "/v1/models/demo-lstm", "/dashboard/", "/metrics"):
            got, head = client.get(path), client.head(path)
            assert head.status_code == got.status_code == 200, path
            assert head.content == b"", path
            assert head.headers["content-type"] == got.headers["content-type"], path
        assert client.head("/v1/models/nope").status_code == 404
        assert client.head("/v1/forecast").status_code == 405  # POST only

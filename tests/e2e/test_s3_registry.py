"""The real commands on an S3 registry (moto's S3 server over HTTP, tests/support/s3.py): `forecast train
--registry s3://...` publishes, `forecast models` lists and promotes, and `forecast serve` with
FORECAST_REGISTRY=s3://... answers forecasts and follows a moved alias. The processes get only the
URL, the endpoint setting and credentials from the environment, as on AWS or MinIO."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.support.cli import run_forecast
from tests.support.s3 import S3Server, s3_server, s3_url
from tests.support.servers import TRAIN_ARGS, series_payload, start_server, wait_until

__all__ = ["s3_server", "s3_url"]  # the fixtures


def test_train_list_promote_and_serve_on_an_s3_registry(
    s3_server: S3Server, s3_url: str, history_csv: Path, tmp_path: Path
) -> None:
    trained = run_forecast(
        "train",
        "--data",
        history_csv,
        "--name",
        "demo-s3",
        "--arch",
        "gru",
        "--registry",
        s3_url,
        *TRAIN_ARGS,
        "--force",
    )
    assert trained.returncode == 0, trained.describe()
    assert f"wrote demo-s3 version 1 to {s3_url}/demo-s3/versions/1" in trained.stdout
    keys = s3_server.keys(s3_url)
    assert {"demo-s3/versions/1/manifest.json", "demo-s3/versions/1/model.safetensors", "demo-s3/aliases.json"} <= set(
        keys
    )

    listed = run_forecast("models", "list", "--registry", s3_url)
    assert listed.returncode == 0, listed.describe()
    assert listed.stdout.strip() == 'demo-s3: versions [1], aliases {"production": 1}'

    server = start_server(s3_url, tmp_path, reload_seconds="0.2")  # type: ignore[arg-type]
    try:
        with server.client() as client:
            answer = client.post("/v1/forecast", json={"model": "demo-s3", "series": [series_payload(history_csv)]})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["model"] == {"name": "demo-s3", "version": 1, "arch": "gru"}
            assert len(body["forecasts"][0]["mean"]) == 12

            promoted = run_forecast("models", "promote", "demo-s3", "1", "--alias", "staging", "--registry", s3_url)
            assert promoted.returncode == 0, promoted.describe()
            assert json.loads(s3_server.get(s3_url, "demo-s3/aliases.json")) == {"production": 1, "staging": 1}

            def staged() -> bool:
                summary = client.get("/v1/models/demo-s3")
                return summary.status_code == 200 and summary.json()["served"].get("staging") == 1

            wait_until(staged, 30.0, "the server to read the moved alias from S3")
            pinned = client.post(
                "/v1/forecast", json={"model": "demo-s3", "alias": "staging", "series": [series_payload(history_csv)]}
            )
            assert pinned.status_code == 200 and pinned.json()["forecasts"] == body["forecasts"]
            assert httpx.get(f"{server.url}/readyz").status_code == 200
    finally:
        assert server.stop() == 0, server.log_text()

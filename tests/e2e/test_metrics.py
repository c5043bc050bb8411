"""/metrics of the real server after real traffic passes Prometheus' own linter, `promtool check
metrics`: what a scrape config and alert rules will be written against."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.support.servers import Server


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool is missing: run `make test`, which installs Debian's prometheus package "
            "(or `apt-get install prometheus`) before running the tests"
        )
    return found


def test_metrics_after_real_traffic_pass_promtool(
    promtool: str,
    server_factory,
    registry: Path,
    history_csv: Path,  # type: ignore[no-untyped-def]
) -> None:
    server: Server = server_factory(registry)
    rows = pd.read_csv(history_csv).query("series_id == 'a'").iloc[:100]
    series = {"id": "a", "timestamps": rows.timestamp.tolist(), "values": rows.value.tolist()}
    with server.client() as client:
        for model in ("demo-lstm", "demo-gru"):
            assert client.post("/v1/forecast", json={"model": model, "series": [series]}).status_code == 200
        # Failures too, so the error labels and the refusal counters have samples.
        assert client.post("/v1/forecast", json={"model": "no-such-model", "series": [series]}).status_code == 404
        # Too little signal: 95 of the 100 points missing (the bound is 90%).
        sparse = {**series, "values": [v if i % 20 == 0 else None for i, v in enumerate(series["values"])]}
        assert client.post("/v1/forecast", json={"model": "demo-lstm", "series": [sparse]}).status_code == 422
        # A transport refusal (api/runtime/transport.py), so its counter has a sample too.
        assert client.get("/healthz", headers={"X-Big": "a" * 20_000}).status_code == 431
        scraped = client.get("/metrics")
    assert scraped.status_code == 200
    text = scraped.text
    # The scrape has the serving metrics with the traffic's samples, so the check is not of an empty page.
    requests = [set(labels.split(",")) for labels in re.findall(r"^forecast_requests_total\{([^}]*)\} ", text, re.M)]
    assert {'model="demo-lstm"', 'version="1"', 'status="200"'} in requests, requests
    assert any('status="404"' in labels for labels in requests) and any('status="422"' in labels for labels in requests)
    assert 'forecast_http_refused_total{reason="headers_too_large"} 1.0' in text
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False
    )
    problems = (checked.stdout + checked.stderr).strip()
    assert checked.returncode == 0 and not problems, f"promtool check metrics:\n{problems}"

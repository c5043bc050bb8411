"""schemathesis against the real server's own OpenAPI document: no 5xx, every status, content
type, header and body as documented. The document names the served models and what each
accepts (api/http/openapi.py), so generated forecast requests reach the networks rather than dying
in validation; the test counts how many did.

`make test` runs a short round; `make fuzz` a long one (FORECAST_FUZZ_EXAMPLES)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import start_server

EXAMPLES = int(os.environ.get("FORECAST_FUZZ_EXAMPLES", "25"))
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


def forecast_statuses(url: str, model: str | None = None) -> Counter[str]:
    """Forecast requests answered so far (of one model, or all), by HTTP status, from the
    server's own counter."""
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        if family.name == "forecast_requests":
            for sample in family.samples:
                if sample.name == "forecast_requests_total" and model in (None, sample.labels["model"]):
                    counts[sample.labels["status"]] += int(sample.value)
    return counts


def test_fuzzing_the_openapi_finds_no_server_error_and_reaches_the_models(
    tmp_path: Path, registry_template: Path, covariate_registry: Path
) -> None:
    """The plain demo models and demo-driven, which reads covariates of every kind."""
    registry = tmp_path / "registry"
    shutil.copytree(registry_template, registry)
    shutil.copytree(covariate_registry / "demo-driven", registry / "demo-driven")
    server = start_server(registry, tmp_path)
    try:
        before = forecast_statuses(server.url)
        run = subprocess.run(
            [
                str(Path(sys.executable).parent / "schemathesis"),
                "run",
                f"{server.url}/openapi.json",
                "--checks",
                CHECKS,
                "--max-examples",
                str(EXAMPLES),
                "--seed",
                "0",
                "--workers",
                "1",
                "--phases",
                "examples,coverage,fuzzing",
                "--request-timeout",
                "60",
                "--generation-database",
                "none",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=1200,
            cwd=tmp_path,
        )
        after = forecast_statuses(server.url)
        driven = forecast_statuses(server.url, "demo-driven")
        healthy = httpx.get(f"{server.url}/healthz").status_code
    finally:
        server.stop()
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    generated = after - before
    total = sum(generated.values())
    summary = {
        "forecast_requests": total,
        "answered_by_a_model": generated["200"],
        "share_answered": round(generated["200"] / max(total, 1), 3),
        "statuses": dict(sorted(generated.items())),
    }
    print(json.dumps(summary))
    assert healthy == 200
    assert "5" not in {status[0] for status in generated}
    # Both positive and negative cases are generated; a good share of all of them must get
    # through validation to a network and back, or the fuzzer is not testing the pipeline.
    assert generated["200"] >= 0.1 * total, summary
    assert driven["200"] >= 1, f"no generated request reached the covariate model: {dict(driven)}"

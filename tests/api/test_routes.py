"""The routes in process, through the whole ASGI app (middleware, access, errors) on a real
registry folder, with httpx's ASGI transport: validation and its error envelopes, the request
and answer limits, ETags and pages of the listing, HEAD, readiness. Milliseconds per test: the
inner loop's view of what tests/e2e checks against real server processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from api.http.app import create_app
from forecast.registry.store import Registry
from forecast.settings import Settings
from tests.support.registries import move_alias, publish_network

HOURS = [f"2024-01-01T{hour:02d}:00:00" for hour in range(24)]
SERIES = {"id": "a", "timestamps": HOURS, "values": [float(hour % 6) for hour in range(24)]}


@pytest.fixture
def registry_root(tmp_path: Path) -> Path:
    registry = Registry(tmp_path / "registry")
    for name in ("beta", "alpha"):
        move_alias(registry, name, publish_network(registry, name))
    publish_network(registry, "alpha")  # version 2: no alias
    return registry.root


@asynccontextmanager
async def serving(root: Path, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The app started (its lifespan: the engine loads the registry) and a client talking to it."""
    app = create_app(Settings(registry=str(root), device="cpu", reload_seconds=3600, **settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            yield client


def run(root: Path, scenario: Callable[[httpx.AsyncClient], Awaitable[None]], **settings: Any) -> None:
    async def main() -> None:
        async with serving(root, **settings) as client:
            await scenario(client)

    asyncio.run(main())


def test_a_forecast_answers_the_served_version_with_its_intervals(registry_root: Path) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/forecast", json={"model": "alpha", "levels": [80], "series": [SERIES]})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"]["name"] == "alpha" and body["model"]["version"] == 1
        [forecast] = body["forecasts"]
        assert forecast["id"] == "a" and len(forecast["mean"]) == 4
        assert forecast["timestamps"][0] == "2024-01-02T00:00:00"
        lower, upper = forecast["intervals"]["80"]["lower"], forecast["intervals"]["80"]["upper"]
        assert all(lo <= mean <= hi for lo, mean, hi in zip(lower, forecast["mean"], upper, strict=True))
        assert response.headers["x-request-id"]

    run(registry_root, scenario)


@pytest.mark.parametrize(
    ("change", "status", "kind", "fragment"),
    [
        ({"model": "gamma"}, 404, "not_found", "known models: ['alpha', 'beta']"),
        ({"version": 9}, 404, "not_found", "version"),
        ({"alias": "canary"}, 404, "not_found", "no alias 'canary'"),
        ({"horizon": 99}, 422, "invalid_input", "horizon"),
        ({"levels": [120]}, 422, "invalid_request", "levels[0] is 120"),
        ({"series": [{**SERIES, "values": SERIES["values"][:-1]}]}, 422, "invalid_input", "series 'a'"),
        ({"series": [SERIES, SERIES]}, 422, "invalid_input", "duplicate series ids ['a']"),
        ({"series": [dict(SERIES, id=f"s{i}") for i in range(3)]}, 413, "too_large", "FORECAST_MAX_SERIES_PER_REQUEST"),
    ],
    ids=["model", "version", "alias", "horizon", "level", "lengths", "duplicates", "series-limit"],
)
def test_bad_requests_get_the_json_envelope_naming_the_problem(
    registry_root: Path, change: dict[str, Any], status: int, kind: str, fragment: str
) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/forecast", json={"model": "alpha", "series": [SERIES], **change})
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert body["error"] == kind and fragment in body["message"], body

    run(registry_root, scenario, max_series_per_request=2)


def test_an_answer_over_its_bound_is_refused_before_anything_is_queued(registry_root: Path) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        series = [dict(SERIES, id=f"s{i}") for i in range(3)]
        response = await client.post("/v1/forecast", json={"model": "alpha", "levels": [80, 95], "series": series})
        assert response.status_code == 413
        assert "60 numbers" in response.json()["message"] and "FORECAST_MAX_ANSWER_VALUES" in response.json()["message"]
        fits = await client.post("/v1/forecast", json={"model": "alpha", "series": series})
        assert fits.status_code == 200

    run(registry_root, scenario, max_answer_values=50)


def test_a_body_that_is_not_json_is_a_422_envelope(registry_root: Path) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/forecast", content=b"{not json", headers={"content-type": "application/json"})
        assert response.status_code == 422 and response.json()["error"] == "invalid_request"

    run(registry_root, scenario)


def test_the_listing_pages_by_name_and_revalidates_with_its_etag(registry_root: Path) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        whole = await client.get("/v1/models")
        assert whole.status_code == 200 and whole.headers["cache-control"] == "no-cache"
        body = whole.json()
        assert [m["name"] for m in body["models"]] == ["alpha", "beta"] and body["next_after"] is None
        alpha = body["models"][0]
        assert [v["version"] for v in alpha["versions"]] == [1, 2] and alpha["served"] == {"production": 1}
        first = (await client.get("/v1/models", params={"limit": 1})).json()
        assert [m["name"] for m in first["models"]] == ["alpha"] and first["next_after"] == "alpha"
        second = (await client.get("/v1/models", params={"limit": 1, "after": "alpha"})).json()
        assert [m["name"] for m in second["models"]] == ["beta"] and second["next_after"] is None
        tag = whole.headers["etag"]
        again = await client.get("/v1/models", headers={"If-None-Match": tag})
        assert again.status_code == 304 and again.content == b""
        assert (await client.get("/v1/models", params={"limit": 0})).status_code == 422

    run(registry_root, scenario)


def test_head_answers_every_probe_without_a_body(registry_root: Path) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        for path in ("/healthz", "/readyz", "/v1/models", "/v1/limits"):
            response = await client.head(path)
            assert response.status_code == 200 and response.content == b"", path

    run(registry_root, scenario)


def test_readiness_names_what_it_serves_and_the_limits_are_published(registry_root: Path) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        body = ready.json()
        assert body["models"] == {"alpha": {"production": 1}, "beta": {"production": 1}} and not body["degraded"]
        limits = (await client.get("/v1/limits")).json()
        assert limits["max_series_per_request"] == 7 and limits["queue_limit_per_client"] == 2048

    run(registry_root, scenario, max_series_per_request=7)


def test_a_report_is_served_in_its_shape_and_one_of_another_shape_is_refused(registry_root: Path) -> None:
    registry = Registry(registry_root)
    hostile = publish_network(registry, "alpha", report=b'{"epochs": "all of them", "samples": []}')

    async def scenario(client: httpx.AsyncClient) -> None:
        empty = await client.get("/v1/models/alpha/versions/1/report")
        assert empty.status_code == 200 and empty.json() == {"epochs": [], "samples": []}
        refused = await client.get(f"/v1/models/alpha/versions/{hostile}/report")
        assert refused.status_code == 500 and refused.json()["error"] == "registry_corrupt"
        assert "report.json is not a training report" in refused.json()["message"]

    run(registry_root, scenario)


def test_a_backtest_reports_the_model_beside_both_baselines(registry_root: Path) -> None:
    long = {"id": "a", "start": "2024-01-01", "freq": "h", "values": [float(hour % 6) for hour in range(60)]}

    async def scenario(client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/backtest", json={"model": "alpha", "origins": 3, "series": [long]})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["windows"] == 3 and set(body["metrics"]) >= {"model", "naive", "seasonal_naive"}
        refused = await client.post("/v1/backtest", json={"model": "alpha", "origins": 0, "series": [long]})
        assert refused.status_code == 422 and refused.json()["error"] == "invalid_request"

    run(registry_root, scenario)


def _counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_each_request_is_counted_under_the_served_model_and_its_final_status(registry_root: Path) -> None:
    """The request counters label by the model that served (never a made-up name from the
    request: it would create a Prometheus series per name) and by the status the client got."""
    long = {"id": "a", "start": "2024-01-01", "freq": "h", "values": [float(hour % 6) for hour in range(60)]}
    forecasts = "forecast_requests_total"
    backtests = "forecast_backtests_total"
    before = {
        "ok": _counted(forecasts, model="alpha", version="1", status="200"),
        "unknown": _counted(forecasts, model="-", version="", status="404"),
        "invalid": _counted(forecasts, model="-", version="", status="422"),
        "backtest": _counted(backtests, model="alpha", version="1", status="200"),
        "backtest_invalid": _counted(backtests, model="alpha", version="1", status="422"),
    }

    async def scenario(client: httpx.AsyncClient) -> None:
        assert (await client.post("/v1/forecast", json={"model": "alpha", "series": [SERIES]})).status_code == 200
        assert (await client.post("/v1/forecast", json={"model": "made-up", "series": [SERIES]})).status_code == 404
        assert (await client.post("/v1/forecast", json={"model": "alpha"})).status_code == 422
        backtest = {"model": "alpha", "origins": 3, "series": [long]}
        assert (await client.post("/v1/backtest", json=backtest)).status_code == 200
        too_far = {**backtest, "horizon": 99}  # refused by the served version, once leased
        assert (await client.post("/v1/backtest", json=too_far)).status_code == 422

    run(registry_root, scenario)
    assert _counted(forecasts, model="alpha", version="1", status="200") == before["ok"] + 1
    assert _counted(forecasts, model="-", version="", status="404") == before["unknown"] + 1
    assert _counted(forecasts, model="-", version="", status="422") == before["invalid"] + 1
    assert _counted(forecasts, model="made-up", version="", status="404") == 0.0
    assert _counted(backtests, model="alpha", version="1", status="200") == before["backtest"] + 1
    assert _counted(backtests, model="alpha", version="1", status="422") == before["backtest_invalid"] + 1

"""Hostile input against a real server with the default limits: huge strings, instants outside
the calendar, numbers beyond the network's dtype, wrong JSON types, broken Unicode and bulk
bodies. Each gets the right status and a small JSON envelope that names the series, quickly,
while /healthz keeps answering; the server serves normally afterwards."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pandas as pd
import pytest

from tests.support.servers import HEALTHZ_BOUND_S, Server, healthz_latencies, start_server, wait_until

INPUT_SIZE, HORIZON = 48, 12  # the e2e models' (tests/e2e/conftest.py TRAIN_ARGS)
# The error body stays small whatever the input; "a few KB" in the issue.
MAX_ERROR_BYTES = 4096


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, registry_template: Path) -> Iterator[Server]:
    running = start_server(registry_template, tmp_path_factory.mktemp("hostile-logs"))
    yield running
    running.stop()


def _series(**overrides: object) -> dict[str, object]:
    series: dict[str, object] = {
        "id": "s1",
        "start": "2024-01-01T00:00:00",
        "freq": "h",
        "values": [10.0 + (step % 24) for step in range(INPUT_SIZE + 4)],
    }
    series.update(overrides)
    return series


def _request(*series: dict[str, object], **fields: object) -> dict[str, object]:
    return {"model": "demo-lstm", "series": list(series) or [_series()], **fields}


def _hourly(first: str, count: int) -> list[str]:
    return [stamp.isoformat() for stamp in pd.date_range(first, periods=count, freq="h")]


@dataclass
class Case:
    label: str
    body: bytes
    status: int
    fragment: str  # in the message, case-insensitive
    names_series: bool = True


def _json(label: str, payload: object, status: int, fragment: str, names_series: bool = True) -> Case:
    return Case(label, orjson.dumps(payload), status, fragment, names_series)


def _cases() -> list[Case]:
    near_end = _hourly("2262-04-09T12:00:00", INPUT_SIZE + 4)  # ends 2262-04-11T15:00; +12 h is past
    return [
        _json("50 KB freq", _request(_series(freq="h" * 50_000)), 422, "at most 32 characters"),
        _json("4 MB start", _request(_series(start="2024-01-01" * 400_000)), 422, "at most 40 characters"),
        _json("1 MB id", _request(_series(id="x" * 1_000_000)), 422, "at most 200 characters"),
        _json("long timestamp", _request(_series(start=None, timestamps=["9" * 5000] * 52)), 422, "at most 40"),
        _json("made-up key", _request(_series(**{"k" * 100_000: 1})), 422, "extra inputs"),
        _json("year 0001", _request(_series(start="0001-01-01T00:00:00")), 422, "outside the range"),
        _json("year 3000", _request(_series(start="3000-01-01T00:00:00")), 422, "outside the range"),
        _json("year 9999", _request(_series(start="9999-12-31T00:00:00")), 422, "outside the range"),
        _json("epoch seconds as start", _request(_series(start="1700000000")), 422, "not an iso 8601"),
        _json(
            "timestamps in year 3000",
            _request(_series(start=None, freq=None, timestamps=[*_hourly("2024-01-01", 51), "3000-01-01T00:00:00"])),
            422,
            "outside the range",
        ),
        _json("window ending near 2262", _request(_series(start=None, timestamps=near_end)), 422, "runs past"),
        _json("start running past 2262", _request(_series(start="2262-04-10T00:00:00")), 422, "run past"),
        _json("value above float32", _request(_series(values=[1e39] * 52)), 422, "float32"),
        _json("true as a value", _request(_series(values=[True] * 52)), 422, "valid number"),
        _json("string as a value", _request(_series(values=["1.5"] * 52)), 422, "valid number"),
        _json("true as the horizon", _request(horizon=True), 422, "valid integer", names_series=False),
        _json("true as the version", _request(version=True), 422, "valid integer", names_series=False),
        _json("true as a level", _request(levels=[True]), 422, "valid number", names_series=False),
        Case(
            "lone surrogate in an id",
            b'{"model": "demo-lstm", "series": [{"id": "\\ud800", "start": "2024-01-01T00:00:00", "values": [1]}]}',
            422,
            "invalid json",
            names_series=False,
        ),
        # NaN is a missing value (a gap, like null); infinity is never data.
        Case("Infinity literal", orjson.dumps(_request()).replace(b"[10.0,", b"[Infinity,"), 422, "infinite"),
        Case("-Infinity literal", orjson.dumps(_request()).replace(b"[10.0,", b"[-Infinity,"), 422, "infinite"),
        _json(
            "points over the request's cap",
            {"model": "demo-lstm", "series": [_series(id=f"s{i}", values=[1.0] * 1001) for i in range(1000)]},
            413,
            "max_points_per_request",
            names_series=False,
        ),
    ]


@pytest.mark.parametrize("case", _cases(), ids=lambda case: case.label)
def test_hostile_input_gets_a_small_clear_error_and_healthz_keeps_answering(server: Server, case: Case) -> None:
    with healthz_latencies(server.url) as latencies, server.client() as client:
        response = client.post("/v1/forecast", content=case.body, headers={"content-type": "application/json"})
    assert response.status_code == case.status, response.text[:500]
    assert response.headers["content-type"] == "application/json"
    assert len(response.content) < MAX_ERROR_BYTES, f"{len(response.content)} bytes"
    assert response.headers.get("x-request-id")
    body = response.json()
    assert case.fragment.lower() in body["message"].lower(), body["message"]
    if case.names_series:
        assert body["series_id"] == "s1" or body["series_id"].startswith("x"), body
    assert max(latencies) < HEALTHZ_BOUND_S, f"/healthz took {max(latencies):.2f}s"


def test_a_bulk_request_of_500_series_of_1000_points_is_served(server: Server) -> None:
    series = [_series(id=f"s{i}", values=[10.0 + (step % 24) + i for step in range(1000)]) for i in range(500)]
    with healthz_latencies(server.url) as latencies, server.client(timeout_s=120) as client:
        response = client.post("/v1/forecast", json=_request(*series, horizon=HORIZON))
    assert response.status_code == 200, response.text[:500]
    forecasts = response.json()["forecasts"]
    assert [f["id"] for f in forecasts] == [f"s{i}" for i in range(500)]
    assert all(len(f["mean"]) == HORIZON for f in forecasts)
    assert max(latencies) < HEALTHZ_BOUND_S, f"/healthz took {max(latencies):.2f}s"


def test_the_server_serves_normally_after_the_hostile_cases(server: Server) -> None:
    with server.client() as client:
        response = client.post("/v1/forecast", json=_request())
    assert response.status_code == 200, response.text
    assert len(response.json()["forecasts"][0]["mean"]) == HORIZON


def test_a_forecast_ending_just_inside_the_calendar_is_served(server: Server) -> None:
    """The range check refuses only what cannot be represented: 12 steps after 2262-04-11T03:00
    end at 15:00, before the last representable instant (23:47)."""
    stamps = _hourly("2262-04-09T00:00:00", INPUT_SIZE + 4)
    with server.client() as client:
        response = client.post("/v1/forecast", json=_request(_series(start=None, timestamps=stamps)))
    assert response.status_code == 200, response.text
    assert response.json()["forecasts"][0]["timestamps"][-1] == "2262-04-11T15:00:00"


def test_an_unexpected_exception_is_a_json_500_with_the_request_id(tmp_path: Path, registry_template: Path) -> None:
    """Every path answers with the envelope: also an exception nobody planned for (the network
    raising RuntimeError), which used to be Starlette's text/plain 500 without X-Request-ID."""
    failing = start_server(registry_template, tmp_path, command=[sys.executable, "-m", "tests.e2e.failing_server"])
    try:
        with failing.client() as client:
            response = client.post("/v1/forecast", json=_request(), headers={"X-Request-ID": "req-500"})
            healthy = client.get("/healthz")
    finally:
        failing.stop()
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"] == "req-500"
    body = response.json()
    assert body["error"] == "internal" and "req-500" in body["message"]
    assert "illegal memory access" not in body["message"]  # the log has it, the client does not
    assert healthy.status_code == 200
    assert "req-500" in failing.log_text() and "RuntimeError" in failing.log_text()


def test_a_client_hanging_up_mid_body_is_a_499_not_an_error(server: Server) -> None:
    """Half a body, then the client is gone: counted as a disconnect, never logged as a crash."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /v1/forecast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000\r\n\r\n" + b'{"model": "demo-lstm", "series": ['
        )
    wait_until(lambda: 'status="499"' in httpx.get(f"{server.url}/metrics").text, 30, "the disconnect to be counted")
    assert "unhandled error" not in server.log_text()
    with server.client() as client:
        assert client.post("/v1/forecast", json=_request()).status_code == 200

"""API keys and rate limits against the real server over HTTP: /v1 needs a valid key and the
right scope, the probes and the dashboard's files stay open, /metrics and /docs follow their
settings, a hashed key file works and a bad one stops the start-up, the access log names keys and
never shows one, and a key over its requests or series per window gets 429 with when to retry,
while other keys go on."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from tests.support.servers import FORECAST, Server, start_server, wait_until

READ_KEY = "read-key-" + "r" * 32
FORECAST_KEY = "forecast-key-" + "f" * 32
ENVELOPE = {"error", "message", "series_id"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def series(history_csv: Path, count: int = 1) -> list[dict[str, object]]:
    """`count` series with distinct ids, each 100 hourly points of series a."""
    frame = pd.read_csv(history_csv)
    rows = frame[frame.series_id == "a"].iloc[:100]
    return [{"id": f"s{n}", "timestamps": rows.timestamp.tolist(), "values": rows.value.tolist()} for n in range(count)]


def forecast_body(history_csv: Path, count: int = 1) -> dict[str, object]:
    return {"model": "demo-lstm", "series": series(history_csv, count)}


def assert_envelope(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == ENVELOPE and body["error"] == error and body["series_id"] is None and body["message"]
    assert response.headers["x-request-id"]


def make_key(name: str, scope: str) -> tuple[str, str]:
    """The operator's helper, as docs/guides/security.md tells them to run it: (key-file line, key)."""
    made = subprocess.run(
        [*FORECAST[:1], "-m", "api.access.keys", "hash", name, scope],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return made.stdout.strip(), made.stderr.strip().rsplit(": ", 1)[-1]


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, registry_template: Path) -> Iterator[Server]:
    """Inline keys, /metrics and /docs as they are by default."""
    server = start_server(
        registry_template,
        tmp_path_factory.mktemp("keyed"),
        api_keys=f"dash:read:{READ_KEY}, batch:forecast:{FORECAST_KEY}",
    )
    yield server
    server.stop()


# --- keys ----------------------------------------------------------------------------------


def test_without_a_key_every_v1_path_is_401_with_a_bearer_challenge(keyed: Server, history_csv: Path) -> None:
    with keyed.client() as client:
        answers = [
            client.get("/v1/models", headers={"X-Request-ID": "no-key-1"}),
            client.get("/v1/models/demo-lstm"),
            client.get("/v1/models/demo-lstm/versions/1"),
            client.get("/v1/no-such-route"),
            client.post("/v1/forecast", json=forecast_body(history_csv)),
            # Refused before the body is read: not the 422 this body would get.
            client.post("/v1/forecast", content=b"{not json", headers={"Content-Type": "application/json"}),
        ]
    for response in answers:
        assert_envelope(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == 'Bearer realm="forecast"'
        assert "Authorization: Bearer" in response.json()["message"]
    assert answers[0].headers["x-request-id"] == "no-key-1"


@pytest.mark.parametrize(
    "authorization", [f"Bearer {READ_KEY}x", f"Bearer {READ_KEY[:-1]}", "Bearer dash", f"Basic {READ_KEY}"]
)
def test_a_wrong_key_is_401(keyed: Server, authorization: str) -> None:
    with keyed.client() as client:
        response = client.get("/v1/models", headers={"Authorization": authorization})
    assert_envelope(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer realm=")


def test_a_read_key_reads_the_registry_and_forecasts(keyed: Server, history_csv: Path) -> None:
    with keyed.client() as client:
        listing = client.get("/v1/models", headers=bearer(READ_KEY))
        manifest = client.get("/v1/models/demo-lstm/versions/1", headers=bearer(READ_KEY))
        forecast = client.post("/v1/forecast", json=forecast_body(history_csv), headers=bearer(READ_KEY))
    assert listing.status_code == 200 and {m["name"] for m in listing.json()["models"]} == {"demo-lstm", "demo-gru"}
    assert manifest.status_code == 200 and manifest.json()["version"] == 1
    assert forecast.status_code == 200 and len(forecast.json()["forecasts"][0]["mean"]) == 12


def test_a_forecast_key_forecasts_and_backtests_but_may_not_read_the_registry(keyed: Server, history_csv: Path) -> None:
    with keyed.client() as client:
        forecast = client.post("/v1/forecast", json=forecast_body(history_csv), headers=bearer(FORECAST_KEY))
        backtest = client.post(
            "/v1/backtest", json={**forecast_body(history_csv), "origins": 3}, headers=bearer(FORECAST_KEY)
        )
        anonymous = client.post("/v1/backtest", json={**forecast_body(history_csv), "origins": 3})
        refused = [
            client.get("/v1/models", headers=bearer(FORECAST_KEY)),
            client.get("/v1/models/demo-lstm/versions/1", headers=bearer(FORECAST_KEY)),
            client.get("/metrics", headers=bearer(FORECAST_KEY)),
        ]
    assert forecast.status_code == 200, forecast.text
    assert backtest.status_code == 200 and backtest.json()["windows"] == 3, backtest.text
    assert_envelope(anonymous, 401, "unauthorized")
    for response in refused:
        assert_envelope(response, 403, "forbidden")
        assert "'batch' has scope forecast" in response.json()["message"]
        assert 'error="insufficient_scope", scope="read"' in response.headers["www-authenticate"]


def test_two_authorization_headers_are_refused_not_guessed(keyed: Server) -> None:
    """Which of two a proxy or the server would read first is not something to guess: 400,
    whether the valid key comes first or second."""
    with keyed.client() as client:
        for first, second in ((READ_KEY, "wrong-" + "x" * 24), ("wrong-" + "x" * 24, READ_KEY)):
            headers = [("Authorization", f"Bearer {first}"), ("Authorization", f"Bearer {second}")]
            response = client.get("/v1/models", headers=headers)
            assert_envelope(response, 400, "ambiguous_credentials")
        assert client.get("/v1/models", headers=bearer(READ_KEY)).status_code == 200


def test_the_public_schema_names_no_model_and_a_key_sees_the_served_ones(keyed: Server) -> None:
    """With keys, /openapi.json stays open (FORECAST_PUBLIC_DOCS) but generic: the served models,
    versions and horizons are for callers who may list them."""
    with keyed.client() as client:
        anonymous = client.get("/openapi.json")
        keyed_answer = client.get("/openapi.json", headers=bearer(READ_KEY))
        wrong = client.get("/openapi.json", headers=bearer("wrong-" + "x" * 24))
    assert anonymous.status_code == keyed_answer.status_code == wrong.status_code == 200
    assert "demo-lstm" not in anonymous.text and "demo-lstm" not in wrong.text
    assert "ForecastRequest" in anonymous.text
    assert "demo-lstm" in keyed_answer.text


def test_the_probes_and_the_dashboards_files_stay_open(keyed: Server) -> None:
    with keyed.client() as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        page = client.get("/dashboard/")
        assert page.status_code == 200 and "Forecast dashboard" in page.text
        assert client.get("/dashboard/js/api.js").status_code == 200
        assert client.get("/", follow_redirects=False).headers["location"] == "/dashboard/"


def test_by_default_metrics_need_a_read_key_and_the_docs_are_open(keyed: Server) -> None:
    with keyed.client() as client:
        assert_envelope(client.get("/metrics"), 401, "unauthorized")
        metrics = client.get("/metrics", headers=bearer(READ_KEY))
        assert metrics.status_code == 200 and "forecast_access_refused_total" in metrics.text
        assert client.get("/docs").status_code == 200
        document = client.get("/openapi.json").json()
    # /docs can send the key: the document declares the scheme on /v1.
    assert document["components"]["securitySchemes"]["apiKey"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key (FORECAST_API_KEYS)",
    }
    assert document["paths"]["/v1/forecast"]["post"]["security"] == [{"apiKey": []}]
    assert "security" not in document["paths"]["/healthz"]["get"]


def test_the_access_log_names_the_key_and_never_shows_one(keyed: Server, history_csv: Path) -> None:
    wrong = "wrong-key-" + "w" * 30
    with keyed.client() as client:
        client.get("/v1/models", headers={**bearer(READ_KEY), "X-Request-ID": "log-read"})
        client.post(
            "/v1/forecast",
            json=forecast_body(history_csv),
            headers={**bearer(FORECAST_KEY), "X-Request-ID": "log-batch"},
        )
        client.get("/v1/models", headers={**bearer(wrong), "X-Request-ID": "log-wrong"})

    def access_lines() -> dict[str, dict[str, object]] | None:
        lines = {}
        for line in keyed.log_text().splitlines():
            if "forecast.access" in line and '"request_id": "log-' in line:
                entry = json.loads(line[line.index("{") :])
                lines[str(entry["request_id"])] = entry
        return lines if len(lines) == 3 else None

    lines = wait_until(access_lines, 10, "the three access log lines")
    assert (lines["log-read"]["key"], lines["log-read"]["status"]) == ("dash", 200)
    assert (lines["log-batch"]["key"], lines["log-batch"]["status"]) == ("batch", 200)
    assert (lines["log-wrong"]["key"], lines["log-wrong"]["status"]) == (None, 401)
    log = keyed.log_text()
    for key in (READ_KEY, FORECAST_KEY, wrong):
        assert key not in log and key[-20:] not in log


# --- the key file and the public settings ---------------------------------------------------


def test_a_hashed_key_file_with_open_metrics_and_closed_docs(
    tmp_path: Path, registry_template: Path, history_csv: Path
) -> None:
    (dash_line, dash_key), (batch_line, batch_key) = make_key("dash", "read"), make_key("nightly", "forecast")
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# made with python -m api.access.keys hash\n{dash_line}\n\n{batch_line}\n")
    server = start_server(registry_template, tmp_path, api_keys=str(keys), public_metrics="true", public_docs="false")
    try:
        key_id, secret = dash_key.split(".")
        with server.client() as client:
            listing = client.get("/v1/models", headers=bearer(dash_key))
            again = client.get("/v1/models", headers=bearer(dash_key))
            forecast = client.post("/v1/forecast", json=forecast_body(history_csv), headers=bearer(batch_key))
            forbidden = client.get("/v1/models", headers=bearer(batch_key))
            wrong_secret = client.get("/v1/models", headers=bearer(f"{key_id}.{secret[::-1]}"))
            metrics = client.get("/metrics")
            docs = [client.get(path) for path in ("/docs", "/openapi.json", "/redoc")]
            docs_with_key = client.get("/openapi.json", headers=bearer(batch_key))
        assert listing.status_code == again.status_code == 200
        assert forecast.status_code == 200, forecast.text
        assert_envelope(forbidden, 403, "forbidden")
        assert_envelope(wrong_secret, 401, "unauthorized")
        assert metrics.status_code == 200 and "forecast_requests_total" in metrics.text
        for response in docs:
            assert_envelope(response, 401, "unauthorized")
        assert docs_with_key.status_code == 200 and "/v1/forecast" in docs_with_key.json()["paths"]
        assert dash_key not in server.log_text() and secret not in server.log_text()
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "error: FORECAST_API_KEYS: cannot read the key file {path}: No such file or directory"),
        (
            "dash admin 0123456789ab scrypt$16384$8$1$00$00\n",
            "error: FORECAST_API_KEYS file {path} line 1: unknown scope",
        ),
    ],
)
def test_a_bad_key_file_stops_the_start_up_with_one_line(
    tmp_path: Path, registry_template: Path, content: str | None, says: str
) -> None:
    path = tmp_path / "keys.txt"
    if content is not None:
        path.write_text(content)
    env = {**os.environ, "FORECAST_REGISTRY": str(registry_template), "FORECAST_API_KEYS": str(path)}
    started = time.monotonic()
    run = subprocess.run([*FORECAST, "serve", "--port", "0"], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]] and errors[0].startswith(says.format(path=path)), run.stderr
    assert "Traceback" not in run.stderr
    assert time.monotonic() - started < 60  # before any model is loaded


# --- rate limits ---------------------------------------------------------------------------

BURST = 8
LIMITED_KEYS = {name: f"{name}-key-" + name * 24 for name in ("a", "b", "c", "d")}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory, registry_template: Path) -> Iterator[Server]:
    server = start_server(
        registry_template,
        tmp_path_factory.mktemp("limited"),
        api_keys=",".join(f"{name}:{key}" for name, key in LIMITED_KEYS.items()),
        rate_limit_requests=f"{BURST}/4 seconds",
        rate_limit_series="6/minute",
    )
    yield server
    server.stop()


def test_a_burst_past_the_requests_limit_gets_429_until_retry_after(limited: Server) -> None:
    key, other = bearer(LIMITED_KEYS["a"]), bearer(LIMITED_KEYS["b"])
    with limited.client() as client:
        admitted = [client.get("/v1/models", headers=key) for _ in range(BURST)]
        refused = client.get("/v1/models", headers={**key, "X-Request-ID": "burst"})
        # Refused before the body is read: not the 422 this body would get.
        unparsed = client.post(
            "/v1/forecast", content=b"{not json", headers={**key, "Content-Type": "application/json"}
        )
        unaffected = client.get("/v1/models", headers=other)
        assert [r.status_code for r in admitted] == [200] * BURST
        assert [int(r.headers["ratelimit-remaining"]) for r in admitted] == list(range(BURST - 1, -1, -1))
        assert {r.headers["ratelimit-limit"] for r in admitted} == {str(BURST)}
        assert {r.headers["ratelimit-policy"] for r in admitted} == {f'{BURST};w=4;comment="requests"'}
        for response in (refused, unparsed):
            assert_envelope(response, 429, "rate_limited")
            assert 1 <= int(response.headers["retry-after"]) <= 4
            assert response.headers["ratelimit-remaining"] == "0" and response.headers["ratelimit-limit"] == str(BURST)
            assert 0 <= int(response.headers["ratelimit-reset"]) <= 4
        assert refused.headers["x-request-id"] == "burst"
        assert "key 'a' is over its limit of 8 requests per 4 seconds" in refused.json()["message"]
        assert unaffected.status_code == 200 and unaffected.headers["ratelimit-remaining"] == str(BURST - 1)
        # Waiting what Retry-After says is the contract under test, not a synchronisation.
        time.sleep(int(unparsed.headers["retry-after"]))
        assert client.get("/v1/models", headers=key).status_code == 200


def test_the_series_limit_counts_the_series_in_each_request(limited: Server, history_csv: Path) -> None:
    key = bearer(LIMITED_KEYS["c"])
    with limited.client() as client:
        two = client.post("/v1/forecast", json=forecast_body(history_csv, 2), headers=key)
        three = client.post("/v1/forecast", json=forecast_body(history_csv, 3), headers=key)
        over = client.post("/v1/forecast", json=forecast_body(history_csv, 2), headers=key)  # 7 > 6
        last = client.post("/v1/forecast", json=forecast_body(history_csv, 1), headers=key)  # 6: fits
        too_many = client.post("/v1/forecast", json=forecast_body(history_csv, 7), headers=key)
    assert two.status_code == three.status_code == last.status_code == 200, (two.text, three.text, last.text)
    # The headers follow the quota nearer to running out: here the series'.
    assert two.headers["ratelimit-policy"] == '6;w=60;comment="series"' and two.headers["ratelimit-remaining"] == "4"
    assert three.headers["ratelimit-remaining"] == "1" and last.headers["ratelimit-remaining"] == "0"
    assert_envelope(over, 429, "rate_limited")
    assert "over its limit of 6 series per minute (FORECAST_RATE_LIMIT_SERIES)" in over.json()["message"]
    assert over.headers["retry-after"] == "60" and over.headers["ratelimit-policy"] == '6;w=60;comment="series"'
    # More series than the limit in one request could never pass: it is too large, not retried.
    assert_envelope(too_many, 413, "too_large")
    assert "send fewer series per request" in too_many.json()["message"]


def test_a_backtest_counts_its_windows_against_the_series_limit(limited: Server, history_csv: Path) -> None:
    key = bearer(LIMITED_KEYS["d"])
    with limited.client() as client:
        four = client.post("/v1/backtest", json={**forecast_body(history_csv), "origins": 4}, headers=key)
        over = client.post("/v1/backtest", json={**forecast_body(history_csv), "origins": 3}, headers=key)  # 7 > 6
        too_many = client.post("/v1/backtest", json={**forecast_body(history_csv), "origins": 7}, headers=key)
    assert four.status_code == 200 and four.headers["ratelimit-remaining"] == "2", four.text
    assert_envelope(over, 429, "rate_limited")
    assert_envelope(too_many, 413, "too_large")
    assert "fewer origins" in too_many.json()["message"]

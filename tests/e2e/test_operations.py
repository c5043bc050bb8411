"""Operating the service: overload, hot reload under load while a trainer process publishes,
a corrupted new version refused, and graceful shutdown. Real server and trainer processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from api.http.schemas import ModelList
from forecast.client import Client
from tests.support.servers import (
    FORECAST,
    HEALTHZ_BOUND_S,
    TRAIN_ARGS,
    Server,
    healthz_latencies,
    run_cli,
    series_payload,
    wait_until,
)

RELOAD_S = 0.5
LOAD_TIMEOUT_S = 30.0


def test_a_full_queue_answers_503_with_retry_after_and_nothing_breaks(
    server_factory, registry: Path, history_csv: Path
) -> None:  # type: ignore[no-untyped-def]
    server = server_factory(registry, queue_limit="2", max_wait_ms="50")
    one = series_payload(history_csv, "a")
    three = [dict(one, id=f"s{i}") for i in range(3)]
    with server.client() as client:
        refused = client.post("/v1/forecast", json={"model": "demo-lstm", "series": three})
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) >= 1
        assert "queue is full" in refused.json()["message"]

        def send(_: int) -> int:
            return client.post("/v1/forecast", json={"model": "demo-lstm", "series": [one]}).status_code

        with ThreadPoolExecutor(16) as pool:
            statuses = Counter(pool.map(send, range(64)))
        assert set(statuses) <= {200, 503}, statuses
        assert statuses[200] > 0
        assert client.post("/v1/forecast", json={"model": "demo-lstm", "series": [one]}).status_code == 200
        assert client.get("/readyz").status_code == 200


def queue_depth(server: Server) -> float:
    """Series waiting in the server's batchers, as /metrics reports them."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("forecast_queue_depth{"))


def test_a_small_client_is_answered_ahead_of_another_clients_backlog(
    server_factory, registry: Path, history_csv: Path
) -> None:  # type: ignore[no-untyped-def]
    """One client (127.0.0.1) keeps four 250-series requests queued; another (127.0.0.2) sends one
    series. Batches take turns between the clients, so the single series is answered while most
    of the backlog, queued before it, still waits (first come, first served would answer it last)."""
    server = server_factory(registry, max_batch_size="2", max_wait_ms="0")
    one = series_payload(history_csv, "a")
    bulk_body = {"model": "demo-lstm", "series": [dict(one, id=f"s{i}") for i in range(250)]}

    def bulk_request(_: int) -> httpx.Response:
        return httpx.post(f"{server.url}/v1/forecast", json=bulk_body, timeout=120)

    other_address = httpx.HTTPTransport(local_address="127.0.0.2")
    with ThreadPoolExecutor(4) as pool, httpx.Client(base_url=server.url, transport=other_address, timeout=60) as other:
        backlog = [pool.submit(bulk_request, i) for i in range(4)]
        wait_until(lambda: queue_depth(server) >= 600, 60, "the bulk client's backlog to queue", interval_s=0.01)
        small = other.post("/v1/forecast", json={"model": "demo-lstm", "series": [one]})
        still_waiting = sum(not request.done() for request in backlog)
        assert small.status_code == 200, small.text
        assert still_waiting >= 2, f"only {still_waiting} of the 4 earlier bulk requests were still waiting"
        assert [request.result().status_code for request in backlog] == [200] * 4


def test_a_client_over_its_share_of_the_queue_gets_503_while_others_are_served(
    server_factory, registry: Path, history_csv: Path
) -> None:  # type: ignore[no-untyped-def]
    server = server_factory(registry, max_batch_size="1", max_wait_ms="0", queue_limit_per_client="300")
    one = series_payload(history_csv, "a")
    bulk_body = {"model": "demo-lstm", "series": [dict(one, id=f"s{i}") for i in range(250)]}
    other_address = httpx.HTTPTransport(local_address="127.0.0.2")
    with ThreadPoolExecutor(2) as pool, httpx.Client(base_url=server.url, transport=other_address, timeout=60) as other:
        first = pool.submit(lambda: httpx.post(f"{server.url}/v1/forecast", json=bulk_body, timeout=120))
        wait_until(lambda: queue_depth(server) >= 100, 60, "the first bulk request to queue", interval_s=0.01)
        refused = httpx.post(f"{server.url}/v1/forecast", json=bulk_body, timeout=60)
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
        assert "FORECAST_QUEUE_LIMIT_PER_CLIENT" in refused.json()["message"]
        theirs = other.post("/v1/forecast", json={"model": "demo-lstm", "series": [one]})
        assert theirs.status_code == 200, theirs.text
        assert first.result().status_code == 200


def test_hot_reload_under_load_serves_the_promoted_version_without_failures(
    server_factory,
    registry: Path,
    history_csv: Path,  # type: ignore[no-untyped-def]
) -> None:
    server = server_factory(registry, reload_seconds=str(RELOAD_S))
    payload = {"model": "demo-gru", "series": [series_payload(history_csv, "b")]}
    stop = threading.Event()
    seen: list[tuple[int, int | None]] = []

    def client_loop() -> None:
        with server.client() as client:
            while not stop.is_set():
                response = client.post("/v1/forecast", json=payload)
                version = response.json()["model"]["version"] if response.status_code == 200 else None
                seen.append((response.status_code, version))

    clients = [threading.Thread(target=client_loop) for _ in range(4)]
    for thread in clients:
        thread.start()
    try:
        wait_until(lambda: len(seen) >= 20, 60, "traffic on version 1")
        # The trainer job, as the container would run it: a new version, then promoted.
        trainer = subprocess.run(
            [
                *FORECAST,
                "train",
                "--data",
                str(history_csv),
                "--name",
                "demo-gru",
                "--arch",
                "gru",
                *TRAIN_ARGS,
                "--seed",
                "5",
                "--registry",
                str(registry),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert trainer.returncode == 0, trainer.stderr
        run_cli("models", "promote", "demo-gru", "2", registry=registry)
        wait_until(lambda: any(v == 2 for _, v in seen[-8:]), RELOAD_S + LOAD_TIMEOUT_S, "version 2 to be served")
        served_before = len(seen)
        wait_until(lambda: len(seen) >= served_before + 20, 60, "more traffic on version 2")
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=30)
    statuses = Counter(status for status, _ in seen)
    assert statuses == {200: len(seen)}, statuses  # zero failed requests across the swap
    versions = [v for _, v in seen]
    first_new = versions.index(2)
    assert set(versions[:first_new]) == {1}
    assert versions[-1] == 2


def test_a_corrupted_new_version_is_refused_and_the_old_keeps_serving(
    server_factory, registry: Path, history_csv: Path
) -> None:  # type: ignore[no-untyped-def]
    server = server_factory(registry, reload_seconds=str(RELOAD_S))
    payload = {"model": "demo-gru", "series": [series_payload(history_csv)]}
    # A trainer publishes version 2, then its weights are damaged on disk before the server looks.
    run_cli(
        "train",
        "--data",
        str(history_csv),
        "--name",
        "demo-gru",
        "--arch",
        "gru",
        *TRAIN_ARGS,
        "--seed",
        "3",
        registry=registry,
    )
    weights = registry / "demo-gru" / "versions" / "2" / "model.safetensors"
    damaged = bytearray(weights.read_bytes())
    damaged[-1] ^= 0xFF
    weights.write_bytes(bytes(damaged))
    run_cli("models", "promote", "demo-gru", "2", registry=registry)
    with server.client() as client:

        def failure_counted() -> bool:
            return 'forecast_model_load_failures_total{model="demo-gru"} 1.0' in client.get("/metrics").text

        wait_until(failure_counted, RELOAD_S + LOAD_TIMEOUT_S, "the load failure to be counted")
        response = client.post("/v1/forecast", json=payload)
        assert response.status_code == 200 and response.json()["model"]["version"] == 1
        assert client.get("/v1/models/demo-gru").json()["served"]["production"] == 1
        assert client.get("/readyz").status_code == 200
    assert "sha256" in server.log_text()


def test_graceful_shutdown_fails_readiness_first_and_serves_queued_requests(
    server_factory,
    registry: Path,
    history_csv: Path,  # type: ignore[no-untyped-def]
) -> None:
    server = server_factory(registry, shutdown_grace_s="3", max_wait_ms="200", max_batch_size="512")
    payload = {"model": "demo-lstm", "series": [dict(series_payload(history_csv), id=f"s{i}") for i in range(40)]}
    with server.client() as client:
        assert client.get("/readyz").status_code == 200
        server.process.send_signal(signal.SIGTERM)
        wait_until(lambda: client.get("/readyz").status_code == 503, 10, "readiness to fail")
        # Still draining: requests that arrive now are served.
        with ThreadPoolExecutor(4) as pool:
            responses = list(pool.map(lambda _: client.post("/v1/forecast", json=payload), range(4)))
    assert [r.status_code for r in responses] == [200] * 4
    assert all(len(r.json()["forecasts"]) == 40 for r in responses)
    assert server.process.wait(timeout=60) == 0
    try:
        httpx.get(f"{server.url}/healthz", timeout=2)
        raise AssertionError("the server still answers after shutdown")
    except httpx.TransportError:
        pass


def test_model_listings_carry_an_etag_and_answer_304_until_the_registry_changes(
    registry: Path,
    server_factory,  # type: ignore[no-untyped-def]
) -> None:
    server = server_factory(registry, reload_seconds=str(RELOAD_S))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for path in ("/v1/models", "/v1/models/demo-lstm"):
            first = client.get(path)
            tag = first.headers["etag"]
            assert first.status_code == 200 and first.headers["cache-control"] == "no-cache"
            again = client.get(path, headers={"If-None-Match": tag})
            assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == tag
            assert client.get(path, headers={"If-None-Match": '"something-else"'}).status_code == 200

        tag = client.get("/v1/models/demo-lstm").headers["etag"]
        run_cli("models", "promote", "demo-lstm", "1", "--alias", "canary", registry=registry)
        changed = client.get("/v1/models/demo-lstm", headers={"If-None-Match": tag})
        assert changed.status_code == 200 and changed.headers["etag"] != tag
        assert changed.json()["aliases"]["canary"] == 1


def many_models(registry: Path, count: int) -> list[str]:
    """`count` more models of one version each, without aliases (listed, not loaded): demo-lstm
    version 1's files, hard-linked, with the manifest renamed."""
    source = registry / "demo-lstm" / "versions" / "1"
    manifest = json.loads((source / "manifest.json").read_text())
    names = [f"model-{index:04d}" for index in range(count)]
    for name in names:
        folder = registry / name / "versions" / "1"
        folder.mkdir(parents=True)
        for file in ("model.safetensors", "report.json"):
            os.link(source / file, folder / file)
        (folder / "manifest.json").write_text(json.dumps({**manifest, "name": name}))
    return names


def test_listing_two_thousand_models_is_paged_from_memory_while_healthz_answers(
    registry: Path,
    server_factory,  # type: ignore[no-untyped-def]
) -> None:
    names = sorted([*many_models(registry, 2000), "demo-gru", "demo-lstm"])
    server = server_factory(registry, reload_seconds=str(RELOAD_S))

    def listing(client: httpx.Client, **params: object) -> ModelList:
        response = client.get("/v1/models", params=params)
        assert response.status_code == 200, response.text[:300]
        return ModelList.model_validate_json(response.content)

    with healthz_latencies(server.url) as latencies, httpx.Client(base_url=server.url, timeout=60) as client:
        with ThreadPoolExecutor(4) as pool:  # four dashboards polling at once share one build
            pages = list(pool.map(lambda _: listing(httpx.Client(base_url=server.url, timeout=60)), range(4)))
        assert all(page == pages[0] for page in pages)
        first = pages[0]
        assert [m.name for m in first.models] == names[:1000] and first.next_after == names[999]
        second = listing(client, after=first.next_after)
        third = listing(client, after=second.next_after)
        assert [m.name for m in [*first.models, *second.models, *third.models]] == names
        assert third.next_after is None
        assert [m.name for m in listing(client, limit=5, after="model-0100").models] == [
            f"model-{index:04d}" for index in range(101, 106)
        ]
        lstm = next(m for m in first.models if m.name == "demo-lstm")
        assert [v.version for v in lstm.versions] == [1, 2] and lstm.served == {"production": 1, "staging": 2}
        tag = client.get("/v1/models").headers["etag"]
        assert client.get("/v1/models", headers={"If-None-Match": tag}).status_code == 304
        with Client(server.url) as python_client:  # follows the pages
            assert [model["name"] for model in python_client.models()] == names
    assert max(latencies) < HEALTHZ_BOUND_S, f"/healthz took {max(latencies):.2f}s"

    with httpx.Client(base_url=server.url, timeout=60) as client:  # a publish shows at the next poll
        shutil.rmtree(registry / "model-0000")
        wait_until(
            lambda: listing(client, limit=1).models[0].name == "demo-gru", 30, "the removed model to leave the listing"
        )
        assert client.get("/v1/models", params={"limit": 0}).status_code == 422

"""`forecast serve` with two workers on one port: both answer forecasts, a promotion reaches
both, /metrics is one merged view that Prometheus' linter accepts, and SIGTERM turns readiness
off in every worker, drains them and exits 0 with no worker left behind. Real processes over
HTTP; the access log's `[pid]` says which worker answered each request id."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import (
    Server,
    run_cli,
    series_payload,
    start_server,
    started_inference_processes,
    started_workers,
    wait_until,
)

WORKERS = 2
RELOAD_S = 0.5
GRACE_S = 4.0  # long enough to see every worker's readiness off and serve a few requests
LOAD_TIMEOUT_S = 60.0  # two workers importing torch and loading models on a busy 2-core machine
ACCESS_LINE = re.compile(r"forecast\.access \[(\d+)\]: (\{.*\})$")


@pytest.fixture(scope="module", params=["per_worker", "per_device"])
def two_workers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, registry_template: Path
) -> Iterator[Server]:
    """One server per inference mode (two workers take a while to start on two cores): each runs
    its own forward passes, or they all go to one inference process. The shutdown test, last in
    the file, ends it."""
    registry = tmp_path_factory.mktemp("workers") / "registry"
    shutil.copytree(registry_template, registry)
    server = start_server(
        registry,
        registry.parent,
        workers=str(WORKERS),
        reload_seconds=str(RELOAD_S),
        shutdown_grace_s=str(GRACE_S),
        inference=request.param,
    )
    yield server
    server.stop()


def registry_of(server: Server) -> Path:
    return server.log.parent / "registry"


def send(server: Server, path: str, payload: dict[str, Any] | None, count: int) -> list[tuple[str, httpx.Response]]:
    """`count` requests at once, each on a new connection so that any worker may accept it."""

    def one(_: int) -> tuple[str, httpx.Response]:
        request_id = uuid.uuid4().hex
        headers = {"X-Request-ID": request_id}
        with httpx.Client(base_url=server.url, timeout=30) as client:
            response = (
                client.post(path, json=payload, headers=headers) if payload else client.get(path, headers=headers)
            )
        return request_id, response

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(count)))


def answered_by(server: Server, request_ids: set[str]) -> dict[str, int]:
    """request id -> the pid of the worker that logged it, once every id is in the log."""

    def found() -> dict[str, int] | None:
        pids = {}
        for line in server.log_text().splitlines():
            match = ACCESS_LINE.search(line)
            if match and (request_id := json.loads(match.group(2))["request_id"]) in request_ids:
                pids[request_id] = int(match.group(1))
        return pids if len(pids) == len(request_ids) else None

    return wait_until(found, 10, "the access log lines of the requests")


def until_every_worker_answered(
    server: Server, path: str, payload: dict[str, Any] | None, check: Callable[[httpx.Response], bool]
) -> list[httpx.Response]:
    """Send rounds of requests until one round is answered by every worker and each answer
    passes `check`; every response of every round."""
    workers = set(started_workers(server))
    assert len(workers) == WORKERS, server.log_text()
    responses: list[httpx.Response] = []

    def round_passes() -> bool:
        answers = send(server, path, payload, 16)
        responses.extend(response for _, response in answers)
        pids = answered_by(server, {request_id for request_id, _ in answers})
        return set(pids.values()) == workers and all(check(response) for _, response in answers)

    wait_until(round_passes, LOAD_TIMEOUT_S, f"a round answered by all {WORKERS} workers", interval_s=0.2)
    return responses


def served_forecasts(metrics: str, model: str) -> float:
    """forecast_requests_total of the model's 200s, every version, from a /metrics text."""
    total = 0.0
    for labels, value in re.findall(r"^forecast_requests_total\{([^}]*)\} (\S+)$", metrics, re.M):
        if {f'model="{model}"', 'status="200"'} <= set(labels.split(",")):
            total += float(value)
    return total


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: `apt-get install prometheus` (make test installs it)")
    return found


def test_two_workers_serve_forecasts_and_metrics_are_one_merged_view(
    two_workers: Server, history_csv: Path, promtool: str, request: pytest.FixtureRequest
) -> None:
    payload = {"model": "demo-lstm", "series": [series_payload(history_csv, "a")]}
    with two_workers.client() as client:
        before = served_forecasts(client.get("/metrics").text, "demo-lstm")
        responses = until_every_worker_answered(two_workers, "/v1/forecast", payload, lambda r: r.status_code == 200)
        text = client.get("/metrics").text
    # Both workers answered, so a per-process view would count only part of these.
    assert served_forecasts(text, "demo-lstm") - before == len(responses)
    assert "pid=" not in text  # every gauge is combined across workers, none listed per process
    assert re.search(r'^forecast_queue_depth\{model="demo-lstm",version="1"\} 0\.0$', text, re.M), text
    device_passes = re.search(r'^forecast_device_batch_size_count\{model="demo-lstm",version="1"\} (\S+)$', text, re.M)
    if request.node.callspec.params["two_workers"] == "per_device":
        # Every forward pass ran in the one inference process, each worker's batches sent there.
        assert len(started_inference_processes(two_workers)) == 1, two_workers.log_text()
        assert device_passes is not None and float(device_passes.group(1)) >= 1, text
    else:
        assert not started_inference_processes(two_workers) and device_passes is None
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False
    )
    problems = (checked.stdout + checked.stderr).strip()
    assert checked.returncode == 0 and not problems, f"promtool check metrics:\n{problems}"


def test_a_promotion_reaches_every_worker(two_workers: Server, history_csv: Path) -> None:
    payload = {"model": "demo-lstm", "series": [series_payload(history_csv, "a")]}
    run_cli("models", "promote", "demo-lstm", "2", registry=registry_of(two_workers))

    def on_version_2(response: httpx.Response) -> bool:
        return response.status_code == 200 and response.json()["model"]["version"] == 2

    # A round of answers from both workers, every one naming version 2: each worker reloaded.
    responses = until_every_worker_answered(two_workers, "/v1/forecast", payload, on_version_2)
    assert {response.status_code for response in responses} == {200}  # none failed during the switch


def test_sigterm_turns_readiness_off_in_every_worker_drains_and_exits_zero(
    two_workers: Server, history_csv: Path
) -> None:
    server = two_workers
    payload = {"model": "demo-gru", "series": [series_payload(history_csv, "b")]}
    until_every_worker_answered(server, "/readyz", None, lambda r: r.status_code == 200)
    workers = started_workers(server)
    metrics_dir = Path(re.search(r"merged from (\S+)", server.log_text()).group(1))  # type: ignore[union-attr]
    assert metrics_dir.is_dir()

    server.process.send_signal(signal.SIGTERM)
    # Within the grace every worker answers readiness 503 and still serves forecasts.
    until_every_worker_answered(server, "/readyz", None, lambda r: r.status_code == 503)
    during_grace = send(server, "/v1/forecast", payload, 4)
    assert [response.status_code for _, response in during_grace] == [200] * 4

    assert server.process.wait(timeout=90) == 0, server.log_text()
    left = [pid for pid in [*workers, *started_inference_processes(server)] if Path(f"/proc/{pid}").exists()]
    assert not left, f"workers or inference processes still running after the supervisor exited: {left}"
    assert not metrics_dir.exists(), "the metrics folder outlived the server"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/healthz", timeout=2)


def test_a_rate_limit_holds_across_two_workers(tmp_path: Path, registry_template: Path) -> None:
    """Each worker counts in its own memory, so each allows half: the service as a whole never
    serves more than the limit, however the kernel spreads the connections (before: up to one
    limit per worker), and the start-up says so."""
    server = start_server(registry_template, tmp_path, workers="2", rate_limit_requests="8/minute")
    try:
        answers = [response.status_code for _, response in send(server, "/v1/models", None, 30)]
        log = server.log_text()
    finally:
        server.stop()
    assert set(answers) <= {200, 429} and 1 <= answers.count(200) <= 8, answers
    assert "each of the 2 workers allows 4 requests per minute" in log

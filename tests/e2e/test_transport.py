"""Transport limits against the real server over raw sockets: slow or oversized clients are cut
off at the limits, the probes keep answering meanwhile, and the server serves forecasts after.

Two servers: `tight` with one-second deadlines, to watch them expire, and `capped` with long
deadlines and small caps, so that what closes connections there is the cap, not a deadline.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pandas as pd
import pytest

from tests.support.servers import Server, start_server, wait_until

DEADLINE_S = 1.0
# Slack past a deadline for the server's timer and this machine's load: the deadlines fire on
# the event loop, which other tests' processes share the cores with.
LATE_S = 1.5
MAX_HEADER_BYTES = 8192
MAX_CONNECTIONS = 20
MAX_REQUESTS = 2
PROBE_BUDGET_S = 0.5  # "a fraction of a second"


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory, registry_template: Path) -> Iterator[Server]:
    server = start_server(
        registry_template,
        tmp_path_factory.mktemp("tight"),
        header_timeout_s=str(DEADLINE_S),
        body_timeout_s=str(DEADLINE_S),
        keep_alive_timeout_s=str(DEADLINE_S),
        send_timeout_s=str(DEADLINE_S),
        max_header_bytes=str(MAX_HEADER_BYTES),
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory, registry_template: Path) -> Iterator[Server]:
    server = start_server(
        registry_template,
        tmp_path_factory.mktemp("capped"),
        header_timeout_s="60",
        body_timeout_s="60",
        max_connections=str(MAX_CONNECTIONS),
        max_concurrent_requests=str(MAX_REQUESTS),
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def forecast_request(history_csv: Path) -> dict[str, Any]:
    rows = pd.read_csv(history_csv).query("series_id == 'a'").iloc[:100]
    series = {"id": "a", "timestamps": rows.timestamp.tolist(), "values": rows.value.tolist()}
    return {"model": "demo-lstm", "series": [series]}


# --- raw sockets ----------------------------------------------------------------------------


def connect(server: Server) -> socket.socket:
    address = urlsplit(server.url)
    sock = socket.create_connection((address.hostname, address.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until_closed(sock: socket.socket, limit_s: float) -> bytes:
    """Everything the server sends until it closes the connection; fails if it stays open."""
    received = b""
    deadline = time.monotonic() + limit_s
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        except TimeoutError:
            raise AssertionError(
                f"the server kept the connection open for {limit_s}s; got {received[:200]!r}"
            ) from None
        if not chunk:
            return received
        received += chunk


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response with a Content-Length body, leaving the connection usable."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return int(status_line.split()[1]), headers, body


def parse_refusal(raw: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


def is_closed_by_server(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(65536) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        sock.setblocking(True)


# --- what a user checks afterwards ------------------------------------------------------------


def timed_healthz(server: Server) -> float:
    """Seconds /healthz took on a fresh connection; it must be 200."""
    started = time.monotonic()
    response = httpx.get(f"{server.url}/healthz", timeout=10)
    assert response.status_code == 200, response.text
    return time.monotonic() - started


def assert_serves_forecasts(server: Server, forecast_request: dict[str, Any]) -> None:
    assert server.process.poll() is None, "the server process died"
    with server.client() as client:
        response = client.post("/v1/forecast", json=forecast_request)
    assert response.status_code == 200, response.text
    assert len(response.json()["forecasts"][0]["mean"]) == 12


# --- deadlines ------------------------------------------------------------------------------


def test_trickled_headers_get_408_and_are_closed_at_the_header_deadline(
    tight: Server, forecast_request: dict[str, Any]
) -> None:
    """Slowloris: a header byte every 0.2 s keeps an idle timer happy but not a deadline."""
    sock = connect(tight)
    started = time.monotonic()
    sock.sendall(b"POST /v1/forecast HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    received = b""
    while time.monotonic() - started < DEADLINE_S + LATE_S:
        sock.settimeout(0.2)
        try:
            received = sock.recv(65536)
            break
        except TimeoutError:
            sock.sendall(b"a")  # time passing is the point of this test
    received += read_until_closed(sock, LATE_S)
    closed_after_s = time.monotonic() - started
    status, headers, body = parse_refusal(received)
    assert status == 408 and headers["connection"] == "close"
    assert body["error"] == "request_timeout" and "FORECAST_HEADER_TIMEOUT_S" in body["message"]
    assert DEADLINE_S * 0.9 <= closed_after_s <= DEADLINE_S + LATE_S
    assert_serves_forecasts(tight, forecast_request)


def test_a_connection_that_sends_nothing_is_closed_at_the_header_deadline(tight: Server) -> None:
    sock = connect(tight)
    started = time.monotonic()
    assert read_until_closed(sock, DEADLINE_S + LATE_S) == b"", "nothing was asked: nothing to answer"
    assert time.monotonic() - started >= DEADLINE_S * 0.9


def test_a_stalled_body_gets_408_and_is_closed_at_the_body_deadline(
    tight: Server, forecast_request: dict[str, Any]
) -> None:
    sock = connect(tight)
    sock.sendall(
        b"POST /v1/forecast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n" + b'{"model": "demo-lstm", '
    )
    started = time.monotonic()
    raw = read_until_closed(sock, DEADLINE_S + LATE_S)
    closed_after_s = time.monotonic() - started
    status, _, body = parse_refusal(raw)
    assert status == 408, raw
    assert body["error"] == "request_timeout" and "FORECAST_BODY_TIMEOUT_S" in body["message"]
    assert raw.count(b"HTTP/1.1") == 1, "the application's own answer to the disconnect must not follow"
    assert DEADLINE_S * 0.9 <= closed_after_s <= DEADLINE_S + LATE_S
    assert_serves_forecasts(tight, forecast_request)


def test_an_idle_keep_alive_connection_is_closed_after_its_timeout_and_a_busy_one_is_not(tight: Server) -> None:
    sock = connect(tight)
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    sock.sendall(request)
    assert read_response(sock)[0] == 200
    # Reused within the timeout, the connection serves the next request and the timer restarts.
    time.sleep(DEADLINE_S / 2)
    sock.sendall(request)
    assert read_response(sock)[0] == 200
    idle_from = time.monotonic()
    assert read_until_closed(sock, DEADLINE_S + LATE_S) == b""
    assert time.monotonic() - idle_from >= DEADLINE_S * 0.9


def refusals(server: Server, reason: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    found = re.search(rf'^forecast_http_refused_total{{reason="{reason}"}} (\S+)$', text, flags=re.M)
    return float(found.group(1)) if found else 0.0


def test_a_client_that_stops_reading_is_dropped_at_the_send_timeout(
    tight: Server, forecast_request: dict[str, Any]
) -> None:
    """A slow reader must not hold a request slot for ever. The kernel buffers a few MB per
    connection (tcp_wmem), so the client pipelines 200 requests for a 50 KB file (10 MB of
    answers) and reads nothing: once the server's own buffer is full and has waited the send
    timeout, the connection is dropped."""
    asset = "/dashboard/vendor/uplot/uPlot.iife.min.js"
    assert httpx.get(f"{tight.url}{asset}", timeout=10).status_code == 200
    before = refusals(tight, "send_timeout")
    address = urlsplit(tight.url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window, then nothing read
    sock.connect((address.hostname, address.port))
    sock.sendall(f"GET {asset} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * 200)
    started = time.monotonic()
    wait_until(lambda: refusals(tight, "send_timeout") > before, 30, "the stalled connection to be dropped")
    assert time.monotonic() - started >= DEADLINE_S * 0.9
    # What the kernel had queued still arrives, then the end: the rest of the answers never come.
    received = read_until_closed(sock, 30)
    assert received.startswith(b"HTTP/1.1 200") and received.count(b"HTTP/1.1 200") < 200
    assert_serves_forecasts(tight, forecast_request)


# --- sizes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("header_bytes", [2 * MAX_HEADER_BYTES, 1024 * 1024])
def test_oversized_headers_get_431_and_the_connection_is_closed(
    tight: Server, forecast_request: dict[str, Any], header_bytes: int
) -> None:
    sock = connect(tight)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * header_bytes + b"\r\n\r\n")
    raw = read_until_closed(sock, LATE_S + 2.0)  # the server lingers up to 2 s reading what is left
    status, headers, body = parse_refusal(raw)
    assert status == 431 and headers["connection"] == "close"
    assert body["error"] == "headers_too_large" and "FORECAST_MAX_HEADER_BYTES" in body["message"]
    # The bound is the setting, not a refusal of everything with a long header.
    response = httpx.get(f"{tight.url}/healthz", headers={"X-Big": "a" * (MAX_HEADER_BYTES - 1024)}, timeout=10)
    assert response.status_code == 200
    assert_serves_forecasts(tight, forecast_request)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /v1/forecast HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"GET /healthz HTTP/1.1\r\nHo st: x\r\n\r\n",
    ],
    ids=["cl-and-te", "two-lengths", "bad-header-name"],
)
def test_a_malformed_request_gets_400_in_the_json_envelope(
    tight: Server, forecast_request: dict[str, Any], request_bytes: bytes
) -> None:
    """The parser's refusals answer like every other error (the envelope, application/json),
    not uvicorn's text/plain, and close the connection."""
    sock = connect(tight)
    sock.sendall(request_bytes)
    raw = read_until_closed(sock, LATE_S + 2.0)
    status, headers, body = parse_refusal(raw)
    assert status == 400 and headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert body["error"] == "bad_request" and body["message"].startswith("malformed HTTP request")
    assert_serves_forecasts(tight, forecast_request)


def test_a_40_mb_chunked_body_gets_413_with_the_json_envelope_while_healthz_answers(
    capped: Server, forecast_request: dict[str, Any]
) -> None:
    chunk = b" " * (1024 * 1024)

    def forty_megabytes() -> Iterator[bytes]:
        for _ in range(40):
            yield chunk

    answer: dict[str, httpx.Response | Exception] = {}

    def upload() -> None:
        with capped.client(timeout_s=60) as client:
            headers = {"Content-Type": "application/json"}
            try:
                answer["response"] = client.post("/v1/forecast", content=forty_megabytes(), headers=headers)
            except httpx.HTTPError as exc:  # e.g. the server cut the upload off: the client saw no 413
                answer["response"] = exc

    log_before = len(capped.log_text())
    uploader = threading.Thread(target=upload)
    uploader.start()
    probe_times = []
    while uploader.is_alive():
        probe_times.append(timed_healthz(capped))
    uploader.join()
    response = answer["response"]
    assert isinstance(response, httpx.Response), f"no response to the upload: {response!r}"
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 413, response.text
    body = response.json()
    assert body == {"error": "too_large", "message": body["message"], "series_id": None}
    assert "FORECAST_MAX_BODY_BYTES" in body["message"]
    assert probe_times and max(probe_times) < PROBE_BUDGET_S, probe_times
    logged = capped.log_text()[log_before:]
    assert "Traceback" not in logged, f"a refused upload is not a server error:\n{logged}"
    assert_serves_forecasts(capped, forecast_request)


# --- caps -----------------------------------------------------------------------------------


def test_half_open_connections_beyond_the_cap_do_not_lock_out_a_fresh_client(
    capped: Server, forecast_request: dict[str, Any]
) -> None:
    """The cap holds (the server closes the surplus long before any deadline) and closes the
    connections idle longest, so a new client always gets a connection and an answer."""
    opened = []
    try:
        for _ in range(3 * MAX_CONNECTIONS):
            sock = connect(capped)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never finished
            opened.append(sock)

        def closed() -> list[int]:
            return [index for index, sock in enumerate(opened) if is_closed_by_server(sock)]

        wait_until(lambda: len(closed()) >= len(opened) - MAX_CONNECTIONS, 10, "the server to close the surplus")
        probe_times = [timed_healthz(capped) for _ in range(5)]
        assert max(probe_times) < PROBE_BUDGET_S, probe_times
        assert_serves_forecasts(capped, forecast_request)
        shut = set(closed())
        still_open = set(range(len(opened))) - shut
        assert still_open and max(shut) < min(still_open), "the oldest half-open connections go first"
        assert len(still_open) < MAX_CONNECTIONS, "the fresh clients took slots too"
    finally:
        for sock in opened:
            sock.close()


def test_requests_beyond_the_in_flight_cap_get_503_while_probes_answer(
    capped: Server, forecast_request: dict[str, Any]
) -> None:
    held = []
    try:
        for _ in range(MAX_REQUESTS):  # requests in flight, waiting for the rest of their bodies
            sock = connect(capped)
            sock.sendall(
                b"POST /v1/forecast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n{"
            )
            held.append(sock)
        with capped.client() as client:
            refused = wait_until(
                lambda: (r := client.post("/v1/forecast", json=forecast_request)).status_code == 503 and r,
                10,
                "a request over the cap to be refused",
            )
            assert refused.json()["error"] == "overloaded"
            assert "FORECAST_MAX_CONCURRENT_REQUESTS" in refused.json()["message"]
            assert int(refused.headers["retry-after"]) >= 1
            for probe in ("/healthz", "/readyz", "/metrics"):
                assert client.get(probe).status_code == 200, probe
    finally:
        for sock in held:
            sock.close()
    # Once the held requests end, the slots are free again.
    wait_until(
        lambda: httpx.post(f"{capped.url}/v1/forecast", json=forecast_request, timeout=10).status_code == 200,
        10,
        "the cap to free up",
    )
    assert_serves_forecasts(capped, forecast_request)

"""HTTP servers side by side on the same app: which of the transport limits each one gives, and
its throughput. For the question of moving off uvicorn's pin: api/runtime/transport.py
subclasses uvicorn's private httptools protocol (docs/guides/choices.md).

Each server runs as its own process on a free port, one at a time, and serves the same ASGI
app, built as `forecast serve` builds it for one worker (api/runtime/server.py): `create_app`
behind the in-flight cap (InFlightLimit, plain ASGI middleware that any server keeps), with
bench/noop_server.py's no-op forward so that the model costs nothing:

  uvicorn_transport  what `forecast serve` runs: uvicorn with our protocol, one worker
                     (`python -m bench.noop_server`, its limits from FORECAST_*)
  uvicorn            plain uvicorn, httptools, with its own limit_concurrency and keep-alive
  granian            granian's ASGI interface, HTTP/1, with its nearest options
  hypercorn          hypercorn (h11, uvloop worker) with its nearest options

The registry is `make run`'s: FORECAST_REGISTRY (default ./models), where `make demo` trains
ett-lstm on ETTh1 (input 168, horizon 24). Where that model is missing, the serving benchmark's
small model (bench/serve.py: the same input and horizon) is trained into a temporary registry,
in seconds; with the no-op forward the weights do not matter.

(a) Limits. Every server is configured from one `Limits` record, as closely as its options
allow, and probed over raw sockets as tests/e2e/test_transport.py probes ours. Each probe
answers a yes/no question and says what it saw (a status, or a close, and after how long):
  slow_headers       headers trickled one byte a second: cut off by a deadline?
  slow_body          complete headers, then the body one byte a second: cut off?
  stalled_body       complete headers, part of the body, then nothing: cut off?
  big_headers        a request line and headers of 64 KiB: refused?
  huge_headers       the same of 1 MiB: refused?
  idle_connections   300 connections opened and left silent, then GET /healthz: answered?
  slow_reader        200 pipelined GETs of a 50 KB asset, nothing read: is the send bounded?
                     (the server side's socket state, read from /proc/net/tcp)
  silent_connection  a connection that never sends: closed?
  keep_alive         a connection left idle after one answer: closed?
(b) Throughput. GET /healthz, then POST /v1/forecast of one series (bench/serve.py's small
request), on `--connections` keep-alive connections for `--duration` seconds after a warm-up:
answered requests/s and p50/p99 latency, from one asyncio load generator in this process (on
uvloop), the same for every server. Its CPU share is reported beside the server's (the
server's process group): a client share near 1.0 means the client, not the server, may be the
limit, and the comparison holds only between servers it did not limit.

    python -m bench.http_servers [--duration 5] [--quick] [--connections 64]
                                 [--servers uvicorn_transport,uvicorn,granian,hypercorn]
                                 [--parts limits,throughput]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from starlette.types import ASGIApp

from api.http.app import create_app
from api.runtime.gc_tuning import tune_gc
from api.runtime.plan import plan_serving
from api.runtime.server import configure_logging
from api.runtime.transport import InFlightLimit
from bench.common import emit, machine
from bench.noop_server import last_value_forward
from bench.serve import MODELS, free_port, request_body, short_training
from forecast.config.training import TrainingConfig
from forecast.registry.store import Registry
from forecast.series.tables import BUNDLED_SETS
from forecast.settings import get_settings
from forecast.training.job import run_training

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
APP_TARGET = "bench.http_servers:asgi_app"  # the factory below, for the servers that import the app
DEMO_MODEL = "ett-lstm"  # what `make demo` trains into ./models for `make run`
# The fallback when ./models lacks it: bench/serve.py's small model, one short epoch as there.
SMALL = "small"
TRAINING = short_training(SMALL)
SERVERS = ("uvicorn_transport", "uvicorn", "granian", "hypercorn")
PARTS = ("limits", "throughput")
IDLE_CONNECTIONS = 300
BIG_HEADER_BYTES = 64 * 1024
HUGE_HEADER_BYTES = 1024 * 1024
ASSET = "/dashboard/vendor/uplot/uPlot.iife.min.js"  # 50 KB, served from disk by every server alike
PIPELINED = 200  # 10 MB of answers: more than the kernel buffers hold (tcp_wmem's 4 MB at most)
PROMPT_S = 1.0  # an answer to /healthz later than this is not "answered" for a liveness probe
# /proc/net/tcp's state codes (include/net/tcp_states.h)
TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}


# --- the app, as the servers import it --------------------------------------------------------


def asgi_app() -> ASGIApp:
    """The app `forecast serve` builds for one worker (api/runtime/server.py, build_server and
    run_worker), for the servers that take an import path: FORECAST_* settings, the no-op
    forward, the in-flight cap, the collector tuned before the models load."""
    # Logging as a worker of `forecast serve` configures it: every answered request writes its
    # access line (forecast.access) on every server, so that the app's work is the same.
    configure_logging()
    plan = plan_serving(get_settings(), workers=1, stand_in=last_value_forward)
    settings = plan.worker_settings
    app = InFlightLimit(create_app(settings, plan.forward_factory), settings.max_concurrent_requests)
    tune_gc(settings.gc_threshold)
    return app


# --- the limits and each server's nearest options ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    """The one set of limits every server is configured from. The deadlines are short, so that
    each probe ends in seconds, and distinct, so that a close can be traced to the option that
    made it: 2 s the header deadline, 3 s the body's, 4 s the keep-alive timeout."""

    header_timeout_s: float = 2.0
    body_timeout_s: float = 3.0
    keep_alive_timeout_s: float = 4.0
    send_timeout_s: float = 2.0
    max_header_bytes: int = 16 * 1024
    max_connections: int = 256  # below the probe's 300 idle connections, so that a cap shows
    max_concurrent_requests: int = 512
    listen_backlog: int = 2048

    @property
    def window_s(self) -> float:
        """How long a probe watches: twice the longest deadline, so that a server that only has
        an idle timer, or a longer deadline than asked, is still seen."""
        return 2 * max(self.header_timeout_s, self.body_timeout_s, self.keep_alive_timeout_s, self.send_timeout_s)

    def forecast_env(self) -> dict[str, str]:
        return {f"FORECAST_{name.upper()}": str(value) for name, value in asdict(self).items()}


@dataclass(frozen=True, slots=True)
class Launch:
    """How one server is started, and which of its options stands for each of our limits
    (None: it has none)."""

    argv: list[str]
    options: dict[str, str | None]
    config: tuple[Path, str] | None = None  # a config file written before the start: path, text


def uvicorn_transport(port: int, limits: Limits, workdir: Path) -> Launch:
    """`forecast serve` itself; every limit is a FORECAST_ setting (set for every server: the
    others' app reads only the registry and the in-flight cap)."""
    options: dict[str, str | None] = {
        name: f"FORECAST_{name.upper()}={value}" for name, value in asdict(limits).items()
    }
    return Launch([sys.executable, "-m", "bench.noop_server", "--host", HOST, "--port", str(port)], options)


def plain_uvicorn(port: int, limits: Limits, workdir: Path) -> Launch:
    argv = [
        *(sys.executable, "-m", "uvicorn", APP_TARGET, "--factory", "--host", HOST, "--port", str(port)),
        *("--http", "httptools", "--loop", "uvloop"),  # what `auto` picks here, and what ours subclasses
        *("--limit-concurrency", str(limits.max_connections)),
        *("--timeout-keep-alive", str(round(limits.keep_alive_timeout_s))),  # whole seconds only
        *("--backlog", str(limits.listen_backlog)),
        *("--timeout-graceful-shutdown", "5", "--no-access-log", "--log-level", "warning"),
    ]
    options: dict[str, str | None] = {
        "header_timeout_s": None,
        "body_timeout_s": None,
        "keep_alive_timeout_s": f"--timeout-keep-alive {round(limits.keep_alive_timeout_s)}",
        "send_timeout_s": None,
        # --h11-max-incomplete-event-size bounds the h11 protocol's buffer only, not httptools'.
        "max_header_bytes": None,
        # It counts open connections as well as running requests.
        "max_connections": f"--limit-concurrency {limits.max_connections}",
        "max_concurrent_requests": f"--limit-concurrency {limits.max_connections} (and InFlightLimit, in the app)",
        "listen_backlog": f"--backlog {limits.listen_backlog}",
    }
    return Launch(argv, options)


def granian(port: int, limits: Limits, workdir: Path) -> Launch:
    header_ms = round(limits.header_timeout_s * 1000)
    # hyper's max_buf_size, the connection's read buffer: at least 8192 (granian refuses less).
    buffer = max(8192, limits.max_header_bytes)
    argv = [
        *(sys.executable, "-m", "granian", "--interface", "asgi", "--factory", "--host", HOST, "--port", str(port)),
        # One worker process with one runtime thread: one core, as uvicorn's one event loop.
        *("--http", "1", "--no-ws", "--workers", "1", "--runtime-threads", "1", "--loop", "uvloop"),
        *("--backlog", str(limits.listen_backlog), "--backpressure", str(limits.max_connections)),
        *("--http1-header-read-timeout", str(header_ms), "--http1-buffer-size", str(buffer)),
        *("--no-access-log", "--log-level", "warning", APP_TARGET),
    ]
    options: dict[str, str | None] = {
        "header_timeout_s": f"--http1-header-read-timeout {header_ms} (ms, at most 60000)",
        "body_timeout_s": None,
        # Only --http1-keep-alive / --no-http1-keep-alive; hyper's header timer also runs on a
        # connection idle between requests, so the header timeout closes those too.
        "keep_alive_timeout_s": f"--http1-header-read-timeout {header_ms} (no keep-alive timeout of its own)",
        "send_timeout_s": None,
        "max_header_bytes": f"--http1-buffer-size {buffer}",
        # A semaphore taken before accept() and held by the connection: it counts connections.
        "max_connections": f"--backpressure {limits.max_connections}",
        "max_concurrent_requests": "InFlightLimit, in the app",
        "listen_backlog": f"--backlog {limits.listen_backlog}",
    }
    return Launch(argv, options)


def hypercorn(port: int, limits: Limits, workdir: Path) -> Launch:
    # h11_max_incomplete_size has no command-line flag: every option goes in a TOML file.
    config: dict[str, Any] = {
        "bind": [f"{HOST}:{port}"],
        "workers": 1,
        "worker_class": "uvloop",
        "backlog": limits.listen_backlog,
        "keep_alive_timeout": limits.keep_alive_timeout_s,
        # An idle timer on each socket read (whole seconds), the nearest it has to a body deadline.
        "read_timeout": round(limits.body_timeout_s),
        "h11_max_incomplete_size": limits.max_header_bytes,
        "max_app_queue_size": 10,  # its default: the ASGI receive queue of one request, not a cap
        "graceful_timeout": 5.0,
        "loglevel": "WARNING",
    }
    path = workdir / f"hypercorn-{port}.toml"
    text = "".join(f"{key} = {json.dumps(value)}\n" for key, value in config.items())  # JSON scalars are TOML
    options: dict[str, str | None] = {
        # Its keep-alive timer runs from the opening until a request's headers are parsed.
        "header_timeout_s": f"keep_alive_timeout = {config['keep_alive_timeout']} (no header timeout of its own)",
        "body_timeout_s": f"read_timeout = {config['read_timeout']} (idle, per read)",
        "keep_alive_timeout_s": f"keep_alive_timeout = {config['keep_alive_timeout']}",
        "send_timeout_s": None,
        "max_header_bytes": f"h11_max_incomplete_size = {limits.max_header_bytes}",
        "max_connections": None,
        "max_concurrent_requests": "InFlightLimit, in the app",
        "listen_backlog": f"backlog = {limits.listen_backlog}",
    }
    argv = [sys.executable, "-m", "hypercorn", "--config", str(path), f"{APP_TARGET}()"]
    return Launch(argv, options, (path, text))


LAUNCHERS: dict[str, Callable[[int, Limits, Path], Launch]] = {
    "uvicorn_transport": uvicorn_transport,
    "uvicorn": plain_uvicorn,
    "granian": granian,
    "hypercorn": hypercorn,
}


# --- a server process --------------------------------------------------------------------------


class ServerProcess:
    """One server in its own session, so that its workers (granian's, hypercorn's) are one
    process group: counted together for CPU, and killed together if a stop hangs."""

    def __init__(self, launch: Launch, port: int, env: dict[str, str], log: Path) -> None:
        self.url = f"http://{HOST}:{port}"
        self.log = log
        if launch.config is not None:
            launch.config[0].write_text(launch.config[1])
        with log.open("wb") as handle:
            self.process = subprocess.Popen(
                launch.argv, env=env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, limit_s: float = 180.0) -> None:
        """Up once /healthz answers, ready once /readyz does (the models are loaded)."""
        deadline = time.monotonic() + limit_s
        for path in ("/healthz", "/readyz"):
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the server exited ({self.process.returncode}):\n{self.log_tail()}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the server did not answer {path} within {limit_s:g} s:\n{self.log_tail()}")
                try:
                    if httpx.get(self.url + path, timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def cpu_s(self) -> float:
        """User and system CPU seconds of the server's processes (its process group) so far."""
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited meanwhile
            if int(fields[2]) == self.process.pid:  # pgrp
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        """SIGTERM, as an orchestrator stops it; the group is killed if it has not exited in 30 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                return self.process.wait()
        return int(self.process.returncode)


# --- (a) limits: probes over raw sockets -------------------------------------------------------


@dataclass(slots=True)
class Seen:
    """What the server did on one probing connection; times from the probe's start."""

    status: int | None = None  # the first answer's status code
    answered_after_s: float | None = None
    closed_after_s: float | None = None  # the server closed or reset the connection
    reset: bool = False
    sent_bytes: int = 0

    def describe(self, window_s: float) -> str:
        answer = "no answer" if self.status is None else f"{self.status} after {self.answered_after_s:.1f} s"
        if self.closed_after_s is None:
            return f"{answer}, still open after {window_s:g} s"
        how = "reset" if self.reset else "closed"
        return f"{answer}, {how} after {self.closed_after_s:.1f} s"


def verdict(question: str, yes: bool, observed: str, **details: Any) -> dict[str, Any]:
    return {"question": question, "yes": yes, "observed": observed, **details}


async def watch(reader: asyncio.StreamReader, started: float, seen: Seen) -> None:
    """Reads until the server closes, noting its first answer's status and when it came."""
    head = b""
    while True:
        try:
            chunk = await reader.read(65536)
        except ConnectionError:
            seen.reset, chunk = True, b""
        now = round(time.monotonic() - started, 3)
        if not chunk:
            seen.closed_after_s = now
            return
        if seen.answered_after_s is None:
            seen.answered_after_s = now
        if seen.status is None:
            head += chunk
            status_line = head.split(b"\r\n", 1)[0].split()
            if b"\r\n" in head and len(status_line) > 1 and status_line[1].isdigit():
                seen.status = int(status_line[1])


async def converse(port: int, first: bytes, window_s: float, trickle: bool) -> Seen:
    """Sends `first`, then (with `trickle`) one byte a second until the server answers or closes;
    watches until it closes or `window_s` has passed."""
    reader, writer = await asyncio.open_connection(HOST, port)
    started = time.monotonic()
    seen = Seen(sent_bytes=len(first))
    watcher = asyncio.create_task(watch(reader, started, seen))
    try:
        writer.write(first)
        while trickle and seen.status is None and not watcher.done():
            remaining = window_s - (time.monotonic() - started)
            if remaining <= 0:
                break
            await asyncio.wait({watcher}, timeout=min(1.0, remaining))  # time passing is the point
            if seen.status is None and not watcher.done():
                writer.write(b"a")
                seen.sent_bytes += 1
        await asyncio.wait({watcher}, timeout=max(0.0, window_s - (time.monotonic() - started)))
    finally:
        watcher.cancel()
        writer.close()
    return seen


def server_side(server_port: int, client_port: int) -> tuple[str, int]:
    """The server's end of a loopback connection in /proc/net/tcp: its state and its unsent
    bytes ("GONE", 0 once the kernel forgot it: a reset)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, queues = fields[1], fields[2], fields[3], fields[4]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
            return TCP_STATES.get(state, state), int(queues.split(":")[0], 16)
    return "GONE", 0


async def stalled_reader(port: int, window_s: float) -> dict[str, Any]:
    """A client that asks for 10 MB and reads nothing. The kernel buffers a few MB at each end,
    so it watches the server's end of the connection: it leaves ESTABLISHED when the server
    gives up (a close queues a FIN behind the unsent data, an abort resets)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window, then nothing read
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, (HOST, port))
        client_port = sock.getsockname()[1]
        await loop.sock_sendall(sock, f"GET {ASSET} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * PIPELINED)
        started = time.monotonic()
        state, most_queued = "ESTABLISHED", 0
        while (elapsed := time.monotonic() - started) < window_s:
            state, queued = server_side(port, client_port)
            most_queued = max(most_queued, queued)
            if state != "ESTABLISHED":
                break
            await asyncio.sleep(0.1)
        bounded = state != "ESTABLISHED"
        observed = (
            f"server end {state} after {elapsed:.1f} s"
            if bounded
            else f"server end still ESTABLISHED after {window_s:g} s, {most_queued} bytes queued"
        )
        return verdict(
            "is the send to a client that stops reading bounded?",
            bounded,
            observed,
            after_s=round(elapsed, 2) if bounded else None,
            server_state=state,
            most_queued_bytes=most_queued,
        )
    finally:
        sock.close()


def big_request(size: int) -> bytes:
    """A GET /healthz whose request line and headers are `size` bytes."""
    start, end = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ", b"\r\n\r\n"
    return start + b"a" * (size - len(start) - len(end)) + end


def refused(seen: Seen) -> bool:
    """Answered with an error, or closed without an answer."""
    if seen.status is None:
        return seen.closed_after_s is not None
    return seen.status >= 400


async def concurrent_probes(port: int, limits: Limits) -> dict[str, Any]:
    """The probes that hold one connection each, side by side: the limits window once in all."""
    window = limits.window_s
    get_healthz = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    slow_head = b"POST /v1/forecast HTTP/1.1\r\nHost: x\r\nX-Slow: "
    slow_body = (
        b"POST /v1/forecast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    )
    slow_reader = asyncio.create_task(stalled_reader(port, window))
    headers, body, stalled, oversized, huge, silent, idle = await asyncio.gather(
        converse(port, slow_head, window, trickle=True),
        converse(port, slow_body, window, trickle=True),
        converse(port, slow_body, window, trickle=False),
        converse(port, big_request(BIG_HEADER_BYTES), window, trickle=False),
        converse(port, big_request(HUGE_HEADER_BYTES), window, trickle=False),
        converse(port, b"", window, trickle=False),
        converse(port, get_healthz, window, trickle=False),
    )
    idle_s = (
        None
        if idle.closed_after_s is None or idle.answered_after_s is None
        else idle.closed_after_s - idle.answered_after_s
    )
    return {
        "slow_headers": verdict(
            "headers sent one byte a second: cut off by a deadline?",
            headers.closed_after_s is not None,
            headers.describe(window),
            **asdict(headers),
        ),
        "slow_body": verdict(
            "headers, then the body one byte a second: cut off by a deadline?",
            body.closed_after_s is not None,
            body.describe(window),
            **asdict(body),
        ),
        # An idle timer per read (hypercorn's read_timeout) passes the trickle but not this.
        "stalled_body": verdict(
            "headers, then part of the body and nothing more: cut off?",
            stalled.closed_after_s is not None,
            stalled.describe(window),
            **asdict(stalled),
        ),
        "big_headers": verdict(
            f"a request line and headers of {BIG_HEADER_BYTES} bytes: refused?",
            refused(oversized),
            oversized.describe(window),
            **asdict(oversized),
        ),
        # A bound checked only while the headers are incomplete lets through what arrives in
        # one read (hypercorn reads 64 KiB at a time); a megabyte takes many reads.
        "huge_headers": verdict(
            f"a request line and headers of {HUGE_HEADER_BYTES} bytes: refused?",
            refused(huge),
            huge.describe(window),
            **asdict(huge),
        ),
        "slow_reader": await slow_reader,
        "silent_connection": verdict(
            "a connection that sends nothing: closed?",
            silent.closed_after_s is not None,
            silent.describe(window),
            **asdict(silent),
        ),
        "keep_alive": verdict(
            "a connection idle after one answer: closed?",
            idle_s is not None,
            "still open" if idle_s is None else f"closed {idle_s:.1f} s after the answer",
            idle_closed_after_s=None if idle_s is None else round(idle_s, 2),
            **asdict(idle),
        ),
    }


def closed_by_server(sock: socket.socket) -> bool:
    sock.setblocking(False)  # with a timeout set, recv would wait for the close instead of looking
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def idle_connections(port: int, limits: Limits) -> dict[str, Any]:
    """300 connections that send nothing, then a liveness probe on a fresh one. Alone, after the
    other probes: a connection cap that closes idle connections would close theirs too."""
    opened = [socket.create_connection((HOST, port), timeout=10) for _ in range(IDLE_CONNECTIONS)]
    try:
        time.sleep(0.5)  # the server accepts them (or leaves them in the backlog) first
        started = time.monotonic()
        status: int | None = None
        try:
            status = httpx.get(f"http://{HOST}:{port}/healthz", timeout=limits.window_s).status_code
            answer = str(status)
        except httpx.TransportError as exc:  # never accepted, or closed unanswered
            answer = f"no answer ({type(exc).__name__})"
        after_s = time.monotonic() - started
        closed = sum(closed_by_server(sock) for sock in opened)
    finally:
        for sock in opened:
            sock.close()
    return verdict(
        f"{IDLE_CONNECTIONS} idle connections open: GET /healthz answered 200 within {PROMPT_S:g} s?",
        status == 200 and after_s <= PROMPT_S,
        f"{answer} after {after_s:.2f} s; the server had closed {closed} of the {IDLE_CONNECTIONS}",
        status=status,
        after_s=round(after_s, 3),
        idle_closed_by_server=closed,
    )


# --- (b) throughput: one asyncio load generator ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Load:
    """One load point: the same request over and over on each of `connections` keep-alive
    connections; what starts within `duration_s` after a `warmup_s` is counted."""

    request: bytes
    connections: int
    duration_s: float
    warmup_s: float


@dataclass(slots=True)
class Tally:
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


def framing(head: bytes) -> tuple[int, bool]:
    """The body's length and whether the server closes after this response."""
    lowered = head.lower()
    at = lowered.find(b"\r\ncontent-length:")
    if at < 0:
        raise ValueError("a response without content-length")
    length = int(lowered[at + 17 : lowered.index(b"\r\n", at + 2)])
    return length, b"\r\nconnection: close" in lowered


async def client(port: int, load: Load, counted_from: float, stop_at: float, tally: Tally) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while time.perf_counter() < stop_at:
        started = time.perf_counter()
        try:
            if reader is None or writer is None:
                reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(load.request)
            head = await reader.readuntil(b"\r\n\r\n")
            length, closing = framing(head)
            await reader.readexactly(length)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            tally.errors[type(exc).__name__] += 1
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.01)  # a refused connection must not spin the loop the others share
            continue
        if started >= counted_from:
            tally.latencies_s.append(time.perf_counter() - started)
            tally.statuses[int(head[9:12])] += 1
        if closing and writer is not None:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def run_load(server: ServerProcess, port: int, load: Load) -> dict[str, Any]:
    tally = Tally()
    counted_from = time.perf_counter() + load.warmup_s
    stop_at = counted_from + load.duration_s
    cpu: dict[str, tuple[float, float]] = {}

    async def sample(at: float, name: str) -> None:
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        cpu[name] = (time.process_time(), server.cpu_s())

    clients = [client(port, load, counted_from, stop_at, tally) for _ in range(load.connections)]
    try:
        # A server that stops answering must not hang the benchmark.
        await asyncio.wait_for(
            asyncio.gather(sample(counted_from, "from"), sample(stop_at, "to"), *clients), load.duration_s + 60
        )
    except TimeoutError:
        tally.errors["hung"] += 1
    answered = sum(count for status, count in tally.statuses.items() if 200 <= status < 300)
    latencies_ms = np.asarray(tally.latencies_s) * 1e3
    shares = {}
    if "from" in cpu and "to" in cpu:
        (client_from, server_from), (client_to, server_to) = cpu["from"], cpu["to"]
        shares = {
            "client_cpu_share": round((client_to - client_from) / load.duration_s, 2),
            "server_cpu_share": round((server_to - server_from) / load.duration_s, 2),
        }
    return {
        # only answered requests count: a fast 503 is not throughput
        "requests_per_s": round(answered / load.duration_s, 1),
        "p50_ms": round(float(np.percentile(latencies_ms, 50)), 2) if len(latencies_ms) else None,
        "p99_ms": round(float(np.percentile(latencies_ms, 99)), 2) if len(latencies_ms) else None,
        "statuses": {str(status): count for status, count in sorted(tally.statuses.items())},
        "errors": dict(tally.errors),
        **shares,
    }


def http_request(method: str, path: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


# --- the registry and the run ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Demo:
    """The registry the servers serve, the model posted to, and where they came from."""

    root: Path
    model: str
    input_size: int
    source: str


def demo_registry(workdir: Path) -> Demo:
    """`make run`'s registry when its demo model is there; otherwise bench/serve.py's small model,
    trained into `workdir` in seconds (the no-op forward makes its weights irrelevant)."""
    configured = get_settings().registry
    root = Path(configured).resolve()
    if not configured.startswith("s3://") and root.is_dir():
        registry = Registry(root)
        if registry.versions(DEMO_MODEL):
            manifest = registry.manifest(DEMO_MODEL, registry.resolve(DEMO_MODEL))
            return Demo(root, DEMO_MODEL, manifest.input_size, f"`make run`'s registry ({configured})")
    data = workdir / "ett.csv"
    pd.read_csv(BUNDLED_SETS["etth1"])[["date", "OT"]].iloc[:4000].to_csv(data, index=False)
    registry = Registry(workdir / "registry")
    run_training(data, SMALL, TrainingConfig.model_validate(TRAINING), registry, progress=False, force=True)
    source = f"bench/serve.py's small model, trained here: {DEMO_MODEL} is not in {configured} (`make demo`)"
    return Demo(registry.root, SMALL, int(MODELS[SMALL]["input_size"]), source)


@dataclass(frozen=True, slots=True)
class Run:
    """What every server is measured with."""

    demo: Demo
    limits: Limits
    parts: tuple[str, ...]
    connections: int
    duration_s: float
    warmup_s: float
    forecast_body: bytes  # bench/serve.py's small request: one series of the model's input size
    workdir: Path


def measure(name: str, run: Run) -> dict[str, Any]:
    port, limits = free_port(), run.limits
    launch = LAUNCHERS[name](port, limits, run.workdir)
    env = {
        **os.environ,
        "FORECAST_REGISTRY": str(run.demo.root),
        "FORECAST_WORKERS": "1",
        "FORECAST_SHUTDOWN_GRACE_S": "0",
        **limits.forecast_env(),
    }
    result: dict[str, Any] = {"command": shlex.join(["python", *launch.argv[1:]]), "options": launch.options}
    if launch.config is not None:
        result["config_file"] = launch.config[1]
    server = ServerProcess(launch, port, env, run.workdir / f"{name}.log")
    try:
        started = time.monotonic()
        server.wait_ready()
        result["ready_after_s"] = round(time.monotonic() - started, 1)
        if "limits" in run.parts:
            probes = uvloop.run(concurrent_probes(port, limits))
            probes["idle_connections"] = idle_connections(port, limits)
            result["limits"] = probes
            print(name, {probe: found["observed"] for probe, found in probes.items()}, file=sys.stderr)
        if "throughput" in run.parts:
            requests = {
                "healthz": http_request("GET", "/healthz"),
                "forecast_1_series": http_request("POST", "/v1/forecast", run.forecast_body),
            }
            result["throughput"] = {}
            for label, request in requests.items():
                load = Load(request, run.connections, run.duration_s, run.warmup_s)
                result["throughput"][label] = found = uvloop.run(run_load(server, port, load))
                print(name, label, found, file=sys.stderr)
    finally:
        result["exit_code"] = server.stop()
    # uvicorn re-raises the SIGTERM it handled once it has shut down (ours exits 0 instead).
    if result["exit_code"] not in (0, -signal.SIGTERM):
        result["log_tail"] = server.log_tail()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds counted per throughput point")
    parser.add_argument("--quick", action="store_true", help="1 s per throughput point, a shorter warm-up")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections of the load")
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"comma-separated, of {', '.join(SERVERS)}")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    args = parser.parse_args()
    servers, parts = args.servers.split(","), tuple(args.parts.split(","))
    if unknown := (set(servers) - set(SERVERS)) | (set(parts) - set(PARTS)):
        parser.error(f"unknown: {', '.join(sorted(unknown))}")
    duration_s = 1.0 if args.quick else args.duration
    workdir = Path(tempfile.mkdtemp(prefix="bench-http-servers-"))
    demo = demo_registry(workdir)
    values = pd.read_csv(BUNDLED_SETS["etth1"])["OT"].to_numpy()[:4000]
    body = request_body(demo.input_size, 1, values).replace('"model":"m"', f'"model":"{demo.model}"')
    run = Run(
        demo=demo,
        limits=Limits(),
        parts=parts,
        connections=args.connections,
        duration_s=duration_s,
        warmup_s=min(1.0, duration_s / 2),
        forecast_body=body.encode(),
        workdir=workdir,
    )
    result: dict[str, Any] = {
        "machine": machine(),
        "versions": {package: version(package) for package in ("uvicorn", "httptools", "granian", "hypercorn", "h11")},
        "registry": {"root": str(demo.root), "model": demo.model, "input_size": demo.input_size, "source": demo.source},
        "limits": {**asdict(run.limits), "probe_window_s": run.limits.window_s},
        "duration_s": run.duration_s,
        "warmup_s": run.warmup_s,
        "connections": run.connections,
        "servers": {},
    }
    try:
        for name in servers:
            try:
                result["servers"][name] = measure(name, run)
            except RuntimeError as exc:  # one server that would not start: the others still count
                result["servers"][name] = {"error": str(exc)}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    emit("http_servers_quick" if args.quick else "http_servers", result)


if __name__ == "__main__":
    main()

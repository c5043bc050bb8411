"""`forecast serve`: plan (api/runtime/plan.py), then supervise: uvicorn with transport limits
and a graceful shutdown, in one process or in FORECAST_WORKERS processes sharing the port
(api/runtime/workers.py), with the plan's inference processes beside them.

The limits (api/runtime/transport.py) are deadlines for headers and bodies, an idle keep-alive
timeout, a send timeout, a header size bound, a connection cap and an in-flight request cap,
each a FORECAST_ setting. On SIGTERM (or Ctrl-C) the server first fails readiness, keeps
serving for `FORECAST_SHUTDOWN_GRACE_S` so load balancers stop sending, then stops accepting
connections, lets in-flight requests finish, drains the batchers and exits 0. With several
workers the supervisor forwards the signal, so each worker does all of that, and it exits 0
once every worker did.
"""

from __future__ import annotations

import logging
import resource
import socket
import threading
from dataclasses import dataclass
from functools import partial
from types import FrameType

import uvicorn

from api.http.app import create_app
from api.runtime.gc_tuning import tune_gc
from api.runtime.plan import ServingPlan, plan_serving
from api.runtime.transport import InFlightLimit, LimitedHttpProtocol, TransportLimits
from api.runtime.workers import bind_socket, run_workers
from forecast.serving.pipeline import ForwardFactory
from forecast.serving.remote import DeviceClient, device_forward
from forecast.settings import get_settings

logger = logging.getLogger(__name__)

_GRACEFUL_SHUTDOWN_S = 30  # in-flight requests' time to finish once the socket is closed


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, grace_s: float) -> None:
        super().__init__(config)
        self.grace_s = grace_s
        self._draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        app = self.config.loaded_app if hasattr(self.config, "loaded_app") else None
        target = getattr(app, "app", app)
        while target is not None and not hasattr(target, "state"):
            target = getattr(target, "app", None)
        if target is not None:
            target.state.draining = True
        if self._draining or self.grace_s <= 0:
            self._begin_shutdown(sig)
            return
        self._draining = True
        logger.warning("shutdown requested: readiness off, draining for %.1fs", self.grace_s)
        threading.Timer(self.grace_s, self._begin_shutdown, args=(sig,)).start()

    def _begin_shutdown(self, sig: int) -> None:
        super().handle_exit(sig, None)
        # uvicorn re-raises the captured signal after shutdown; a completed drain exits 0 instead.
        self._captured_signals.clear()


def _allow_open_files(max_connections: int) -> None:
    """Raise the soft open-file limit toward the hard one, so that the connection cap, not
    EMFILE, is what refuses connections (a soft limit of 1024 is common). Model files, the
    listening socket and the interpreter need some descriptors besides the connections."""
    needed = max_connections + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        if raised < needed:
            logger.warning(
                "open files limited to %d: FORECAST_MAX_CONNECTIONS=%d may not be reached", raised, max_connections
            )


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s"  # the pid tells workers apart


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """What every worker builds its server from (pickled into each worker process)."""

    plan: ServingPlan
    host: str
    port: int


def build_server(spec: ServerSpec, slot: int = 0) -> DrainingServer:
    """The app behind the in-flight cap and the limited protocol, in a draining uvicorn server."""
    settings = spec.plan.worker_settings
    forward_factory = spec.plan.forward_factory
    inference_unreachable = None
    if (link := spec.plan.link) is not None:
        client = DeviceClient(link.address_for(slot), link.authkey, settings.request_timeout_s)
        forward_factory, inference_unreachable = device_forward(client), client.unreachable
    app = create_app(settings, forward_factory, inference_unreachable)
    config = uvicorn.Config(
        InFlightLimit(app, settings.max_concurrent_requests),
        host=spec.host,
        port=spec.port,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
        # uvicorn's limit_concurrency is left off: it counts idle connections too (see
        # api/runtime/transport.py); the protocol sets the keep-alive timeout from the settings.
        http=LimitedHttpProtocol.bound(TransportLimits.from_settings(settings)),
        ws="none",  # no WebSocket routes: an upgrade request is served as plain HTTP
        backlog=settings.listen_backlog,
    )
    _allow_open_files(settings.max_connections)
    return DrainingServer(config, grace_s=settings.shutdown_grace_s)


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, force=True)


def run_worker(spec: ServerSpec, sock: socket.socket, slot: int) -> None:
    """A worker process of the supervisor (api/runtime/workers.py), accepting from the shared socket."""
    configure_logging()
    server = build_server(spec, slot)
    tune_gc(spec.plan.worker_settings.gc_threshold)  # after the imports and the app, before the models load
    server.run(sockets=[sock])


def _announce(host: str, port: int, workers: int) -> None:
    shown = "localhost" if host in {"0.0.0.0", "::"} else host
    print(
        f"forecast API on http://{shown}:{port}  (dashboard: http://{shown}:{port}/dashboard/, docs: /docs)"
        + (f"  {workers} workers" if workers > 1 else ""),
        flush=True,
    )


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    registry: str | None = None,
    stand_in: ForwardFactory | None = None,
    workers: int | None = None,
) -> int:
    """`workers` (default FORECAST_WORKERS; 0: one per usable core) serving processes on one port;
    `stand_in` replaces the network's forward pass (the serving benchmark's no-op)."""
    plan = plan_serving(get_settings(), workers=workers, registry=registry, stand_in=stand_in)
    configure_logging()
    try:
        return _supervise(plan, host, port)
    finally:
        plan.release()


def _supervise(plan: ServingPlan, host: str, port: int) -> int:
    settings, spec = plan.worker_settings, ServerSpec(plan, host, port)
    if plan.workers == 1:
        server = build_server(spec)
        tune_gc(settings.gc_threshold)  # after the imports and the app, before the models load
        _announce(host, port, 1)
        server.run()
        return 0
    # A bad configuration (an unreadable key file) fails here, in one line, not once per worker.
    create_app(settings, plan.forward_factory)
    try:
        sock = bind_socket(host, port)
    except OSError as exc:
        logger.error("cannot listen on %s:%d: %s", host, port, exc)
        return 1
    # Each worker drains for the grace, then waits for its requests (uvicorn's graceful timeout)
    # and its batchers; beyond that margin the supervisor kills what is left.
    stop_timeout_s = settings.shutdown_grace_s + _GRACEFUL_SHUTDOWN_S + 30.0
    if plan.devices:
        logger.info("forward passes run in %d inference process(es)", len(plan.devices))
    _announce(host, port, plan.workers)
    return run_workers(partial(run_worker, spec), sock, plan.workers, stop_timeout_s, plan.devices)

"""`forecast serve`: uvicorn with transport limits and a graceful shutdown.

The limits (api/transport.py) are deadlines for headers and bodies, an idle keep-alive
timeout, a send timeout, a header size bound, a connection cap and an in-flight request cap,
each a FORECAST_ setting. On SIGTERM (or Ctrl-C) the server first fails readiness, keeps
serving for `FORECAST_SHUTDOWN_GRACE_S` so load balancers stop sending, then stops accepting
connections, lets in-flight requests finish, drains the batchers and exits 0.
"""

from __future__ import annotations

import logging
import resource
import threading
from types import FrameType

import uvicorn

from api.app import create_app
from api.gc_tuning import tune_gc
from api.transport import InFlightLimit, LimitedHttpProtocol, TransportLimits
from forecast.serving.pipeline import ForwardFactory, network_forward
from forecast.settings import Settings, get_settings

logger = logging.getLogger(__name__)


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


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    registry: str | None = None,
    forward_factory: ForwardFactory = network_forward,
) -> int:
    settings = get_settings()
    if registry is not None:
        settings = Settings(**{**settings.model_dump(), "registry": registry})
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    app = create_app(settings, forward_factory)
    config = uvicorn.Config(
        InFlightLimit(app, settings.max_concurrent_requests),
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=30,
        # uvicorn's limit_concurrency is left off: it counts idle connections too (see
        # api/transport.py); the protocol sets the keep-alive timeout from the settings.
        http=LimitedHttpProtocol.bound(TransportLimits.from_settings(settings)),
        ws="none",  # no WebSocket routes: an upgrade request is served as plain HTTP
        backlog=settings.listen_backlog,
    )
    _allow_open_files(settings.max_connections)
    server = DrainingServer(config, grace_s=settings.shutdown_grace_s)
    tune_gc(settings.gc_threshold)  # after the imports and the app, before the models load
    shown = "localhost" if host in {"0.0.0.0", "::"} else host
    print(
        f"forecast API on http://{shown}:{port}  (dashboard: http://{shown}:{port}/dashboard/, docs: /docs)", flush=True
    )
    server.run()
    return 0

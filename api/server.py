"""`forecast serve`: uvicorn with a graceful shutdown.

On SIGTERM (or Ctrl-C) the server first fails readiness, keeps serving for
`FORECAST_SHUTDOWN_GRACE_S` so load balancers stop sending, then stops accepting connections,
lets in-flight requests finish, drains the batchers and exits 0.
"""

from __future__ import annotations

import logging
import threading
from types import FrameType

import uvicorn

from api.app import create_app
from api.gc_tuning import tune_gc
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
    config = uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False, timeout_graceful_shutdown=30)
    server = DrainingServer(config, grace_s=settings.shutdown_grace_s)
    tune_gc(settings.gc_threshold)  # after the imports and the app, before the models load
    shown = "localhost" if host in {"0.0.0.0", "::"} else host
    print(
        f"forecast API on http://{shown}:{port}  (dashboard: http://{shown}:{port}/dashboard/, docs: /docs)", flush=True
    )
    server.run()
    return 0

"""moto's S3 API as a standalone HTTP server, one request at a time, for the registry's tests.

    python -m tests.support.s3_server PORT   (from the repository root)

This is what `python -m moto.server` runs, less its reloader and debugger, with one change:
moto checks a conditional put's If-None-Match / If-Match and then stores the object in a later
step, so on its threaded server two racing conditional puts of one key could both pass. S3 and
MinIO decide a conditional write atomically; a lock around each request gives moto the same
semantics, which the race tests rely on. The product talks to it as to any S3 endpoint.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple


class Serialised:
    """A WSGI app that runs one request at a time (the response is built inside the call)."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self.lock:
            return list(self.app(environ, start_response))


def main() -> int:
    port = int(sys.argv[1])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = Serialised(DomainDispatcherApplication(create_backend_app))
    run_simple("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)
    return 0


if __name__ == "__main__":
    sys.exit(main())

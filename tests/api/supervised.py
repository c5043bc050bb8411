"""A supervisor (api/workers.py) of two tiny workers, run as a process by tests/api/test_workers.py:
each worker counts itself in a `livesum` gauge and answers every connection with its pid.

    python -m tests.api.supervised {answer,fail} PORT
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading

from api.workers import bind_socket, run_workers


def answer_pid(sock: socket.socket) -> None:
    from prometheus_client import Gauge  # imported in the worker: the metrics folder is set by then

    Gauge("test_live_workers", "Workers alive", multiprocess_mode="livesum").set(1)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda sig, frame: stop.set())
    sock.listen(16)
    sock.settimeout(0.05)  # so that the loop sees `stop`
    while not stop.is_set():
        try:
            connection, _ = sock.accept()
        except TimeoutError:
            continue
        with connection:
            connection.sendall(str(os.getpid()).encode())


def fail_to_start(sock: socket.socket) -> None:
    raise SystemExit(3)  # uvicorn's STARTUP_FAILURE


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    mode, port = sys.argv[1], int(sys.argv[2])
    target = {"answer": answer_pid, "fail": fail_to_start}[mode]
    return run_workers(target, bind_socket("127.0.0.1", port), count=2, stop_timeout_s=20)


if __name__ == "__main__":
    raise SystemExit(main())

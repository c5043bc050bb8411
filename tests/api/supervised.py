"""A supervisor (api/runtime/workers.py) of two tiny workers, run as a process by tests/api/test_workers.py:
each worker counts itself in a `livesum` gauge and answers every connection with its pid.

    python -m tests.api.supervised {answer,fail,device} PORT

`device` adds an inference process, which answers its pid on PORT + 1.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from functools import partial

from api.runtime.workers import bind_socket, run_workers


def answer_pid(sock: socket.socket, slot: int) -> None:
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


def device_answers_pid(port: int) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    answer_pid(sock, 0)


def fail_to_start(sock: socket.socket, slot: int) -> None:
    raise SystemExit(3)  # uvicorn's STARTUP_FAILURE


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    mode, port = sys.argv[1], int(sys.argv[2])
    target = fail_to_start if mode == "fail" else answer_pid
    devices = [partial(device_answers_pid, port + 1)] if mode == "device" else []
    return run_workers(target, bind_socket("127.0.0.1", port), count=2, stop_timeout_s=20, devices=devices)


if __name__ == "__main__":
    raise SystemExit(main())

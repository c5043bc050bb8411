"""The real server whose networks raise an unexpected exception (a RuntimeError, as torch raises)
on every forecast after the warm-up, for the test that such a failure is still a JSON 500 with
its request id.

    python -m tests.e2e.failing_server --port PORT     (settings from FORECAST_*)
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from api.runtime.server import serve
from bench.noop_server import last_value_forward
from forecast.registry.manifest import Manifest
from forecast.serving.pipeline import BuildNetwork, Forward, WindowForecast
from forecast.serving.requests import Window


def failing_forward(manifest: Manifest, build: BuildNetwork) -> Forward:
    warm_up = last_value_forward(manifest, build)

    def run(windows: Sequence[Window]) -> Sequence[WindowForecast]:
        if all(not window.history.any() for window in windows):  # the warm-up's zero window
            return warm_up(windows)
        raise RuntimeError("CUDA error: an illegal memory access was encountered (simulated)")

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    return serve(port=args.port, stand_in=failing_forward)


if __name__ == "__main__":
    raise SystemExit(main())

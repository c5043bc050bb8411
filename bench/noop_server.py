"""The serving benchmark's HTTP ceiling: the real server, route, parsing, validation, batcher
and response, with each version's forward pass replaced by a no-op that repeats the last value.
What the server serves when the model costs nothing.

    python -m bench.noop_server --port PORT     (settings from FORECAST_* as for `forecast serve`)
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from api.runtime.server import serve
from forecast.model.predictor import Prediction
from forecast.registry.manifest import Manifest
from forecast.serving.pipeline import BuildNetwork, Forward, WindowForecast
from forecast.serving.requests import Window


def last_value_forward(manifest: Manifest, build: BuildNetwork) -> Forward:
    horizon = manifest.horizon

    def run(windows: Sequence[Window]) -> list[WindowForecast]:
        last = np.array([float(window.history[-1]) for window in windows])
        return Prediction(mean=np.repeat(last[:, None], horizon, axis=1), spread=np.ones(len(windows))).split()

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    return serve(host=args.host, port=args.port, stand_in=last_value_forward)


if __name__ == "__main__":
    raise SystemExit(main())

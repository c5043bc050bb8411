"""Garbage-collector settings for the server process.

A forecast request allocates thousands of short-lived containers (the posted lists of floats,
pydantic models, futures, the response's lists) while the interpreter holds about 300,000
long-lived objects from torch, pandas and FastAPI. With CPython's default thresholds the
collector runs a young collection every few requests, and the requests still in flight are
promoted and walked again by the older collections; a full collection walks every long-lived
object (about 0.25 s each on the benchmark machine). Under load that was about a fifth of the
event loop's time (bench/serve.py). So, once, before the models load:

- `gc.freeze()` moves what exists at start-up (modules, classes, the app) to the permanent
  generation, which collections skip. Models load after it, so a retired version stays
  collectable and hot reloads do not leak.
- The young generation's threshold is raised, so a request's objects are freed by reference
  counting before a collection sees them; cyclic garbage is still collected, just less often.
"""

from __future__ import annotations

import gc


def tune_gc(young_threshold: int) -> None:
    """`young_threshold` 0 keeps CPython's defaults."""
    if young_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)

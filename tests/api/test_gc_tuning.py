"""GC tuning of the server process: start-up objects are frozen and the young threshold raised,
so request garbage is freed by reference counting; 0 leaves CPython's defaults alone. Each case
runs in its own interpreter so the test process keeps its own collector settings."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import gc, json, sys
from api.runtime.gc_tuning import tune_gc
before = gc.get_threshold()
tune_gc(int(sys.argv[1]))
garbage = []
garbage.append(garbage)  # a reference cycle made after tuning
del garbage
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count(),
                  "collected": gc.collect()}))
"""


def _probe(threshold: int) -> dict[str, list[int] | int]:
    output = subprocess.run([sys.executable, "-c", PROBE, str(threshold)], capture_output=True, text=True, check=True)
    return dict(json.loads(output.stdout))


def test_tuning_freezes_start_up_objects_and_raises_the_young_threshold() -> None:
    result = _probe(50_000)
    assert result["after"] == [50_000, *result["before"][1:]]  # type: ignore[index]
    assert result["frozen"] > 1_000  # the interpreter's and the imports' objects
    assert result["collected"] >= 1  # cycles made later are still collected


def test_zero_keeps_the_interpreter_defaults() -> None:
    result = _probe(0)
    assert result["after"] == result["before"]
    assert result["frozen"] == 0

"""Failed loads: retried with backoff that doubles up to its cap while the files stay the same,
at once when they change, and logged and counted once per distinct failure."""

from __future__ import annotations

from forecast.registry.store import FileIdentity, VersionFiles
from forecast.serving.failures import LoadFailures

KEY = ("demo", 2)
MANIFEST = FileIdentity(inode=1, mtime_ns=10, size=100)
HALF = VersionFiles(manifest=MANIFEST, weights=None)
WHOLE = VersionFiles(manifest=MANIFEST, weights=FileIdentity(inode=2, mtime_ns=20, size=5000))


def test_the_same_files_wait_for_a_backoff_that_doubles_up_to_its_cap() -> None:
    failures = LoadFailures(first_delay_s=2.0, max_delay_s=10.0)
    now, delays = 0.0, []
    for _ in range(5):
        failure, _ = failures.record(KEY, HALF, "cannot read model.safetensors", now)
        delays.append(failure.retry_at - now)
        assert failures.blocking(KEY, HALF, now + delays[-1] - 0.01) is failure
        now = failure.retry_at
        assert failures.blocking(KEY, HALF, now) is None, "due: try again"
    assert delays == [2.0, 4.0, 8.0, 10.0, 10.0]


def test_changed_files_are_tried_at_once_and_start_a_new_backoff() -> None:
    failures = LoadFailures(first_delay_s=2.0, max_delay_s=300.0)
    for attempt in range(4):
        failures.record(KEY, HALF, "cannot read model.safetensors", float(attempt))
    assert failures.blocking(KEY, WHOLE, 3.5) is None
    failure, news = failures.record(KEY, WHOLE, "fails its sha256 check", 3.5)
    assert news and failure.attempts == 1 and failure.retry_at == 5.5


def test_only_a_new_failure_is_news() -> None:
    failures = LoadFailures(first_delay_s=1.0, max_delay_s=60.0)
    assert failures.record(KEY, HALF, "boom", 0.0)[1]
    assert not failures.record(KEY, HALF, "boom", 1.0)[1], "the same files failing alike again"
    assert failures.record(KEY, HALF, "another error", 3.0)[1]
    assert failures.record(KEY, WHOLE, "another error", 4.0)[1]


def test_a_cleared_or_forgotten_failure_no_longer_blocks() -> None:
    failures = LoadFailures(first_delay_s=100.0, max_delay_s=100.0)
    failures.record(KEY, HALF, "boom", 0.0)
    failures.record(("gone", 1), HALF, "boom", 0.0)
    failures.clear(KEY)
    failures.forget_models_except({"demo"})
    assert failures.blocking(KEY, HALF, 1.0) is None and failures.get(("gone", 1)) is None

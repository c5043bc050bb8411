"""Versions that failed to load, and when to try them again.

A failure is remembered with the identity of the version's files. While they stay the same the
version is retried with exponential backoff (a transient fault such as an out-of-memory or an
I/O error may pass), and is not re-read or re-hashed on every poll or request in between. When
they change (weights that arrived after their manifest, a restored file) it is retried at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from forecast.registry.store import VersionFiles

VersionKey = tuple[str, int]  # (model name, version)


@dataclass(slots=True)
class LoadFailure:
    files: VersionFiles  # as they were when the load began
    error: str  # one line, bounded
    attempts: int  # failed loads of these same files
    retry_at: float  # time.monotonic() after which the same files are tried again


class LoadFailures:
    def __init__(self, first_delay_s: float, max_delay_s: float) -> None:
        self.first_delay_s = first_delay_s
        self.max_delay_s = max(max_delay_s, first_delay_s)
        self._failures: dict[VersionKey, LoadFailure] = {}

    def get(self, key: VersionKey) -> LoadFailure | None:
        return self._failures.get(key)

    def blocking(self, key: VersionKey, files: VersionFiles, now: float) -> LoadFailure | None:
        """The failure that still stands for these files, or None when a load should be tried."""
        failure = self._failures.get(key)
        if failure is None or failure.files != files or now >= failure.retry_at:
            return None
        return failure

    def record(self, key: VersionKey, files: VersionFiles, error: str, now: float) -> tuple[LoadFailure, bool]:
        """Remember a failed load; the flag says whether it is news (first failure of these files
        or another error), which the caller logs and counts, rather than a retry that failed alike."""
        previous = self._failures.get(key)
        same_files = previous is not None and previous.files == files
        attempts = previous.attempts + 1 if same_files and previous is not None else 1
        delay_s = min(self.first_delay_s * 2 ** (attempts - 1), self.max_delay_s)
        failure = LoadFailure(files=files, error=error, attempts=attempts, retry_at=now + delay_s)
        self._failures[key] = failure
        news = not same_files or previous is None or previous.error != error
        return failure, news

    def failed_versions(self, name: str) -> set[int]:
        return {version for model, version in self._failures if model == name}

    def clear(self, key: VersionKey) -> None:
        self._failures.pop(key, None)

    def forget_models_except(self, names: set[str]) -> None:
        """Drop what is known about models that left the registry."""
        for key in [key for key in self._failures if key[0] not in names]:
            del self._failures[key]

"""The library's exceptions: each names the offending series or value and says how to fix it.

The API maps these classes to HTTP status codes in one place (`api/errors.py`); the CLI prints
their message as one line and exits non-zero.
"""

from __future__ import annotations

import reprlib

# Error messages quote the offending input; a hostile input must not make the message huge.
EXCERPT_CHARS = 40


def excerpt(text: object, limit: int = EXCERPT_CHARS) -> str:
    """`text` as repr() writes it, its middle cut by reprlib to about `limit` characters, with
    the full length when cut. Only the ends are ever repr()'d, however long the text; lone
    surrogates and other unencodable characters come out escaped, so the result always
    encodes as UTF-8."""
    value = text if isinstance(text, str) else str(text)
    cut = reprlib.Repr()
    cut.maxstring = limit
    shown = cut.repr(value)
    if len(value) > limit:
        shown = f"{shown} ({len(value)} characters)"
    return shown.encode("utf-8", "backslashreplace").decode("utf-8")


class ForecastError(Exception):
    """Base class of every error the library raises on purpose."""

    def __init__(self, message: str, *, series_id: str | None = None) -> None:
        self.series_id = series_id
        prefix = f"series {excerpt(series_id)}: " if series_id is not None else ""
        super().__init__(prefix + message)


class TrainingFailed(ForecastError):
    """Training ran but produced a network that must not be published (non-finite forecasts)."""


class PeerFailed(ForecastError):
    """Another process of a torchrun training job failed and reported why; this one stops too,
    without repeating the message."""


class InvalidInput(ForecastError):
    """The caller's data or request is wrong; nothing was computed or written."""


class MissingColumns(InvalidInput):
    pass


class MissingCovariates(MissingColumns):
    """A covariate column the training needs is not in the data."""


class NonNumericValues(InvalidInput):
    pass


class NonFiniteValues(InvalidInput):
    pass


class BadTimestamps(InvalidInput):
    """Unparseable, duplicate, unsorted or irregular timestamps."""


class TooLittleSignal(BadTimestamps):
    """A series whose grid misses too many points (or every value) to forecast from."""


class FrequencyError(InvalidInput):
    """A frequency that cannot be inferred, or one that differs from the model's."""


class SeriesTooShort(InvalidInput):
    pass


class ValueOutOfRange(InvalidInput):
    """A value, instant or forecast beyond what the network's dtype or the calendar can hold."""


class InvalidRequest(InvalidInput):
    """A request parameter out of range: horizon, interval level, duplicate ids, limits."""


class RequestTooLarge(InvalidRequest):
    pass


class InvalidName(InvalidInput):
    pass


class NotFound(ForecastError):
    """A model, version or alias that the registry does not hold."""


class ModelNotFound(NotFound):
    pass


class VersionNotFound(NotFound):
    pass


class RegistryCorrupt(ForecastError):
    """A version whose files fail their checksum or whose manifest does not validate."""


class RegistryConflict(ForecastError):
    """A registry write that lost to other writers: a file that changed under every attempt to
    update it, or a folder written into outside the registry's protocol."""


class AliasMoved(RegistryConflict):
    """An alias no longer points where the caller saw it (another promotion got there first)."""


class Unavailable(ForecastError):
    """The service cannot take this work now, and says when to retry (503 + Retry-After)."""

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message)


class Overloaded(Unavailable):
    """A queue is full (the model's, one client's share of it, or the requests in flight)."""


class DeadlineExceeded(ForecastError):
    """A queued request waited longer than its deadline."""


class ShuttingDown(Unavailable):
    """The service is draining and takes no new work."""


class InferenceUnavailable(Unavailable):
    """The shared inference process of the device is restarting (or hung): retry shortly."""


class VersionLoading(Unavailable):
    """The version an alias newly points at is still loading, and the alias served nothing before."""


class ClientDisconnected(ForecastError):
    """The client hung up while its series were queued; its work was dropped."""


class InvalidSetting(ForecastError):
    """A setting the service cannot start with (an unreadable API key file, a malformed rate
    limit); the message names the variable and the fix, and never a key's value."""


class AccessDenied(ForecastError):
    """The API refused a caller before doing any work for it. `headers` are what the refusal
    must carry besides its body (the Bearer challenge, when to retry), filled in by the API
    code that raises it."""

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        self.headers = dict(headers or {})
        super().__init__(message)


class Unauthorized(AccessDenied):
    """No API key, or one the server does not know."""


class AmbiguousCredentials(AccessDenied):
    """More than one Authorization header: which one a proxy or the server reads first is not
    something to guess (400)."""


class Forbidden(AccessDenied):
    """A valid API key whose scope does not cover the request."""


class RateLimited(AccessDenied):
    """A key (or, without keys, a client address) over its requests or series per second."""

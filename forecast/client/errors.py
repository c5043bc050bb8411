"""The errors a client call raises: the server's own kind, message and series id, typed by what
a caller does about them."""

from __future__ import annotations


class ForecastClientError(Exception):
    """An answer that is not a forecast. `status` is the HTTP status (0: no answer at all),
    `kind` the server's error kind (`invalid_input`, `not_found`, ...), `series_id` the series it
    names, if any, `request_id` what to quote to the operator."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        kind: str = "",
        series_id: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.kind = kind
        self.series_id = series_id
        self.request_id = request_id


class InvalidSeries(ForecastClientError):
    """422 naming a series: its values, timestamps or covariates cannot be forecast as posted."""


class InvalidRequest(ForecastClientError):
    """422 (or 400) about the request as a whole: a horizon, a level, a parameter."""


class RequestTooLarge(ForecastClientError):
    """413: over a limit the client could not split under (one series longer than allowed)."""


class NotFound(ForecastClientError):
    """404: no such model, version or alias."""


class AccessDenied(ForecastClientError):
    """401 or 403: no valid key, or a key without the scope."""


class RateLimited(ForecastClientError):
    """429 still after every retry."""


class Unavailable(ForecastClientError):
    """503 or 504 still after every retry, or the server could not be reached."""


class ServerError(ForecastClientError):
    """500: a fault of the service (quote `request_id` to its operator)."""


def error_for(status: int, body: object, request_id: str | None) -> ForecastClientError:
    """The typed error of an answer, from the service's JSON envelope when it has one."""
    envelope = body if isinstance(body, dict) else {}
    message = str(envelope.get("message") or f"HTTP {status}")
    kind = str(envelope.get("error") or "")
    series_id = envelope.get("series_id")
    series = series_id if isinstance(series_id, str) else None
    kinds: dict[int, type[ForecastClientError]] = {
        401: AccessDenied,
        403: AccessDenied,
        404: NotFound,
        413: RequestTooLarge,
        429: RateLimited,
        503: Unavailable,
        504: Unavailable,
    }
    if status in (400, 422):
        cls: type[ForecastClientError] = InvalidSeries if series is not None else InvalidRequest
    else:
        cls = kinds.get(status, ServerError if status >= 500 else ForecastClientError)
    return cls(message, status=status, kind=kind, series_id=series, request_id=request_id)

"""The one place where library errors become HTTP: each class gets its status and label (the
most specific class wins), every body has the ErrorBody shape, and overload says when to retry."""

from __future__ import annotations

import json

import pytest

from api.errors import error_kind, error_response
from forecast.errors import (
    BadTimestamps,
    ClientDisconnected,
    DeadlineExceeded,
    ForecastError,
    InvalidName,
    ModelNotFound,
    Overloaded,
    RegistryCorrupt,
    RequestTooLarge,
    SeriesTooShort,
    ShuttingDown,
    VersionNotFound,
)


@pytest.mark.parametrize(
    ("error", "status", "label"),
    [
        (RequestTooLarge("over the limit"), 413, "too_large"),  # an InvalidInput, but 413 first
        (InvalidName("bad name"), 422, "invalid_name"),
        (SeriesTooShort("has 3 points", series_id="a"), 422, "invalid_input"),
        (BadTimestamps("unsorted", series_id="a"), 422, "invalid_input"),
        (ModelNotFound("no such model"), 404, "not_found"),
        (VersionNotFound("no version 9"), 404, "not_found"),
        (Overloaded("queue full"), 503, "overloaded"),
        (ShuttingDown("draining"), 503, "overloaded"),
        (DeadlineExceeded("waited too long"), 504, "deadline_exceeded"),
        (RegistryCorrupt("checksum"), 500, "registry_corrupt"),
        (ClientDisconnected("gone"), 499, "client_disconnected"),
        (ForecastError("anything else"), 500, "internal"),
    ],
)
def test_each_error_class_maps_to_its_status_and_label(error: ForecastError, status: int, label: str) -> None:
    assert (error_kind(error).status, error_kind(error).label) == (status, label)
    response = error_response(error)
    assert response.status_code == status
    body = json.loads(bytes(response.body))
    assert body == {"error": label, "message": str(error), "series_id": error.series_id}


def test_a_series_error_names_its_series_in_the_body() -> None:
    body = json.loads(bytes(error_response(SeriesTooShort("has 3 points", series_id="store-7")).body))
    assert body["series_id"] == "store-7" and body["message"].startswith("series 'store-7': ")


def test_overload_says_when_to_retry() -> None:
    response = error_response(Overloaded("queue full", retry_after_s=2.4))
    assert response.headers["retry-after"] == "2"
    assert "retry-after" not in error_response(ModelNotFound("no")).headers

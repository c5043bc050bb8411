"""Between pandas and the API, without any I/O: a long DataFrame cut into the request's series,
the series packed into requests under the server's limits, and the answers turned back into one
long DataFrame (`<model>`, `<model>-lo-80`, `<model>-hi-80`, as statsforecast and Nixtla name
them)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from forecast.client.errors import InvalidSeries

# What one request's JSON costs besides its series (model, horizon, levels, brackets).
_ENVELOPE_BYTES = 1024


@dataclass(frozen=True, slots=True)
class FrameColumns:
    """Where the frame keeps each part of a series. Covariate columns are sent by kind; for
    future-known ones, a series' rows after its last value (the value left empty) carry them over
    the horizon."""

    id_col: str = "series_id"
    time_col: str = "timestamp"
    value_col: str = "value"
    past: tuple[str, ...] = ()
    future: tuple[str, ...] = ()
    static: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Limits:
    """The server's request limits (GET /v1/limits)."""

    max_series_per_request: int
    max_points_per_series: int
    max_points_per_request: int
    max_body_bytes: int
    queue_limit_per_client: int

    @classmethod
    def of(cls, body: dict[str, Any], concurrency: int) -> Limits:
        """The limits for a client with `concurrency` requests in flight: together they fit the
        server's queue for one client (a request beyond it would wait out a 503). A server
        older than that setting does not name it; its series limit alone applies."""
        series = int(body["max_series_per_request"])
        queue = int(body.get("queue_limit_per_client", series * max(1, concurrency)))
        return cls(
            max_series_per_request=max(1, min(series, queue // max(1, concurrency))),
            max_points_per_series=int(body["max_points_per_series"]),
            max_points_per_request=int(body["max_points_per_request"]),
            max_body_bytes=int(body["max_body_bytes"]),
            queue_limit_per_client=queue,
        )


@dataclass(slots=True)
class SeriesPayload:
    series_id: str
    body: dict[str, Any]  # the series as the request posts it
    points: int  # what the server's point limits count: values and covariate values
    size: int  # bytes of its JSON


@dataclass(slots=True)
class Batch:
    series: list[SeriesPayload] = field(default_factory=list)
    points: int = 0
    size: int = _ENVELOPE_BYTES


def _stamps(column: pd.Series) -> list[str]:
    stamps = pd.DatetimeIndex(pd.to_datetime(column))
    if stamps.tz is None and (stamps.asi8 % 1_000_000_000 == 0).all():
        return list(np.datetime_as_string(stamps.to_numpy(), unit="s"))
    return [stamp.isoformat() for stamp in stamps]


def _numbers(column: pd.Series, series_id: str) -> list[float | None]:
    """The column as JSON numbers, null where missing; an infinite value cannot be sent (JSON has
    none) and is refused here as the server would refuse it, naming the series."""
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    infinite = np.isinf(values)
    if infinite.any():
        position = int(np.flatnonzero(infinite)[0])
        raise InvalidSeries(
            f"series {series_id!r}: {column.name!r} is infinite at row {position} ({int(infinite.sum())} such "
            "value(s)); send finite numbers, or leave a missing one empty (NaN)",
            status=422,
            kind="invalid_input",
            series_id=series_id,
        )
    return [None if np.isnan(v) else float(v) for v in values]


def _static(rows: pd.DataFrame, names: tuple[str, ...]) -> dict[str, Any]:
    found = {}
    for name in names:
        value = rows[name].dropna()
        if len(value):
            item = value.iloc[0]
            found[name] = item.item() if hasattr(item, "item") else item
    return found


def series_payload(series_id: str, rows: pd.DataFrame, columns: FrameColumns, max_points: int) -> SeriesPayload:
    """One series of the frame as a request posts it. History beyond the server's points per
    series is cut from the front: the forecast reads only the model's input window at the end."""
    values = rows[columns.value_col].to_numpy(dtype=np.float64, na_value=np.nan)
    end = len(values)
    if columns.future:  # the rows after the last value carry the future-known covariates
        observed = np.flatnonzero(np.isfinite(values))
        end = int(observed[-1]) + 1 if len(observed) else len(values)
    start = max(0, end - max_points)
    kept = rows.iloc[start:]
    body: dict[str, Any] = {
        "id": series_id,
        "timestamps": _stamps(kept[columns.time_col].iloc[: end - start]),
        "values": _numbers(kept[columns.value_col].iloc[: end - start], series_id),
    }
    if columns.past:
        body["past_covariates"] = {name: _numbers(kept[name].iloc[: end - start], series_id) for name in columns.past}
    if columns.future:
        body["future_covariates"] = {name: _numbers(kept[name], series_id) for name in columns.future}
    if columns.static:
        body["static_covariates"] = _static(rows, columns.static)
    lists = [body["values"], *body.get("past_covariates", {}).values(), *body.get("future_covariates", {}).values()]
    size = len(json.dumps(body, separators=(",", ":"))) + 1
    return SeriesPayload(series_id, body, sum(len(values) for values in lists), size)


def series_payloads(frame: pd.DataFrame, columns: FrameColumns, limits: Limits) -> list[SeriesPayload]:
    missing = [
        name
        for name in (
            columns.id_col,
            columns.time_col,
            columns.value_col,
            *columns.past,
            *columns.future,
            *columns.static,
        )
        if name not in frame.columns
    ]
    if missing:
        raise KeyError(f"the frame has no column(s) {missing}; it has {list(frame.columns)}")
    return [
        series_payload(str(series_id), rows, columns, limits.max_points_per_series)
        for series_id, rows in frame.groupby(columns.id_col, sort=False)
    ]


def pack(payloads: Sequence[SeriesPayload], limits: Limits) -> list[Batch]:
    """The series in requests, in order, each under the series, points and body limits."""
    batches = [Batch()]
    for payload in payloads:
        current = batches[-1]
        fits = (
            len(current.series) < limits.max_series_per_request
            and current.points + payload.points <= limits.max_points_per_request
            and current.size + payload.size <= limits.max_body_bytes
        )
        if current.series and not fits:
            current = Batch()
            batches.append(current)
        current.series.append(payload)
        current.points += payload.points
        current.size += payload.size
    return [batch for batch in batches if batch.series]


def forecast_columns(model: str, levels: Sequence[float]) -> list[str]:
    return [model, *(f"{model}-{side}-{level:g}" for level in levels for side in ("lo", "hi"))]


def answer_frame(
    answers: Sequence[dict[str, Any]], columns: FrameColumns, model: str, levels: Sequence[float]
) -> pd.DataFrame:
    """Every answer's forecasts as one long frame, in the order the series were posted."""
    names = forecast_columns(model, levels)
    ids: list[str] = []
    stamps: list[str] = []
    values: dict[str, list[float]] = {name: [] for name in names}
    for answer in answers:
        for forecast in answer["forecasts"]:
            steps = len(forecast["mean"])
            ids.extend([forecast["id"]] * steps)
            stamps.extend(forecast["timestamps"])
            values[model].extend(forecast["mean"])
            for level in levels:
                bounds = forecast["intervals"][f"{level:g}"]
                values[f"{model}-lo-{level:g}"].extend(bounds["lower"])
                values[f"{model}-hi-{level:g}"].extend(bounds["upper"])
    frame = pd.DataFrame({columns.id_col: ids, columns.time_col: pd.to_datetime(stamps), **values})
    return frame

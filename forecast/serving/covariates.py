"""A posted series' covariates checked against the version and cut to what its window needs.

The request carries each kind by name: past covariates as long as the values, future-known ones
from the first posted point to the last forecast step (len(values) + horizon), static ones as
one value each. Every error names the series and the covariate: a missing, misnamed, unknown,
too short or non-finite covariate, or a future-known one that stops before the horizon ends
(saying how many steps are missing). Scaling happens in the predictor, with the training job's
numbers (`forecast.model.encoding.encode`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from forecast.errors import InvalidRequest, NonFiniteValues, ValueOutOfRange, excerpt
from forecast.model.config import NETWORK_MAX_VALUE
from forecast.registry.manifest import Manifest
from forecast.serving.placement import Placement

_NO_SERIES = np.zeros((0, 0))
_NO_STATIC = np.zeros(0)
for _empty in (_NO_SERIES, _NO_STATIC):
    _empty.flags.writeable = False


@dataclass(slots=True)
class PostedCovariates:
    """One series' covariates as posted (None: that kind was not posted)."""

    past: Mapping[str, Sequence[float | None]] | None = None
    future: Mapping[str, Sequence[float | None]] | None = None
    static: Mapping[str, str | float] | None = None


@dataclass(slots=True)
class CovariateWindow:
    """What the network reads of one series' covariates, raw (the predictor scales them)."""

    past: np.ndarray  # (L, P) float64, or (0, 0) for a version without past covariates
    future: np.ndarray  # (L + K, Q) float64 over the window and the K known steps, or (0, 0)
    static: np.ndarray  # (S,) float64: codes, then numbers; or (0,)


NO_COVARIATES = CovariateWindow(_NO_SERIES, _NO_SERIES, _NO_STATIC)


def _describe(manifest: Manifest) -> str:
    kinds = manifest.covariates.kinds()
    read = "; ".join(f"{kind}: {names}" for kind, names in kinds.items() if names)
    return f"model {manifest.name!r} version {manifest.version} reads " + (read or "no covariates")


_KIND_FIELD = {"past": "past_covariates", "future": "future_covariates", "static": "static_covariates"}
_KIND_TEXT = {"past": "past", "future": "future-known", "static": "static"}


def _check_names(manifest: Manifest, series_id: str, posted: PostedCovariates) -> None:
    """Every posted name is one the version reads, under its kind; every one it reads is posted."""
    expected = manifest.covariates.kinds()
    owner = {name: kind for kind, names in expected.items() for name in names}
    for kind, given in (("past", posted.past), ("future", posted.future), ("static", posted.static)):
        for name in given or {}:
            if name in expected[kind]:
                continue
            if name in owner:
                raise InvalidRequest(
                    f"covariate {excerpt(name)} is a {_KIND_TEXT[owner[name]]} covariate of the model; post it under "
                    f"'{_KIND_FIELD[owner[name]]}', not '{_KIND_FIELD[kind]}'",
                    series_id=series_id,
                )
            raise InvalidRequest(
                f"unknown {_KIND_TEXT[kind]} covariate {excerpt(name)}: {_describe(manifest)}", series_id=series_id
            )
        missing = [name for name in expected[kind] if name not in (given or {})]
        if missing:
            raise InvalidRequest(
                f"missing {_KIND_TEXT[kind]} covariate(s) {missing} under '{_KIND_FIELD[kind]}': {_describe(manifest)}",
                series_id=series_id,
            )


def _numbers(series_id: str, kind: str, name: str, raw: Sequence[float | None]) -> np.ndarray:
    try:
        values = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        values = np.zeros((0, 0))
    if values.ndim != 1:
        raise InvalidRequest(
            f"{_KIND_TEXT[kind]} covariate {excerpt(name)} must be a list of numbers", series_id=series_id
        )
    bad = np.isinf(values)  # a missing value (null, NaN) is a gap, filled like the target's
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        raise NonFiniteValues(
            f"{_KIND_TEXT[kind]} covariate {excerpt(name)} is infinite at position {position} "
            f"({int(bad.sum())} such value(s)); send finite numbers, or null where one is missing",
            series_id=series_id,
        )
    large = np.abs(values) > NETWORK_MAX_VALUE
    if large.any():
        position = int(np.flatnonzero(large)[0])
        raise ValueOutOfRange(
            f"{_KIND_TEXT[kind]} covariate {excerpt(name)} has {values[position]:g} at position {position}, beyond "
            f"what the network's float32 can hold (+-{NETWORK_MAX_VALUE:.3g})",
            series_id=series_id,
        )
    return values


def _past(
    manifest: Manifest, series_id: str, posted: Mapping[str, Sequence[float | None]], placement: Placement
) -> np.ndarray:
    size, count = manifest.input_size, placement.count
    columns = []
    for covariate in manifest.covariates.past:
        raw = posted[covariate.name]
        if len(raw) != count:
            raise InvalidRequest(
                f"past covariate {excerpt(covariate.name)} has {len(raw)} values but the series has {count}; a past "
                "covariate is posted with every value of the series",
                series_id=series_id,
            )
        columns.append(placement.window(_numbers(series_id, "past", covariate.name, raw)))
    return np.stack(columns, axis=1) if columns else np.zeros((size, 0))  # (L, P)


def _future(
    manifest: Manifest, series_id: str, posted: Mapping[str, Sequence[float | None]], placement: Placement, horizon: int
) -> np.ndarray:
    """(L + K, Q): the window's steps, then the K steps the network reads after it (the model's
    horizon when it reads them). Steps past the requested horizon, which no served step depends
    on, are the covariate's training mean when not posted."""
    size, count = manifest.input_size, placement.count
    needed, most = count + horizon, count + manifest.horizon
    known = manifest.horizon if manifest.network.horizon_inputs else 0
    columns = []
    for covariate in manifest.covariates.future:
        raw = posted[covariate.name]
        if len(raw) < needed:
            raise InvalidRequest(
                f"future-known covariate {excerpt(covariate.name)} has {len(raw)} values but needs {needed} (the {count} "
                f"posted points and the {horizon} forecast steps): {needed - len(raw)} step(s) missing at the end",
                series_id=series_id,
            )
        if len(raw) > most:
            raise InvalidRequest(
                f"future-known covariate {excerpt(covariate.name)} has {len(raw)} values, more than the {most} the "
                f"model can read (the {count} posted points and its horizon of {manifest.horizon})",
                series_id=series_id,
            )
        numbers = _numbers(series_id, "future", covariate.name, raw)
        if np.isnan(numbers[needed - 1]):  # as in training: known to the end, a gap before it is filled
            raise NonFiniteValues(
                f"future-known covariate {excerpt(covariate.name)} is missing at the last forecast step ({horizon}, "
                f"position {needed - 1}): it must be known to the horizon's end (a gap before it is filled)",
                series_id=series_id,
            )
        ahead = np.full(known, covariate.loc)
        ahead[: len(numbers) - count] = numbers[count : count + known]
        columns.append(np.concatenate([placement.window(numbers[:count]), ahead]))
    return np.stack(columns, axis=1) if columns else np.zeros((size + known, 0))


def _finite_number(value: object) -> bool:
    """A number (not a boolean) within float32's range; NaN is not."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return abs(float(value)) <= NETWORK_MAX_VALUE
    except OverflowError:  # an integer beyond any float
        return False


def _static(manifest: Manifest, series_id: str, posted: Mapping[str, str | float]) -> np.ndarray:
    for covariate in manifest.covariates.static:
        value = posted[covariate.name]
        if covariate.kind == "numeric" and not _finite_number(value):
            raise InvalidRequest(
                f"static covariate {excerpt(covariate.name)} is numeric; {excerpt(value)} is not a finite number "
                f"within +-{NETWORK_MAX_VALUE:.3g}",
                series_id=series_id,
            )
        if covariate.kind == "categorical" and not (isinstance(value, str) or _finite_number(value)):
            raise InvalidRequest(
                f"static covariate {excerpt(covariate.name)} is a category: send a string or a finite number, "
                f"not {excerpt(value)}",
                series_id=series_id,
            )
    # An unseen category takes the bucket the network trained for categories hidden from it
    # (forecast.model.network.UNSEEN_CATEGORY_RATE).
    return manifest.covariates.static_row(posted)


def covariate_window(
    manifest: Manifest, series_id: str, posted: PostedCovariates, *, placement: Placement, horizon: int
) -> CovariateWindow:
    """One series' covariates, checked, as its window needs them: posted with each value, placed
    where the values are (`placement`; gaps and padding are NaN, read as the training mean)."""
    covariates = manifest.covariates
    if covariates.empty and not (posted.past or posted.future or posted.static):
        return NO_COVARIATES  # the common case, per series of every request: nothing to check
    _check_names(manifest, series_id, posted)
    if covariates.empty:
        return NO_COVARIATES
    return CovariateWindow(
        past=_past(manifest, series_id, posted.past or {}, placement),
        future=_future(manifest, series_id, posted.future or {}, placement, horizon),
        static=_static(manifest, series_id, posted.static or {}),
    )

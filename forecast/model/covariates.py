"""Covariates as a version reads them: which ones, of which kind, and how each is scaled or coded.

Three kinds, as the field names them: past covariates are known up to the forecast origin,
future-known covariates over the horizon too, static covariates once per series. Each numeric
covariate is standardised with its own mean and standard deviation from the training part only;
each categorical static covariate maps its training categories to codes 1..n, and code 0 is the
bucket for a category never seen in training. The manifest stores this record as JSON, so the
training job and the API scale and code every covariate with the same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from forecast.model.config import InputLayout

StaticKind = Literal["numeric", "categorical"]
# A covariate's name is a column name or a JSON key: bounded, so errors can quote it whole.
CovariateName = str
MAX_COVARIATE_NAME_CHARS = 100
UNSEEN_CATEGORY = 0


class ScaledCovariate(BaseModel):
    """A numeric covariate and its standardisation `(x - loc) / scale`, fitted on training data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: CovariateName = Field(min_length=1, max_length=MAX_COVARIATE_NAME_CHARS)
    loc: float = 0.0
    scale: float = Field(default=1.0, gt=0.0)


class StaticCovariate(BaseModel):
    """A static covariate: numeric (scaled like the others) or categorical (its training
    categories, whose codes are their positions + 1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: CovariateName = Field(min_length=1, max_length=MAX_COVARIATE_NAME_CHARS)
    kind: StaticKind
    loc: float = 0.0
    scale: float = Field(default=1.0, gt=0.0)
    categories: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _categories_only_when_categorical(self) -> StaticCovariate:
        if self.kind == "categorical" and not self.categories:
            raise ValueError(f"categorical static covariate {self.name!r} lists no categories")
        if self.kind == "numeric" and self.categories:
            raise ValueError(f"numeric static covariate {self.name!r} lists categories")
        if len(set(self.categories)) != len(self.categories):
            raise ValueError(f"static covariate {self.name!r} lists a category twice")
        return self

    @property
    def codes(self) -> int:
        """Codes of a categorical covariate: its categories and the unseen bucket."""
        return len(self.categories) + 1


class Covariates(BaseModel):
    """The covariates of a version, each kind in the order the network reads them. Static ones
    are read categorical first, then numeric (`static_row`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    past: list[ScaledCovariate] = Field(default_factory=list)
    future: list[ScaledCovariate] = Field(default_factory=list)
    static: list[StaticCovariate] = Field(default_factory=list)
    _scaling: CovariateScaling | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _distinct_names(self) -> Covariates:
        names = self.names
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"covariates named more than once: {repeated}")
        return self

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.past] + [c.name for c in self.future] + [c.name for c in self.static]

    @property
    def empty(self) -> bool:
        return not (self.past or self.future or self.static)

    @property
    def static_order(self) -> list[StaticCovariate]:
        """The static covariates in the order of the static input: categorical, then numeric."""
        return [c for c in self.static if c.kind == "categorical"] + [c for c in self.static if c.kind == "numeric"]

    def layout(self, calendar_width: int) -> InputLayout:
        ordered = self.static_order
        return InputLayout(
            calendar=calendar_width,
            past=len(self.past),
            future=len(self.future),
            static_categories=tuple(c.codes for c in ordered if c.kind == "categorical"),
            static_numeric=sum(1 for c in ordered if c.kind == "numeric"),
        )

    def kinds(self) -> dict[str, list[str]]:
        """Names by kind, as the API and `forecast models show` list them."""
        return {
            "past": [c.name for c in self.past],
            "future": [c.name for c in self.future],
            "static": [c.name for c in self.static],
        }

    def scaling(self) -> CovariateScaling:
        """Every kind's (loc, scale) as arrays, built once: `encode` reads them for every batch."""
        if self._scaling is None:
            static = self.static_order
            self._scaling = CovariateScaling(
                past=scaling_arrays(self.past),
                future=scaling_arrays(self.future),
                # codes pass unchanged: (code - 0) / 1
                static=(
                    np.array([c.loc if c.kind == "numeric" else 0.0 for c in static], dtype=np.float64),
                    np.array([c.scale if c.kind == "numeric" else 1.0 for c in static], dtype=np.float64),
                ),
            )
        return self._scaling

    def static_row(self, values: Mapping[str, object]) -> np.ndarray:
        """(S,) float64: one series' static covariates as the network reads them, the codes of
        the categorical ones, then the raw numeric ones (`encode` scales them). The caller has
        checked that each is present and of its kind."""
        row = []
        for covariate in self.static_order:
            value = values[covariate.name]
            if covariate.kind == "categorical":
                row.append(float(category_code(covariate, value)))
            else:
                row.append(float(value))  # type: ignore[arg-type]
        return np.asarray(row, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class CovariateScaling:
    """Each kind's standardisation as (loc, scale) arrays of its width."""

    past: tuple[np.ndarray, np.ndarray]
    future: tuple[np.ndarray, np.ndarray]
    static: tuple[np.ndarray, np.ndarray]


NO_COVARIATES = Covariates()


def category_code(covariate: StaticCovariate, value: object) -> int:
    """The code of a category: its position + 1 among the training categories, else the unseen bucket."""
    try:
        return covariate.categories.index(category_text(value)) + 1
    except ValueError:
        return UNSEEN_CATEGORY


def category_text(value: object) -> str:
    """Categories are compared as text: 3 and "3" are the same store; 3.0 is written 3."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def fit_scaled(name: str, training_values: np.ndarray) -> ScaledCovariate:
    """The standardisation of one covariate from its observed training values only. A covariate
    constant in training keeps scale 1 (it carries nothing the network could learn from)."""
    values = np.asarray(training_values, dtype=np.float64)
    values = values[np.isfinite(values)]  # a missing value is a gap, out of the statistics
    loc = float(values.mean()) if values.size else 0.0
    spread = float(values.std()) if values.size else 0.0
    return ScaledCovariate(name=name, loc=loc, scale=spread if spread > 1e-12 else 1.0)


def fit_static(name: str, kind: StaticKind, training_values: Sequence[object]) -> StaticCovariate:
    """A static covariate's scaling (numeric) or categories (categorical), from the training series."""
    if kind == "categorical":
        return StaticCovariate(name=name, kind=kind, categories=sorted({category_text(v) for v in training_values}))
    scaled = fit_scaled(name, np.asarray(training_values, dtype=np.float64))
    return StaticCovariate(name=name, kind=kind, loc=scaled.loc, scale=scaled.scale)


def scaling_arrays(covariates: Sequence[ScaledCovariate]) -> tuple[np.ndarray, np.ndarray]:
    """(loc, scale) as (K,) float64 arrays, in the given order."""
    return (
        np.array([c.loc for c in covariates], dtype=np.float64),
        np.array([c.scale for c in covariates], dtype=np.float64),
    )

"""report.json: what a version's training shows beside its manifest (the loss per epoch of each
member, and actual against forecast at a few test origins), for the dashboard. The job writes
it through this model and GET /v1/models/{name}/versions/{n}/report reads it back through it,
so a report that does not have this shape is refused as a corrupt file, never served."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError

from forecast.config.training import EpochRecord
from forecast.errors import RegistryCorrupt


class ReportSample(BaseModel):
    """One test origin of one series: the history the network read, then the horizon."""

    model_config = ConfigDict(extra="forbid")

    series_id: str
    origin: str  # ISO 8601, the first forecast step
    history_timestamps: list[str]
    history: list[float | None]  # None: missing
    timestamps: list[str]
    actual: list[float | None]
    forecast: list[float]
    lower_80: list[float]
    upper_80: list[float]


class Report(BaseModel):
    model_config = ConfigDict(extra="forbid")

    epochs: list[EpochRecord] = []
    samples: list[ReportSample] = []


def read_report(payload: bytes, where: str) -> Report:
    try:
        return Report.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise RegistryCorrupt(
            f"{where}: report.json is not a training report: {first['msg']} at {first['loc']}"
        ) from None

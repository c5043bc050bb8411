"""The last steps of the training job: the version's manifest, its atomic publication, and the
move of `production` by the rules (the baseline gate, then promotion)."""

from __future__ import annotations

import platform
from collections import Counter
from datetime import UTC, datetime

import numpy as np
import torch

from forecast import __version__
from forecast.errors import RegistryCorrupt
from forecast.model.intervals import Calibration
from forecast.registry.manifest import DataFingerprint, GateVerdict, Manifest, Provenance
from forecast.registry.store import Registry, os_error_text
from forecast.series.frequency import cadence
from forecast.training.promotion import Candidate, Comparison, Promotion, Score, move_production
from forecast.training.records import Evaluation, Fitted, PreparedJob


def draft_manifest(
    job: PreparedJob,
    fitted: Fitted,
    evaluation: Evaluation,
    calibration: Calibration,
    timings: dict[str, float],
    gate: GateVerdict,
) -> Manifest:
    """The manifest of the version to publish; the registry fills in its number and checksums."""
    dataset = job.dataset
    return Manifest(
        name=job.name,
        version=0,
        created_at=datetime.now(UTC),
        training=job.config,
        freq=dataset.freq,
        features=job.features,
        scaling=fitted.predictor.scaling,
        covariates=job.covariates,
        season_length=cadence(dataset.freq).season_length,
        mase_period=cadence(dataset.freq).mase_period,
        data=DataFingerprint(
            sha256=dataset.fingerprint(),
            source=job.source,
            n_series=len(dataset.series),
            n_points=dataset.n_points,
            first_timestamp=min(s.timestamps[s.padding] for s in dataset.series).to_pydatetime(),
            last_timestamp=max(s.timestamps[-1] for s in dataset.series).to_pydatetime(),
            series_per_block=job.series_per_block,
            missing_points=sum(int(np.isnan(s.values[s.padding :]).sum()) for s in dataset.series),
        ),
        metrics={"validation": evaluation.validation.metrics, "test": evaluation.test.metrics},
        intervals=calibration,
        epochs_run=max(Counter(record.member for record in fitted.epochs).values(), default=0),
        best_epoch=fitted.best_epoch,
        timings=timings,
        provenance=Provenance(
            forecast=__version__, torch=torch.__version__, python=platform.python_version(), device=str(job.device)
        ),
        parent_version=job.parent_version,
        gate=gate,
    )


def publish_and_promote(
    registry: Registry,
    job: PreparedJob,
    draft: Manifest,
    files: dict[str, bytes],
    *,
    promote: bool,
    comparison: Comparison | None,
) -> tuple[Manifest, Promotion]:
    """Write the version atomically, then move `production` by the rules, under the model's lock."""
    with registry.locked(job.name):
        manifest = registry.publish(job.name, files, draft)
        assert manifest.gate is not None  # every draft has its verdict
        score = Score(manifest.gate.metric, manifest.gate.model)  # the gate scored the model already
        candidate = Candidate(job.name, manifest.version, score, manifest.gate)
        try:
            promotion = move_production(registry, candidate, promote=promote, comparison=comparison)
        except (OSError, RegistryCorrupt) as exc:
            # The version is whole in the registry; only the alias move failed (a full disk, a
            # store gone away): say exactly that, and how to finish it by hand.
            raise RegistryCorrupt(
                f"version {manifest.version} of {job.name!r} was written to "
                f"{registry.version_location(job.name, manifest.version)}, but moving its aliases failed "
                f"({os_error_text(exc) if isinstance(exc, OSError) else exc}): production did not move; once the registry accepts writes again, "
                f"`forecast models promote {job.name} {manifest.version}` promotes it"
            ) from None
    return manifest, promotion

"""The first stage of a fit: the linear skip solved in closed form, by ridge regression.

The skip maps the window, less its last value, to the horizon's correction of the anchor: a
linear model, so least squares solves it exactly, where gradient steps need many epochs (by which
time the recurrent encoder beside it has overfitted). The normal equations are accumulated over
the training windows in float64, solved for a path of ridge penalties, and the penalty whose skip
has the lowest validation loss is kept, or none when none beats the anchor alone. The squared
errors are weighed as the objective weighs them (for `mase` and `msse`: in units of each
series' in-sample seasonal MAE, so series of any size count alike).

Every rank of a distributed fit computes the same sums over the same windows, so every rank
solves the same system and keeps the same weights, with no collective beyond the validation's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from forecast.model.config import ScalingParams
from forecast.model.encoding import encode
from forecast.model.network import LinearPart
from forecast.model.scaling import to_scaled
from forecast.series.windows import SeriesStore, gather

logger = logging.getLogger(__name__)

_CHUNK = 4096
_MAX_WINDOWS = 200_000  # the sums converge long before; the sample is a fixed one (seeded)
# Penalties relative to the mean diagonal of the Gram matrix, so the path is the same whatever
# the data's size: from almost plain least squares to a skip shrunk close to zero.
_RELATIVE_PENALTIES = (1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)


@dataclass(slots=True)
class NormalEquations:
    """sum w x x^T and sum w x t^T over the windows, x the skip's input with a 1 appended."""

    gram: torch.Tensor  # (L + 1, L + 1) float64
    moment: torch.Tensor  # (L + 1, H) float64

    def solve(self, relative_penalty: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The skip's weight (H, L) and bias (H,) under the ridge penalty (the bias unpenalised)."""
        size = self.gram.shape[0] - 1
        scale = float(torch.diagonal(self.gram)[:size].mean())
        penalty = torch.zeros_like(self.gram)
        penalty.diagonal()[:size] = relative_penalty * max(scale, 1e-12)
        # The window's last point minus itself is always zero: the penalty keeps the system solvable.
        solution = torch.linalg.solve(self.gram + penalty, self.moment)  # (L + 1, H)
        return solution[:size].T.contiguous(), solution[size].contiguous()


WindowWeights = Callable[[np.ndarray, torch.Tensor], torch.Tensor | None]


def accumulate(
    linear: LinearPart, store: SeriesStore, origins: np.ndarray, weights: WindowWeights, *, input_size: int,
    horizon: int, scaling: ScalingParams, rng: np.random.Generator,
) -> NormalEquations:  # fmt: skip
    """The normal equations of the skip over at most _MAX_WINDOWS of the training windows.

    `weights(origins, spread)` gives each window's factor on its scaled errors ((B, 1), or None
    for all ones); the squared error weighs by its square."""
    if len(origins) > _MAX_WINDOWS:
        origins = np.sort(rng.choice(origins, _MAX_WINDOWS, replace=False))
    gram = torch.zeros(input_size + 1, input_size + 1, dtype=torch.float64)
    moment = torch.zeros(input_size + 1, horizon, dtype=torch.float64)
    with torch.inference_mode():
        for start in range(0, len(origins), _CHUNK):
            chunk = origins[start : start + _CHUNK]
            batch = gather(store, chunk, input_size=input_size, horizon=horizon)
            encoded = encode(batch.history, batch.features, scaling)
            values = encoded.inputs[:, :, 0].double()  # (B, L)
            target = to_scaled(batch.target, encoded.loc, encoded.spread).double()  # (B, H)
            correction = target - values[:, linear.anchor_source]  # what the skip must add
            inputs = torch.cat([values - values[:, -1:], torch.ones_like(values[:, :1])], dim=1)  # (B, L + 1)
            factor = weights(chunk, encoded.spread)
            weighted = inputs if factor is None else inputs * factor.double().square()
            gram += (weighted.T @ inputs).cpu()
            moment += (weighted.T @ correction).cpu()
    return NormalEquations(gram=gram, moment=moment)


def fit_linear(
    linear: LinearPart, equations: NormalEquations, validation_loss: Callable[[], float], best_loss: float
) -> float:
    """Sets the skip to the penalty path's best on validation, or back to zero when none beats
    `best_loss` (the anchor's); the validation loss it leaves."""
    skip = linear.skip
    kept: tuple[torch.Tensor, torch.Tensor] | None = None
    losses = {}
    for penalty in _RELATIVE_PENALTIES:
        weight, bias = equations.solve(penalty)
        if not (torch.isfinite(weight).all() and torch.isfinite(bias).all()):
            continue
        with torch.no_grad():
            skip.weight.copy_(weight.to(skip.weight))
            skip.bias.copy_(bias.to(skip.bias))
        losses[penalty] = loss = validation_loss()
        if loss < best_loss:
            best_loss, kept = loss, (weight, bias)
    with torch.no_grad():
        skip.weight.copy_(kept[0].to(skip.weight) if kept is not None else torch.zeros_like(skip.weight))
        skip.bias.copy_(kept[1].to(skip.bias) if kept is not None else torch.zeros_like(skip.bias))
    logger.info("linear skip: validation loss by relative penalty %s; kept %s", losses, kept is not None)
    return best_loss

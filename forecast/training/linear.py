"""The first stage of a fit: the linear skip solved in closed form, by ridge regression.

The skip maps the window, less its last value, to the horizon's correction of the anchor; with
covariates it also reads each past covariate's window and the static covariates (shared by
every step), and, for a network that reads the horizon's future-known inputs, step h's calendar and
future-known covariates, and theirs at the window step the anchor repeats for step h, with
weights of step h's own: an ARX model beside the network. A linear
model, so least squares solves it exactly, where gradient steps need many epochs (by which time
the recurrent encoder beside it has overfitted).

The normal equations are accumulated over the training windows in float64. Each step h has its
own system: the shared inputs' block is the same for all of them, and only the per-step block
differs, so the systems are solved by block elimination with one solve of the shared block per
penalty. A path of ridge penalties (relative to each block's mean diagonal, so the path
is unit-free) is tried with every input and with the window alone; the candidate with the lowest
validation loss is kept, or none when none beats the anchor alone. So covariates that do not help
on validation are not used by the skip. The squared errors are weighed as the objective weighs
them (for `mase` and `msse`: in units of each series' in-sample seasonal MAE).

Every rank of a distributed fit computes the same sums over the same windows, so every rank
solves the same system and keeps the same weights, with no collective beyond the validation's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from forecast.model.config import NetworkConfig, ScalingParams
from forecast.model.covariates import Covariates
from forecast.model.encoding import encode
from forecast.model.missing import fill_gaps
from forecast.model.scaling import to_scaled
from forecast.model.skip import LinearPart, skip_design, step_design
from forecast.series.windows import SeriesStore
from forecast.training.batches import gather_windows

logger = logging.getLogger(__name__)

_CHUNK = 4096
_MAX_WINDOWS = 200_000  # the sums converge long before; the sample is a fixed one (seeded)
# A window enters the skip's sums when at least this part of its target was observed.
_MIN_OBSERVED_TARGET = 0.5
# Penalties relative to the mean diagonal of each block of the Gram matrix, so the path is the
# same whatever the data's size: from almost plain least squares to a skip shrunk close to zero.
_RELATIVE_PENALTIES = (1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)


@dataclass(slots=True)
class NormalEquations:
    """The sums of the skip's least-squares problem over the windows, weighed.

    u is a window's shared input with a 1 appended (D + 1), x_h its step h inputs (W), r_h what
    step h must add to the anchor. `blocks` marks where each group of shared inputs ends (the
    window, then each past covariate's window, then the static inputs), for the penalty."""

    gram: torch.Tensor  # (D + 1, D + 1): sum w u u^T
    moment: torch.Tensor  # (D + 1, H): sum w u r^T
    cross: torch.Tensor  # (H, D + 1, W): sum w u x_h^T
    step_gram: torch.Tensor  # (H, W, W): sum w x_h x_h^T
    step_moment: torch.Tensor  # (H, W): sum w x_h r_h
    blocks: list[int]  # ends of the shared input's groups, the last one D

    @property
    def window_size(self) -> int:
        return self.blocks[0]

    def _penalty(self, relative_penalty: float) -> torch.Tensor:
        """The ridge penalty of each shared input, group by group (the bias, last, unpenalised)."""
        diagonal = torch.diagonal(self.gram)
        penalty = torch.zeros_like(diagonal)
        start = 0
        for end in self.blocks:
            penalty[start:end] = relative_penalty * max(float(diagonal[start:end].mean()), 1e-12)
            start = end
        return penalty

    def solve(self, relative_penalty: float, *, covariates: bool = True) -> SkipWeights:
        """The skip's weights under the ridge penalty; `covariates=False` solves for the window
        alone (every covariate weight zero), as a skip without covariates."""
        size = self.gram.shape[0] - 1
        used = [*range(size if covariates else self.window_size), size]  # the bias is the last input
        gram = self.gram[used][:, used] + torch.diag(self._penalty(relative_penalty)[used])
        moment = self.moment[used]  # (U, H)
        horizon, width = moment.shape[1], self.step_gram.shape[-1]
        step_width = width if covariates else 0  # each step's own inputs, W
        solution = torch.zeros(size + 1, horizon, dtype=gram.dtype)
        step_weights = torch.zeros(horizon, width, dtype=gram.dtype)
        cross = self.cross[:, used, :step_width]  # (H, U, W)
        # One solve of the shared block for the moment and every step's cross terms (A^-1 m, A^-1 B_h).
        # The window's last point minus itself is always zero: the penalty keeps the system solvable.
        right = torch.cat([moment, cross.permute(1, 0, 2).reshape(len(used), -1)], dim=1)  # (U, H + H * W)
        solved = torch.linalg.solve(gram, right)
        shared = solved[:, :horizon]  # (U, H)
        if step_width:
            inverse_cross = solved[:, horizon:].reshape(len(used), horizon, step_width)  # (U, H, W)
            step_penalty = relative_penalty * max(float(torch.diagonal(self.step_gram, dim1=1, dim2=2).mean()), 1e-12)
            # Schur complement of each step: S_h = C_h + penalty - B_h^T A^-1 B_h
            schur = self.step_gram + step_penalty * torch.eye(step_width, dtype=gram.dtype)  # (H, W, W)
            schur = schur - torch.einsum("hdw,dhv->hwv", cross, inverse_cross)
            rhs = self.step_moment - torch.einsum("hdw,dh->hw", cross, shared)  # (H, W)
            step_weights = torch.linalg.solve(schur, rhs.unsqueeze(-1)).squeeze(-1)  # (H, W)
            shared = shared - torch.einsum("dhw,hw->dh", inverse_cross, step_weights)  # (U, H)
        solution[used] = shared
        return SkipWeights(
            weight=solution[:size].T.contiguous(), bias=solution[size].contiguous(), step=step_weights.contiguous()
        )


@dataclass(slots=True)
class SkipWeights:
    weight: torch.Tensor  # (H, D) the shared inputs'
    bias: torch.Tensor  # (H,)
    step: torch.Tensor  # (H, W) each step's future-known inputs'

    def finite(self) -> bool:
        return bool(
            torch.isfinite(self.weight).all() and torch.isfinite(self.bias).all() and torch.isfinite(self.step).all()
        )


WindowWeights = Callable[[np.ndarray, torch.Tensor], torch.Tensor | None]


def _blocks(linear: LinearPart, input_size: int) -> list[int]:
    """Where the window, each past covariate's window and the static inputs end in the shared input."""
    layout = linear.layout
    ends = [input_size * (1 + index) for index in range(1 + layout.past)]
    static = sum(layout.static_categories) + layout.static_numeric
    return ends + ([ends[-1] + static] if static else [])


def _filled_target(history: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, H) the target with its gaps filled linearly along the whole window (input and target)."""
    if bool(torch.isfinite(target).all()):
        return target
    whole = torch.cat([history.to(target.dtype), target], dim=1)  # (B, L + H)
    return fill_gaps(whole).values[:, history.shape[1] :]


def accumulate(
    linear: LinearPart,
    store: SeriesStore,
    origins: np.ndarray,
    weights: WindowWeights,
    *,
    network: NetworkConfig,
    scaling: ScalingParams,
    covariates: Covariates,
    rng: np.random.Generator,
) -> NormalEquations:
    """The normal equations of the skip over at most _MAX_WINDOWS of the training windows.

    `weights(origins, spread)` gives each window's factor on its scaled errors ((B, 1), or None
    for all ones); the squared error weighs by its square."""
    if len(origins) > _MAX_WINDOWS:
        origins = np.sort(rng.choice(origins, _MAX_WINDOWS, replace=False))
    blocks = _blocks(linear, network.input_size)
    size, horizon = blocks[-1], network.horizon
    step_width = linear.horizon_skip.weight.shape[1] if linear.horizon_skip is not None else 0
    equations = NormalEquations(
        gram=torch.zeros(size + 1, size + 1, dtype=torch.float64),
        moment=torch.zeros(size + 1, horizon, dtype=torch.float64),
        cross=torch.zeros(horizon, size + 1, step_width, dtype=torch.float64),
        step_gram=torch.zeros(horizon, step_width, step_width, dtype=torch.float64),
        step_moment=torch.zeros(horizon, step_width, dtype=torch.float64),
        blocks=blocks,
    )
    with torch.inference_mode():
        for start in range(0, len(origins), _CHUNK):
            chunk = origins[start : start + _CHUNK]
            batch = gather_windows(store, chunk, network)
            encoded = encode(batch.windows, scaling, covariates, gaps=network.gap_rule)
            values = encoded.inputs[:, :, 0].double()  # (B, L)
            target = to_scaled(_filled_target(batch.windows.history, batch.target), encoded.loc, encoded.spread)
            correction = target.double() - linear.anchor(encoded.inputs).double()  # (B, H) what the skip must add
            # A target's gaps are filled along its window (every step's system then shares one
            # block; requiring complete targets would leave almost no window of a long horizon
            # with scattered gaps). Windows whose target is mostly missing stay out of the sums;
            # the epochs still learn from every window, their loss skipping missing targets.
            complete = torch.isfinite(batch.target).double().mean(dim=1) >= _MIN_OBSERVED_TARGET  # (B,)
            complete &= torch.isfinite(correction).all(dim=1)
            if not bool(complete.all()):
                chunk, correction = chunk[complete.cpu().numpy()], correction[complete]
                encoded, values = encoded.select(complete), values[complete]
            shared = skip_design(linear.layout, encoded.inputs, encoded.static).double()  # (B, D)
            inputs = torch.cat([shared, torch.ones_like(values[:, :1])], dim=1)  # (B, D + 1)
            factor = weights(chunk, encoded.spread)
            weight = torch.ones_like(values[:, :1]) if factor is None else factor.double().square()  # (B, 1)
            weighted = inputs * weight
            equations.gram += (weighted.T @ inputs).cpu()
            equations.moment += (weighted.T @ correction).cpu()
            if step_width:
                known = step_design(
                    linear.layout, encoded.inputs, encoded.known, linear.anchor_source
                ).double()  # (B, H, W)
                equations.cross += torch.einsum("bd,bhw->hdw", weighted, known).cpu()
                equations.step_gram += torch.einsum("bhw,bhv->hwv", known * weight[:, :, None], known).cpu()
                equations.step_moment += torch.einsum("bhw,bh->hw", known * weight[:, :, None], correction).cpu()
    return equations


def _set(linear: LinearPart, weights: SkipWeights | None) -> None:
    skip = linear.skip
    with torch.no_grad():
        skip.weight.copy_(weights.weight.to(skip.weight) if weights is not None else torch.zeros_like(skip.weight))
        skip.bias.copy_(weights.bias.to(skip.bias) if weights is not None else torch.zeros_like(skip.bias))
        if linear.horizon_skip is not None:
            step = linear.horizon_skip.weight
            step.copy_(weights.step.to(step) if weights is not None else torch.zeros_like(step))


@dataclass(frozen=True, slots=True)
class SkipChoice:
    """The ridge solve validation kept: its relative penalty, and whether it read the covariates."""

    penalty: float
    covariates: bool


def fit_linear(
    linear: LinearPart, equations: NormalEquations, validation_loss: Callable[[], float], best_loss: float
) -> tuple[float, SkipChoice | None]:
    """Sets the skip to the best candidate on validation (each penalty of the path, with every
    input and with the window alone), or back to zero when none beats `best_loss` (the
    anchor's); the validation loss it leaves, and the choice (None: the skip left at zero)."""
    has_covariates = equations.gram.shape[0] - 1 > equations.window_size or equations.step_gram.shape[-1] > 0
    variants = (True, False) if has_covariates else (True,)
    kept: SkipWeights | None = None
    choice: SkipChoice | None = None
    losses = {}
    for with_covariates in variants:
        for penalty in _RELATIVE_PENALTIES:
            weights = equations.solve(penalty, covariates=with_covariates)
            if not weights.finite():
                continue
            _set(linear, weights)
            losses[(penalty, with_covariates)] = loss = validation_loss()
            if loss < best_loss:
                best_loss, kept, choice = loss, weights, SkipChoice(penalty, with_covariates)
    _set(linear, kept)
    logger.info("linear skip: validation loss by (relative penalty, covariates) %s; kept %s", losses, kept is not None)
    return best_loss, choice


def solve_linear(linear: LinearPart, equations: NormalEquations, choice: SkipChoice | None) -> None:
    """Sets the skip to the solve a fit's validation chose (a refit on more data repeats it)."""
    weights = equations.solve(choice.penalty, covariates=choice.covariates) if choice is not None else None
    _set(linear, weights if weights is not None and weights.finite() else None)

"""Which anchor the network is built on, and which stands in for a network that loses the
gate, when the user left the anchor open; both on the last origins before the test block.

The network forecasts its anchor plus the ridge-solved skip plus what the encoder adds, and where
the encoder adds nothing (short data: validation keeps the solved start) the anchor and the skip
are the whole model. So the network's candidates are compared as that linear part, not as bare
baselines. The one that stands in for a losing network is served alone, so it is chosen alone,
once a network has lost, among every candidate (drift, Theta and the combination included, also
reading further back than the network: `stand_in_candidates`), in MASE units, so that anchors reading windows of different lengths
(and scales) compare. The skip is solved on the windows whose targets end `CHOICE_HORIZONS`
horizons before the validation block and scored on every origin after them (that stretch of
training data and the validation block): several origins per series, where the validation
block alone may hold one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from forecast.model.config import AnchorKind, InputLayout, NetworkConfig
from forecast.model.network import Forecaster
from forecast.series.windows import SeriesStore, origins_between
from forecast.training.choices import CHOICE_HORIZONS, AnchorChoice
from forecast.training.evaluate import EvaluationSet
from forecast.training.linear import fit_linear
from forecast.training.loop import Objective, linear_equations, seed_everything, validation_loss

logger = logging.getLogger(__name__)


Origins = Callable[[np.ndarray], np.ndarray]

# The anchors a network is built on when the user leaves the kind open. On a Theta anchor the
# epochs almost never improved on the solved start (bench/collection.py, "Theta anchor"), and the
# network lost to its repeat-anchored self: half-hourly demand OWA 0.960 against 0.216, quarterly
# 0.816 against 0.715. Theta, drift and the combination stand in, alone, for a network that
# loses the gate (`choose_stand_in`).
NETWORK_ANCHORS: frozenset[AnchorKind] = frozenset({"repeat"})


def choice_origins(evaluation: EvaluationSet, network: NetworkConfig, keep: Origins) -> tuple[np.ndarray, np.ndarray]:
    """The origins the skip is solved on, and those the candidates are scored on (of each, those
    `keep` keeps: the ones the network reads)."""
    store, blocks, horizon = evaluation.store, evaluation.blocks, network.horizon
    split = np.maximum(blocks.train_end - CHOICE_HORIZONS * horizon, 0)
    sizes = {"input_size": network.input_size, "horizon": horizon}
    fit_on = origins_between(store, np.zeros_like(split), split, **sizes)
    scored = origins_between(store, split, blocks.validation_end, **sizes)
    return keep(fit_on), keep(scored)


def stand_in_loss(
    network: NetworkConfig, layout: InputLayout, store: SeriesStore, scored: np.ndarray, objective: Objective
) -> float:
    """The scored origins' loss of the network's anchor alone, as the predictor serves it: fitted
    to the observed points only (a window that reaches back before its series' start reads those
    points as missing, whether or not the network reads the mask channel)."""
    forecaster = Forecaster(network.model_copy(update={"recurrent": False, "ensemble": 1}), layout)
    return validation_loss(
        forecaster,
        store,
        scored,
        objective,
        forecasting=lambda encoded: forecaster.anchor(encoded.inputs, encoded.observed),
    )


def anchor_loss(
    network: NetworkConfig, layout: InputLayout, store: SeriesStore, scored: np.ndarray, objective: Objective
) -> float:
    """The scored origins' loss of the network's anchor alone, in the job's objective: what the
    linear part must beat."""
    forecaster = Forecaster(network.model_copy(update={"recurrent": False, "ensemble": 1}), layout)
    return validation_loss(forecaster, store, scored, objective)


def linear_part_loss(
    network: NetworkConfig,
    layout: InputLayout,
    store: SeriesStore,
    origins: tuple[np.ndarray, np.ndarray],
    objective: Objective,
    seed: int,
    alone: float,
) -> float:
    """The scored origins' loss of the anchor with the skip solved on the fitting origins (`alone`,
    the anchor's own loss, where no solve beats it, as the training loop keeps it)."""
    fit_on, scored = origins
    rng = seed_everything(seed)
    forecaster = Forecaster(network.model_copy(update={"recurrent": False, "ensemble": 1}), layout)
    if forecaster.linear_part() is None or len(fit_on) == 0:
        return alone
    linear, equations = linear_equations(forecaster, store, fit_on, objective, rng)
    loss, _ = fit_linear(linear, equations, lambda: validation_loss(forecaster, store, scored, objective), alone)
    return loss


def choose_network_anchor(
    network: NetworkConfig,
    candidates: list[AnchorChoice],
    layout: InputLayout,
    evaluation: EvaluationSet,
    objective: Objective,
    seed: int,
    keep: Origins,
) -> AnchorChoice:
    """The network's anchor: of the `repeat` candidates (or of the kind the user asked for) that
    read the network's window, the one whose linear part scores best; the first when no origin
    can score them."""
    origins = choice_origins(evaluation, network, keep)
    kinds = {network.anchor} if network.anchor is not None else NETWORK_ANCHORS
    own_window = [c for c in candidates if c.lookback is None]
    for_network = [c for c in own_window if c.kind in kinds] or own_window
    if len(origins[1]) == 0:
        return for_network[0]
    linear = {}
    for candidate in for_network:
        shaped = network.model_copy(update={"anchor": candidate.kind, "anchor_period": candidate.period})
        loss_alone = anchor_loss(shaped, layout, evaluation.store, origins[1], objective)
        linear[candidate] = linear_part_loss(shaped, layout, evaluation.store, origins, objective, seed, loss_alone)
    chosen = min(linear, key=linear.__getitem__)
    shown = {_name(c): round(loss, 5) for c, loss in linear.items()}
    logger.info(
        "anchor: loss with the skip on %d origins by candidate %s; chose %s", len(origins[1]), shown, _name(chosen)
    )
    return chosen


def choose_stand_in(
    network: NetworkConfig,
    candidates: list[AnchorChoice],
    layout: InputLayout,
    evaluation: EvaluationSet,
    objective: Objective,
    keep: Origins,
) -> AnchorChoice:
    """The candidate that scores best alone on the network's choice origins, in MASE units (each
    window's error over its series' in-sample seasonal MAE), each reading as far back as it
    offers to; the first when no origin can score them. Asked only once a network has lost the
    gate, so a network that passes never pays for it: on M4 Hourly the job reaches its network's
    anchor 11 s after it starts, where scoring every stand-in first took 31 s (16 s before the
    combination's three readings were among them)."""
    origins = choice_origins(evaluation, network, keep)
    if len(origins[1]) == 0:
        return candidates[0]
    in_mase = Objective.of("mase", objective.scaling, evaluation.denominators["train"], objective.covariates)
    alone = {}
    for candidate in candidates:
        reading = network.model_copy(
            update={
                "anchor": candidate.kind,
                "anchor_period": candidate.period,
                "input_size": candidate.lookback or network.input_size,
            }
        )
        alone[candidate] = stand_in_loss(reading, layout, evaluation.store, origins[1], in_mase)
    chosen = min(alone, key=alone.__getitem__)
    shown = {_name(c): round(loss, 5) for c, loss in alone.items()}
    logger.info("stand-in: MASE alone on %d origins by candidate %s; chose %s", len(origins[1]), shown, _name(chosen))
    return chosen


def _name(candidate: AnchorChoice) -> str:
    reads = f" on {candidate.lookback}" if candidate.lookback else ""
    return f"{candidate.kind}({candidate.period}){reads}"

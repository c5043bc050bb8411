"""Gaps in the model layer: the one fill rule, and window statistics that ignore what was filled.
(That a padded series' forecast does not depend on its padding is checked through the serving
path, in tests/training/test_job_gaps.py.)"""

from __future__ import annotations

import math

import torch

from forecast.model.config import GapRule, ScalingParams
from forecast.model.encoding import RawWindows, encode
from forecast.model.missing import fill_gaps

NAN = math.nan


def _row(*values: float) -> torch.Tensor:
    return torch.tensor([values], dtype=torch.float64)


def test_inside_a_gap_the_fill_is_the_line_between_its_neighbours() -> None:
    filled = fill_gaps(_row(1.0, NAN, NAN, 4.0, 5.0))
    assert filled.values.tolist() == [[1.0, 2.0, 3.0, 4.0, 5.0]]
    assert filled.observed.tolist() == [[True, False, False, True, True]]


def test_previous_carries_the_value_before_a_gap_forward() -> None:
    assert fill_gaps(_row(1.0, NAN, NAN, 4.0, 5.0), "previous").values.tolist() == [[1.0, 1.0, 1.0, 4.0, 5.0]]


def test_after_the_last_value_it_is_carried_forward_and_before_the_first_the_last_value_is_used() -> None:
    # Padding (or a gap the window starts in) reads the window's last observed value, so that the
    # scaled padding of a short series is zero and its anchor is the naive forecast.
    assert fill_gaps(_row(NAN, NAN, 2.0, 6.0, NAN)).values.tolist() == [[6.0, 6.0, 2.0, 6.0, 6.0]]


def test_a_window_with_nothing_observed_stays_missing() -> None:
    assert torch.isnan(fill_gaps(_row(NAN, NAN, NAN)).values).all()


def test_the_window_statistics_ignore_the_filled_points() -> None:
    """The window's scale is the spread of what was observed: a gap filled by a straight line
    would otherwise shrink it."""
    observed = torch.tensor([[10.0, 14.0, 10.0, 14.0, 10.0, 14.0]], dtype=torch.float64)
    with_gaps = torch.tensor([[10.0, NAN, NAN, 14.0, 10.0, 14.0]], dtype=torch.float64)
    features = torch.zeros(1, 6, 0)
    complete = encode(
        RawWindows.without_covariates(observed[:, [0, 3, 4, 5]], features[:, :4]), ScalingParams(mode="window")
    )
    gappy = encode(
        RawWindows.without_covariates(with_gaps, features), ScalingParams(mode="window"), gaps=GapRule(mask=True)
    )
    torch.testing.assert_close(gappy.loc, complete.loc)
    torch.testing.assert_close(gappy.spread, complete.spread)
    assert gappy.inputs[0, :, -1].tolist() == [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]  # the mask, the last channel

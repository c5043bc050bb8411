"""The covariates' record (forecast/model/covariates.py): standardisation fitted on training values,
categories coded with a bucket for unseen ones, the static input's order, and `encode` applying
the same numbers the manifest stores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from forecast.model.config import InputLayout, ScalingParams
from forecast.model.covariates import UNSEEN_CATEGORY, Covariates, StaticCovariate, fit_scaled, fit_static
from forecast.model.encoding import RawWindows, encode


def _covariates() -> Covariates:
    return Covariates(
        past=[fit_scaled("load", np.array([1.0, 3.0]))],
        future=[fit_scaled("temperature", np.array([10.0, 20.0, 30.0]))],
        static=[fit_static("size", "numeric", [2.0, 4.0]), fit_static("region", "categorical", ["south", "north"])],
    )


def test_categories_are_coded_from_one_and_unseen_ones_share_the_bucket() -> None:
    region = fit_static("region", "categorical", ["south", "north", "south", 3])
    assert region.categories == ["3", "north", "south"]
    covariates = Covariates(static=[region])
    assert covariates.static_row({"region": "north"}).tolist() == [2.0]
    assert covariates.static_row({"region": 3}).tolist() == [1.0]  # 3 and "3" are one store
    assert covariates.static_row({"region": "east"}).tolist() == [UNSEEN_CATEGORY]


def test_the_static_input_is_the_codes_then_the_numbers_whatever_the_order_named() -> None:
    covariates = _covariates()
    assert covariates.static_row({"size": 7.5, "region": "south"}).tolist() == [2.0, 7.5]
    assert covariates.layout(calendar_width=4) == InputLayout(
        calendar=4, past=1, future=1, static_categories=(3,), static_numeric=1
    )


def test_a_covariate_constant_in_training_keeps_unit_scale() -> None:
    constant = fit_scaled("holiday", np.zeros(50))
    assert (constant.loc, constant.scale) == (0.0, 1.0)


def test_encode_standardises_each_covariate_with_its_training_numbers() -> None:
    covariates = _covariates()
    history = torch.arange(8, dtype=torch.float64).reshape(1, 8)  # (B, L)
    raw = RawWindows(
        history=history,
        calendar=torch.zeros(1, 8 + 3, 2),  # the window and 3 known steps
        past=torch.full((1, 8, 1), 3.0, dtype=torch.float64),
        future=torch.full((1, 8 + 3, 1), 30.0, dtype=torch.float64),
        static=torch.tensor([[3.0, 4.0]], dtype=torch.float64),  # code 3 ("south"), size 4
    )
    encoded = encode(raw, ScalingParams(mode="window"), covariates)
    temperature = covariates.future[0]
    assert encoded.inputs.shape == (1, 8, 1 + 1 + 2 + 1)
    assert encoded.known.shape == (1, 3, 2 + 1)
    torch.testing.assert_close(encoded.inputs[0, :, 1], torch.full((8,), 1.0))  # (3 - 2) / 1
    expected = (30.0 - temperature.loc) / temperature.scale
    torch.testing.assert_close(encoded.known[0, :, 2], torch.full((3,), expected, dtype=torch.float32))
    size = covariates.static[0]
    torch.testing.assert_close(
        encoded.static[0], torch.tensor([3.0, (4.0 - size.loc) / size.scale], dtype=torch.float32)
    )


def test_a_record_that_lies_about_its_covariates_is_refused() -> None:
    with pytest.raises(ValidationError, match="lists no categories"):
        StaticCovariate(name="region", kind="categorical")
    with pytest.raises(ValidationError, match="named more than once"):
        Covariates(past=[fit_scaled("x", np.ones(3))], future=[fit_scaled("x", np.ones(3))])
    with pytest.raises(ValidationError):
        Covariates.model_validate({"past": [{"name": "x", "loc": 0.0, "scale": 0.0}]})  # a zero divisor

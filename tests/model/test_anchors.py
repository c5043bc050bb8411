"""The anchors a network corrects: each reads one window, continues what it should (a line, a
level, a season), skips a short series' padding, and is the same on raw and scaled values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forecast.model.anchors import Anchor

LENGTH, HORIZON = 24, 6


def _line(slope: float = 0.5, start: float = 3.0) -> torch.Tensor:
    return (start + slope * torch.arange(LENGTH, dtype=torch.float64))[None, :]


def _theta_reference(values: np.ndarray, horizon: int) -> np.ndarray:
    """Hyndman and Billah's SES with drift, written out for one series with the same alpha grid."""
    best = None
    for alpha in (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
        level, sse = values[0], 0.0
        for value in values[1:]:
            sse += (value - level) ** 2
            level += alpha * (value - level)
        if best is None or sse < best[0]:
            best = (sse, alpha, level)
    assert best is not None
    _, alpha, level = best
    slope = np.polyfit(np.arange(len(values)), values, 1)[0]
    steps = np.arange(1, horizon + 1)
    return level + 0.5 * slope * (steps - 1 + 1 / alpha - (1 - alpha) ** len(values) / alpha)


def test_drift_continues_a_line_and_theta_follows_half_its_slope() -> None:
    line = _line()
    expected = 3.0 + 0.5 * torch.arange(LENGTH, LENGTH + HORIZON, dtype=torch.float64)
    assert torch.allclose(Anchor("drift", LENGTH, HORIZON, 1)(line)[0], expected)
    # On a line SES keeps alpha 1 (the last value); Theta adds half the slope per step (its known damping of trends)
    theta = Anchor("theta", LENGTH, HORIZON, 1)(line)[0]
    assert torch.allclose(theta, line[0, -1] + 0.25 * torch.arange(1, HORIZON + 1, dtype=torch.float64))


def test_theta_matches_the_method_written_out() -> None:
    rng = np.random.default_rng(0)
    windows = np.stack([10 + rng.normal(0, 1, LENGTH).cumsum() + 0.3 * np.arange(LENGTH) for _ in range(5)])
    got = Anchor("theta", LENGTH, HORIZON, 1)(torch.from_numpy(windows)).numpy()
    for row, window in zip(got, windows, strict=True):
        np.testing.assert_allclose(row, _theta_reference(window, HORIZON), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", ["drift", "theta"])
def test_a_season_is_taken_out_and_put_back(kind: str) -> None:
    """A quarterly pattern on a line: the seasonal drift continues both exactly; the season is
    taken out only where the window shows it."""
    time = torch.arange(LENGTH + HORIZON, dtype=torch.float64)
    pattern = torch.tensor([3.0, -1.0, -4.0, 2.0], dtype=torch.float64)[time.long() % 4]
    series = (20 + 0.5 * time + pattern)[None, :]
    forecast = Anchor(kind, LENGTH, HORIZON, 4)(series[:, :LENGTH])[0]
    if kind == "drift":
        assert torch.allclose(forecast, series[0, LENGTH:])
    deseasonalised = Anchor(kind, LENGTH, HORIZON, 1)(series[:, :LENGTH] - pattern[None, :LENGTH])[0]
    assert torch.allclose(forecast, deseasonalised + pattern[LENGTH:])
    noise = torch.from_numpy(np.random.default_rng(1).normal(0, 1, (1, LENGTH)))
    assert torch.allclose(Anchor(kind, LENGTH, HORIZON, 4)(noise), Anchor(kind, LENGTH, HORIZON, 1)(noise))


@pytest.mark.parametrize(
    ("kind", "period"),
    [("repeat", 1), ("repeat", 4), ("drift", 4), ("theta", 4), ("theta", 1), ("ar", 1), ("ari", 4), ("combined", 4)],
)
def test_anchors_are_the_same_on_raw_and_scaled_values(kind: str, period: int) -> None:
    windows = torch.from_numpy(np.random.default_rng(2).normal(50, 10, (8, LENGTH)).cumsum(axis=1))
    anchor = Anchor(kind, LENGTH, HORIZON, period)  # type: ignore[arg-type]
    loc, scale = windows[:, -1:], windows.std(dim=1, keepdim=True)
    scaled = anchor((windows - loc) / scale) * scale + loc
    assert torch.allclose(scaled, anchor(windows), rtol=1e-9, atol=1e-7)


@pytest.mark.parametrize("kind", ["drift", "theta"])
def test_the_padding_before_a_short_series_is_not_read(kind: str) -> None:
    """A series 16 points long in a 24-point window (padded with its last value) gets the anchor
    of its 16 points alone."""
    rng = np.random.default_rng(3)
    short = torch.from_numpy(30 + rng.normal(0, 1, 16).cumsum() + 0.4 * np.arange(16))[None, :]
    padded = torch.cat([short[:, -1:].expand(-1, LENGTH - 16), short], dim=1)
    observed = torch.arange(LENGTH)[None, :] >= LENGTH - 16
    alone = Anchor(kind, 16, HORIZON, 4)(short)  # type: ignore[arg-type]
    assert torch.allclose(Anchor(kind, LENGTH, HORIZON, 4)(padded, observed), alone)  # type: ignore[arg-type]


def test_a_network_without_the_mask_channel_fits_its_theta_on_the_observed_points() -> None:
    """A model trained on complete data has no mask channel; serving a short series pads it, and
    the predictor takes the Theta again from the observed points (a rise stays a rise)."""
    from forecast.model.config import NetworkConfig, ScalingParams
    from forecast.model.encoding import RawWindows
    from forecast.model.network import Forecaster
    from forecast.model.predictor import Predictor

    config = NetworkConfig(arch="gru", input_size=18, horizon=3, anchor="theta", anchor_period=1, recurrent=False)
    predictor = Predictor(Forecaster(config, 1), ScalingParams(mode="window"), torch.device("cpu"))
    rising = 100.0 + 10.0 * torch.arange(10, dtype=torch.float32)
    history = torch.cat([torch.full((8,), float("nan")), rising])[None, :].double()
    empty = torch.zeros(1, 18, 0)
    windows = RawWindows(history=history, calendar=empty, past=empty, future=empty, static=torch.zeros(1, 0))
    forecast = predictor.predict(windows).mean[0]
    alone = Anchor("theta", 10, 3, 1)(rising[None, :].double())[0].numpy()
    np.testing.assert_allclose(forecast, alone, rtol=1e-5)
    assert (np.diff(forecast) > 0).all()


def _cycle(length: int, period: float = 10.7, level: float = 10.0) -> torch.Tensor:
    """A cycle no calendar names (a sunspot-like period of 10.7 steps)."""
    time = torch.arange(length, dtype=torch.float64)
    return (level + 5 * torch.sin(2 * torch.pi * time / period))[None, :]


@pytest.mark.parametrize("kind", ["ar", "ari"])
def test_an_autoregression_continues_a_cycle_that_theta_flattens(kind: str) -> None:
    series = _cycle(60)
    window, ahead = series[:, :48], series[0, 48:]
    continued = Anchor(kind, 48, 12, 1)(window)[0]  # type: ignore[arg-type]
    flattened = Anchor("theta", 48, 12, 1)(window)[0]
    assert (continued - ahead).abs().max() < 1e-4
    assert (flattened - ahead).abs().max() > 3


def test_the_autoregression_on_the_steps_continues_a_line_and_the_one_on_the_values_holds_a_level() -> None:
    line = _line()
    expected = 3.0 + 0.5 * torch.arange(LENGTH, LENGTH + HORIZON, dtype=torch.float64)
    assert torch.allclose(Anchor("ari", LENGTH, HORIZON, 1)(line)[0], expected)
    constant = torch.full((1, LENGTH), 7.0, dtype=torch.float64)
    for kind in ("ar", "ari", "combined"):
        assert torch.allclose(Anchor(kind, LENGTH, HORIZON, 1)(constant)[0], constant[0, :HORIZON])  # type: ignore[arg-type]


def test_the_combination_is_the_mean_of_theta_and_both_autoregressions() -> None:
    windows = torch.from_numpy(np.random.default_rng(7).normal(0, 1, (6, 40)).cumsum(axis=1))
    parts = [Anchor(kind, 40, HORIZON, 4)(windows) for kind in ("theta", "ar", "ari")]  # type: ignore[arg-type]
    assert torch.allclose(Anchor("combined", 40, HORIZON, 4)(windows), torch.stack(parts).mean(dim=0))


@pytest.mark.parametrize("kind", ["ar", "ari"])
def test_an_autoregression_reads_a_short_series_alone_and_never_runs_away(kind: str) -> None:
    """A short series in a long window: the fit skips the padding. An explosive fit (a window
    that doubles each step) is held within the window's range widened by that range, not sent to
    infinity; a window too short for any order forecasts its last value."""
    rng = np.random.default_rng(8)
    short = torch.from_numpy(20 + rng.normal(0, 1, 30).cumsum())[None, :]
    padded = torch.cat([short[:, :1].expand(-1, 18), short], dim=1)
    observed = torch.arange(48)[None, :] >= 18
    alone = Anchor(kind, 30, HORIZON, 1)(short)  # type: ignore[arg-type]
    assert torch.allclose(Anchor(kind, 48, HORIZON, 1)(padded, observed), alone)  # type: ignore[arg-type]
    doubling = (2.0 ** torch.arange(LENGTH, dtype=torch.float64))[None, :]
    bounded = Anchor(kind, LENGTH, 12, 1)(doubling)[0]  # type: ignore[arg-type]
    top = 2 * doubling.max() - doubling.min()  # the top of the widened range
    assert bounded.max() <= top and bounded[-1] == top
    tiny = torch.tensor([[1.0, 2.0, 4.0]], dtype=torch.float64)
    assert torch.equal(Anchor(kind, 3, 2, 1)(tiny), torch.tensor([[4.0, 4.0]], dtype=torch.float64))  # type: ignore[arg-type]


def test_an_autoregression_is_computed_in_float64_and_returned_in_the_window_dtype() -> None:
    """The lags of a slow series are nearly collinear: in float32 the normal equations would lose
    the cycle; the anchor solves them in float64 and returns float32 for float32 windows."""
    series = _cycle(60, level=1000.0).float()
    continued = Anchor("ar", 48, 12, 1)(series[:, :48])
    assert continued.dtype == torch.float32
    assert (continued[0] - series[0, 48:]).abs().max() < 1e-2


@pytest.mark.parametrize("kind", ["ar", "ari", "combined"])
def test_a_spike_after_a_quiet_window_gives_a_finite_forecast_far_ahead(kind: str) -> None:
    """Intermittent demand: near-zero noise, then one spike. The fitted roots are explosive; the
    forecast stays finite and within the widened range at every step, however far ahead."""
    windows = np.abs(np.random.default_rng(0).normal(0, 1e-8, (8, 48)))
    windows[:, -1] = 1.0
    forecast = Anchor(kind, 48, 720, 1)(torch.from_numpy(windows))  # type: ignore[arg-type]
    assert (
        torch.isfinite(forecast).all() and forecast.abs().max() <= 1 + 30
    )  # the range (1) widened by 2 x 720 / 48 ranges


@pytest.mark.parametrize("kind", ["ar", "ari"])
def test_a_short_series_is_bounded_as_it_is_alone(kind: str) -> None:
    """The bound on an autoregression's forecast comes from the series' own points, not from the
    window it is padded into."""
    doubling = 2.0 ** torch.arange(10, dtype=torch.float64)[None, :]
    padded = torch.cat([doubling[:, :1].expand(-1, 50), doubling], dim=1)
    observed = torch.arange(60)[None, :] >= 50
    alone = Anchor(kind, 10, 12, 1)(doubling)  # type: ignore[arg-type]
    assert torch.allclose(Anchor(kind, 60, 12, 1)(padded, observed), alone)  # type: ignore[arg-type]

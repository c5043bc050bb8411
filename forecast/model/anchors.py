"""The anchors: the baseline forecast a network corrects, computed from each window alone.

- `repeat`: step h repeats the value `period` steps before it (1: the naive forecast, a season:
  the seasonal naive).
- `drift`: the naive forecast plus the window's average step (the random walk with drift).
- `theta`: the Theta method (Assimakopoulos and Nikolopoulos, 2000) in the form of Hyndman and
  Billah (2003): simple exponential smoothing, its alpha fitted to each window by its one-step
  errors, plus half the window's linear trend. The M3 winner and the M4 benchmark that carries
  trends and levels on short yearly, quarterly and monthly series, where repeating a value does
  not.
- `ar` and `ari`: an autoregression fitted to each window by least squares, on its values (`ar`,
  with a mean) or on its steps (`ari`, ARIMA(p,1,0), with a drift), the order chosen per window by
  AICc, continued step by step. Per-series cycles that no calendar names (sunspots' eleven years,
  lynx's ten) and the persistence of a level are what AutoARIMA wins yearly and quarterly data
  with; the window's own autoregression carries them (bench/collection.py, docs/benchmarks.md).

`drift`, `theta`, `ar` and `ari` read the window with its season taken out when the window covers two
seasons and its autocorrelation at the season passes M4's 90% test (as M4's Theta and Naive2 do);
the season is added back to the forecast. Seasons and trends are fitted to each window, so the
anchor is each series' own (as ES-RNN's per-series smoothing is) and any series, seen in
training or not, gets it. Every step is affine-equivariant: the anchor of a scaled window is
the scaled anchor, so the network computes it on its scaled inputs (in float32: on raw values
beyond about 1e19 the squared one-step errors would overflow).

A window's points before its first observed one (a short series' padding) are not read: the
fits start at the first observed point.
"""

from __future__ import annotations

import torch
from torch import nn

from forecast.model.config import AnchorKind, InputLayout, NetworkConfig
from forecast.model.missing import before_first_observed

# The smoothing parameters tried for each window; the one with the smallest one-step squared error wins.
_ALPHAS = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# M4's seasonality test: the autocorrelation at the season beyond 1.645 of its standard error.
_SEASONALITY_Z = 1.645
# The autoregressions' longest order, and the fewest fitted rows per coefficient an order needs. Without
# moving-average terms a few more lags than AutoARIMA's five carry the same cycles; an order is
# tried only where the window holds enough steps to estimate it.
_MAX_ORDER = 8
_ROWS_PER_COEFFICIENT = 3
# The anchors `combined` averages.
_COMBINED: tuple[AnchorKind, ...] = ("theta", "ar", "ari")


def repeat_source(input_size: int, horizon: int, period: int) -> torch.Tensor:
    """(H,) the window position step h repeats: L - m + (h mod m)."""
    steps = torch.arange(horizon)
    return input_size - period + steps % period


class Anchor(nn.Module):
    """The anchor of one network shape: (B, L) windows, with what was observed -> (B, H)."""

    def __init__(self, kind: AnchorKind, input_size: int, horizon: int, period: int) -> None:
        super().__init__()
        self.kind = kind
        self.period = period
        self.horizon = horizon
        # Not saved with the weights: the config rebuilds them.
        self.source: torch.Tensor
        self.register_buffer(
            "source", repeat_source(input_size, horizon, period if kind == "repeat" else 1), persistent=False
        )
        self.seasonal = kind != "repeat" and period > 1 and input_size >= 2 * period

    @classmethod
    def of(cls, config: NetworkConfig) -> Anchor:
        """The anchor a network of `config` forecasts from; left open, the naive forecast."""
        return cls(config.anchor or "repeat", config.input_size, config.horizon, config.anchor_period or 1)

    def of_inputs(
        self, inputs: torch.Tensor, layout: InputLayout, observed: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The anchor of a network's inputs (B, L, C): the scaled values in channel 0, and the
        observed points from the mask channel when the layout has one (else all of them)."""
        if observed is None and layout.mask:
            observed = inputs[:, :, layout.mask_channel] > 0.5
        return self(inputs[:, :, 0], observed)

    def forward(self, values: torch.Tensor, observed: torch.Tensor | None = None) -> torch.Tensor:
        """values (B, L) with gaps filled; observed (B, L) bool or None (all) -> (B, H)."""
        if self.kind == "repeat":
            return values[:, self.source]
        fitted = ~before_first_observed(observed) if observed is not None else torch.ones_like(values, dtype=torch.bool)
        season, ahead = _season(values, fitted, self.period, self.horizon) if self.seasonal else (None, None)
        adjusted = values if season is None else values - season
        forecast = _fitted_forecast(self.kind, adjusted, fitted, self.horizon)
        return forecast if ahead is None else forecast + ahead


def _fitted_forecast(kind: AnchorKind, values: torch.Tensor, fitted: torch.Tensor, horizon: int) -> torch.Tensor:
    """One fitted anchor's forecast of windows with the season already taken out."""
    if kind == "drift":
        return _drift(values, fitted, horizon)
    if kind == "theta":
        return _theta(values, fitted, horizon)
    if kind == "combined":  # the mean of three, as M4's combination benchmark: each one's errors partly cancel
        parts = [_fitted_forecast(part, values, fitted, horizon) for part in _COMBINED]
        return torch.stack(parts).mean(dim=0)
    return _autoregression(values, fitted, horizon, differenced=kind == "ari")


def _trend(values: torch.Tensor, fitted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares line over the fitted points: slope and intercept, each (B, 1)."""
    weight = fitted.to(values.dtype)
    time = torch.arange(values.shape[1], device=values.device, dtype=values.dtype).expand_as(values)
    count = weight.sum(dim=1, keepdim=True).clamp(min=1.0)
    mean_time = (weight * time).sum(dim=1, keepdim=True) / count
    mean_value = (weight * values).sum(dim=1, keepdim=True) / count
    centred = (time - mean_time) * weight
    spread = (centred * (time - mean_time)).sum(dim=1, keepdim=True)
    slope = (centred * (values - mean_value)).sum(dim=1, keepdim=True) / spread.clamp(min=1e-12)
    slope = torch.where(spread > 0, slope, torch.zeros_like(slope))
    return slope, mean_value - slope * mean_time


def _season(values: torch.Tensor, fitted: torch.Tensor, period: int, horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Additive seasonal indices of each window by classical decomposition (its values less their
    centred moving average, averaged by phase), zero for a window without two seasons of fitted
    points or without significant autocorrelation at the season: the season over the window
    (B, L) and over the horizon (B, H)."""
    length, half = values.shape[1], period // 2
    weight = fitted.to(values.dtype)
    kernel = torch.ones(2 * half + 1, dtype=values.dtype, device=values.device)
    if period % 2 == 0:  # the 2 x m moving average: half weights at both ends
        kernel[0] = kernel[-1] = 0.5
    kernel = (kernel / period)[None, None, :]
    trend = nn.functional.conv1d(values[:, None, :], kernel)[:, 0]  # (B, L - 2 half), centred on half..L-half-1
    covered = nn.functional.conv1d(weight[:, None, :], kernel)[:, 0] > 1 - 1e-6  # every point it averages fitted
    residual = (values[:, half : length - half] - trend) * covered.to(values.dtype)
    phase = torch.arange(length, device=values.device) % period
    one_hot = nn.functional.one_hot(phase[half : length - half], period).to(values.dtype)  # (L - 2 half, m)
    counts = covered.to(values.dtype) @ one_hot  # (B, m)
    index = (residual @ one_hot) / counts.clamp(min=1.0)
    index = index - index.mean(dim=1, keepdim=True)
    points = weight.sum(dim=1, keepdim=True)
    keep = (points >= 2 * period) & (counts > 0).all(dim=1, keepdim=True) & _significant(values, weight, points, period)
    index = torch.where(keep, index, torch.zeros_like(index))
    ahead = (torch.arange(horizon, device=values.device) + length) % period
    return index[:, phase], index[:, ahead]


def _significant(values: torch.Tensor, weight: torch.Tensor, points: torch.Tensor, period: int) -> torch.Tensor:
    """(B, 1) bool: M4's test, |r_m| > 1.645 sqrt((1 + 2 sum_{k<m} r_k^2) / n), on the fitted points."""
    mean = (values * weight).sum(dim=1, keepdim=True) / points.clamp(min=1.0)
    centred = (values - mean) * weight
    variance = centred.square().sum(dim=1, keepdim=True).clamp(min=1e-30)
    lags = [(centred[:, k:] * centred[:, :-k]).sum(dim=1, keepdim=True) / variance for k in range(1, period + 1)]
    correlations = torch.cat(lags, dim=1)  # (B, m)
    below = correlations[:, :-1].square().sum(dim=1, keepdim=True)
    limit = _SEASONALITY_Z * torch.sqrt((1 + 2 * below) / points.clamp(min=1.0))
    return correlations[:, -1:].abs() > limit


def _started(values: torch.Tensor, fitted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The window with its unfitted start set to the first fitted value (no error, no move), and
    the number of fitted points (B, 1)."""
    first = fitted.to(torch.int64).argmax(dim=1, keepdim=True)  # (B, 1)
    return torch.where(fitted, values, values.gather(1, first)), fitted.sum(dim=1, keepdim=True).to(values.dtype)


def _drift(values: torch.Tensor, fitted: torch.Tensor, horizon: int) -> torch.Tensor:
    started, points = _started(values, fitted)
    step = (started[:, -1:] - started[:, :1]) / (points - 1).clamp(min=1.0)  # (B, 1)
    steps = torch.arange(1, horizon + 1, device=values.device, dtype=values.dtype)
    return started[:, -1:] + step * steps


def _theta(values: torch.Tensor, fitted: torch.Tensor, horizon: int) -> torch.Tensor:
    """SES with drift: level_n + b/2 (h - 1 + 1/alpha - (1 - alpha)^n / alpha), b the slope of the
    window's least-squares line and alpha the grid's best by one-step squared error."""
    started, points = _started(values, fitted)
    alphas = torch.tensor(_ALPHAS, device=values.device, dtype=values.dtype)  # (A,)
    level = started[:, :1].expand(-1, len(_ALPHAS))  # (B, A)
    errors = torch.zeros_like(level)
    for position in range(1, started.shape[1]):
        error = started[:, position : position + 1] - level
        errors = errors + error.square()
        level = level + alphas * error
    best = errors.argmin(dim=1, keepdim=True)  # (B, 1)
    alpha, level_n = alphas[best], level.gather(1, best)
    slope, _ = _trend(values, fitted)
    steps = torch.arange(1, horizon + 1, device=values.device, dtype=values.dtype)
    damping = (1 - alpha) ** points
    return level_n + 0.5 * slope * (steps - 1 + 1 / alpha - damping / alpha)


def _autoregression(values: torch.Tensor, fitted: torch.Tensor, horizon: int, *, differenced: bool) -> torch.Tensor:
    """Each window's AR(p) with an intercept, on its values or on its steps (`_fit_autoregression`),
    continued step by step and held within the fitted points' range widened by that range (by
    the horizon's share of the series, where longer) at every step: an estimated root outside
    the unit circle (a spike at the end of a quiet window) must not throw a forecast to infinity.

    In float64: the lags of a slowly moving series are nearly collinear, and their normal
    equations lose in float32 what the fit needs."""
    started, _ = _started(values.double(), fitted)
    series, usable = (started.diff(dim=1), fitted[:, 1:] & fitted[:, :-1]) if differenced else (started, fitted)
    order = min(_MAX_ORDER, (series.shape[1] - _ROWS_PER_COEFFICIENT) // (_ROWS_PER_COEFFICIENT + 1))  # rows >= 3 terms
    if order < 1:
        return started[:, -1:].expand(-1, horizon).to(values.dtype)
    coefficients, has_order = _fit_autoregression(series, usable, order)
    if not differenced:  # no order fitted: the last value (lag 1 at one); on the steps, no step (zero) is that already
        naive = nn.functional.one_hot(torch.tensor(1), order + 1).to(coefficients)
        coefficients = torch.where(has_order[:, None], coefficients, naive)
    low, high = started.min(dim=1, keepdim=True).values, started.max(dim=1, keepdim=True).values
    span = high - low
    margin = span * (2.0 * horizon / fitted.sum(dim=1, keepdim=True).clamp(min=1)).clamp(min=1.0)
    step_low, step_high = (-span - margin, span + margin) if differenced else (low - margin, high + margin)
    recent = series[:, -order:].flip(1)  # lag 1 first
    ahead = []
    for _ in range(horizon):
        step = coefficients[:, :1] + (coefficients[:, 1:] * recent).sum(dim=1, keepdim=True)
        step = torch.minimum(torch.maximum(step, step_low), step_high)
        ahead.append(step)
        recent = torch.cat([step, recent[:, :-1]], dim=1)
    forecast = torch.cat(ahead, dim=1)
    if differenced:
        forecast = started[:, -1:] + forecast.cumsum(dim=1)
    forecast = torch.minimum(torch.maximum(forecast, low - margin), high + margin)
    # A fit no order could make finite (coefficients beyond float64) falls back to the last value.
    finite = torch.isfinite(forecast).all(dim=1, keepdim=True)
    return torch.where(finite, forecast, started[:, -1:]).to(values.dtype)


def _fit_autoregression(series: torch.Tensor, usable: torch.Tensor, order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each window's intercept and lag coefficients (B, order + 1; lag 1 first, zero beyond its
    order), and whether any order had the rows (B,); p up to the longest order its fitted points
    allow by AICc, every order fitted by least squares on the same rows (those with that longest
    order of fitted points before them, so the orders compare)."""
    # Each window's own longest order, from its fitted points, and its rows: those whose target has
    # that many fitted points before it (a short series in a long window is fitted as it is alone).
    points = usable.sum(dim=1)
    reach = ((points - _ROWS_PER_COEFFICIENT) // (_ROWS_PER_COEFFICIENT + 1)).clamp(max=order)  # (B,)
    first = usable.to(torch.int64).argmax(dim=1)
    targets = torch.arange(order, series.shape[1], device=series.device)  # each row's target position
    rows = series.unfold(1, order + 1, 1)  # (B, T, order + 1): the lags, oldest first, then the target
    weight = (targets[None, :] - first[:, None] >= reach[:, None]).double()  # (B, T)
    count = weight.sum(dim=1)
    # Centred on the rows' means, the intercept drops out of the solve and comes back from them:
    # with a ridge in proportion to each lag's own spread, the fit is the same on any scale and offset.
    means = (rows * weight[..., None]).sum(dim=1, keepdim=True) / count.clamp(min=1.0)[:, None, None]
    centred = (rows - means) * weight[..., None]
    target, lags = centred[:, :, -1], centred[:, :, :-1].flip(2)  # lag 1 first
    lag_means, target_mean = means[:, 0, :-1].flip(1), means[:, 0, -1]
    # Each order's normal equations are the leading block of the longest order's: built once.
    gram = lags.transpose(1, 2) @ lags  # (B, order, order)
    moments = (lags.transpose(1, 2) @ target[..., None])[..., 0]  # (B, order)
    total = target.square().sum(dim=1)
    best = torch.full_like(count, float("inf"))
    coefficients = torch.zeros(series.shape[0], order + 1, dtype=series.dtype, device=series.device)
    for terms in range(1, order + 1):
        block, right = gram[:, :terms, :terms], moments[:, :terms]
        ridged = block + torch.diag_embed(1e-9 * block.diagonal(dim1=1, dim2=2) + 1e-300)  # a constant window: no slope
        beta = torch.linalg.solve(ridged, right[..., None])[..., 0]
        explained = 2 * (beta * right).sum(dim=1) - (beta[:, None, :] @ block @ beta[..., None])[:, 0, 0]
        rss = (total - explained).clamp(min=1e-300)
        k = terms + 1  # with the intercept
        aicc = count * torch.log(rss / count.clamp(min=1.0)) + 2 * k + 2 * k * (k + 1) / (count - k - 1)
        aicc = torch.where(terms <= reach, aicc, torch.full_like(aicc, float("inf")))
        better = aicc < best
        best = torch.where(better, aicc, best)
        intercept = target_mean - (beta * lag_means[:, :terms]).sum(dim=1)
        fitted_terms = nn.functional.pad(torch.cat([intercept[:, None], beta], dim=1), (0, order - terms))
        coefficients = torch.where(better[:, None], fitted_terms, coefficients)
    return coefficients, torch.isfinite(best)

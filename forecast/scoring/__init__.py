"""Scoring forecasts against what happened: the M4 metrics, the naive and seasonal-naive
baselines, and the gap filling they read history through. The training job's evaluation and the
service's backtest both score through here, so their numbers agree on the same points."""

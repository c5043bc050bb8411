"""Recurrent-network forecasting: data validation, training, a versioned registry and an inference engine."""

__version__ = "0.1.0"

"""The Python client of the forecasting API: pandas in, pandas out.

    from forecast.client import Client
    with Client("http://localhost:8000", api_key=None) as client:
        frame = client.forecast(df, model="demand", horizon=24, levels=[80])

It needs only httpx and pandas (the `client` extra) and imports nothing of the server, the
training job or torch (the layering contract in pyproject.toml says so, and a test checks it).
"""

from forecast.client.errors import (
    AccessDenied,
    ForecastClientError,
    InvalidRequest,
    InvalidSeries,
    NotFound,
    RateLimited,
    RequestTooLarge,
    ServerError,
    Unavailable,
)
from forecast.client.frames import Limits
from forecast.client.http import AsyncClient, Client, RetryPolicy

__all__ = [
    "AccessDenied",
    "AsyncClient",
    "Client",
    "ForecastClientError",
    "InvalidRequest",
    "InvalidSeries",
    "Limits",
    "NotFound",
    "RateLimited",
    "RequestTooLarge",
    "RetryPolicy",
    "ServerError",
    "Unavailable",
]

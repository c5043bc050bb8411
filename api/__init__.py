"""The forecasting REST API (FastAPI): routes, schemas, error mapping and the dashboard."""

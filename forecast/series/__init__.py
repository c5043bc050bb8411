"""Time series in: loading, parsing and validation, frequencies, calendar features, windows."""

"""Settings records the registry stores and the layers above it read (the training job's)."""

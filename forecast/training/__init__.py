"""The training job: its named steps, the loop, evaluation, baselines, metrics and promotion."""

"""Training code: meta-learning, calibration of a model's coding tables, patch pools. Never imported to decode."""

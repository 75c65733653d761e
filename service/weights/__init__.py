"""Model weight files: the expected set, generated test checkpoints, download and checks."""

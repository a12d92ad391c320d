"""Model versions and the stores they are written to."""

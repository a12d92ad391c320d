"""Serving: HTTP routes over the published model."""

"""I/O for streamcl: sources of records and sinks for dead letters and predictions.

Installed under the import name ``streamcl.connectors``. Nothing here imports torch:
connectors move bytes, keys and offsets; decoding and learning live in ``streamcl``.
"""

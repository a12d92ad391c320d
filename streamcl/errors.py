"""One exception root for streamcl, with short subclasses mapped to outcomes."""

from __future__ import annotations


class StreamclError(Exception):
    """Root of every error streamcl raises on purpose."""


class SettingsError(StreamclError):
    """Settings are invalid; the message names the field. The CLI exits with code 2."""


class DecodeError(StreamclError):
    """An event could not be decoded or validated.

    Parameters
    ----------
    reason
        Short machine-readable reason, used as a metric label and in dead-letter headers
        (e.g. ``"non_finite"``, ``"bad_json"``, ``"too_large"``).
    field
        Dotted path of the offending field (``"features.nswprice"``), or ``""`` for the
        whole payload.
    detail
        Human-readable explanation.
    """

    def __init__(self, reason: str, field: str, detail: str) -> None:
        self.reason = reason
        self.field = field
        self.detail = detail
        where = f" at {field}" if field else ""
        super().__init__(f"{reason}{where}: {detail}")


class NotReadyError(StreamclError):
    """The service cannot answer yet (no model learned, source unhealthy)."""


class CheckpointError(StreamclError):
    """A checkpoint is missing, corrupt, tampered or from incompatible settings."""


class StoreError(StreamclError):
    """An object store (model versions, checkpoints) cannot be reached or refused a call."""


class StoreNotFoundError(StoreError):
    """The named object is not in the store."""


class ModelVersionError(StreamclError):
    """A model version is corrupt, truncated, tampered or from incompatible settings.

    Parameters
    ----------
    reason
        Short machine-readable reason, used as a metric label: ``"checksum"``,
        ``"incompatible"``, ``"undecodable"`` or ``"missing"``.
    detail
        Human-readable explanation.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class QueueFullError(StreamclError):
    """A bounded queue to the loop is full; the caller should retry later (HTTP 503)."""

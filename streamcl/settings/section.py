"""The base of every settings section: frozen, unknown keys rejected."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Section"]


class Section(BaseModel):
    """One section of :class:`~streamcl.settings.Settings` (frozen; an unknown key is an error)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

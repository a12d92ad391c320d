"""STAND-IN until the serving branch's shared store is merged (same interface; deleted then).

``ObjectStore``: ``put(name, data)`` (atomic), ``get(name)``, ``list(prefix)``, ``delete(name)``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Protocol

__all__ = ["DirectoryStore", "ObjectStore", "StoreError", "StoreNotFoundError", "open_store"]


class StoreError(Exception):
    """The store failed."""


class StoreNotFoundError(StoreError):
    """No object of that name."""


class ObjectStore(Protocol):
    """Named immutable blobs."""

    def put(self, name: str, data: bytes) -> None:
        """Write ``data`` under ``name`` atomically."""
        ...

    def get(self, name: str) -> bytes:
        """The bytes under ``name``."""
        ...

    def list(self, prefix: str = "") -> list[str]:
        """Names starting with ``prefix``."""
        ...

    def delete(self, name: str) -> None:
        """Remove ``name`` (no error when missing)."""
        ...


class DirectoryStore:
    """Objects as files under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, name: str, data: bytes) -> None:
        """Write to a temporary file, fsync, rename."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def get(self, name: str) -> bytes:
        """Read ``name``."""
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            raise StoreNotFoundError(name) from None
        except OSError as exc:
            raise StoreError(str(exc)) from exc

    def list(self, prefix: str = "") -> list[str]:
        """Sorted names under ``prefix``."""
        out = []
        for p in self.root.rglob("*"):
            name = p.relative_to(self.root).as_posix()
            if p.is_file() and not p.name.startswith(".") and name.startswith(prefix):
                out.append(name)
        return sorted(out)

    def delete(self, name: str) -> None:
        """Remove ``name``."""
        (self.root / name).unlink(missing_ok=True)


def open_store(url: str) -> ObjectStore:
    """``file:///path`` or a plain path."""
    return DirectoryStore(url.removeprefix("file://"))

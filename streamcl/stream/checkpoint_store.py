"""The checkpoint file format and the folder of checkpoints: atomic, checksummed, no pickle.

File layout (one file per checkpoint, ``ckpt-<seq>.streamcl``)::

    MAGIC (16 bytes) | MAC (32 bytes) | header length (8 bytes, big-endian) | header | tensors

The format (:func:`pack` / :func:`unpack`, no pickle, SHA-256 or HMAC checked before
anything is parsed) is :mod:`streamcl.models.format`, shared with the model versions.

Writes go to a temporary file that is fsynced, renamed over the final name, after which the
folder is fsynced; the newest ``keep`` checkpoints are kept. Loading walks from the newest
to the oldest and takes the first that verifies. Each checkpoint also holds the
:func:`settings_fingerprint` it was written under; one from incompatible settings is
refused (:class:`IncompatibleCheckpointError`).

What goes into a checkpoint, and when, is :mod:`streamcl.stream.checkpoint`'s part.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamcl.errors import CheckpointError
from streamcl.models.format import (
    FORMAT_VERSION,
    MAGIC,
    TUNABLE_LEARNER,
    drop_keys,
    fingerprint_diff,
    pack,
    unpack,
)

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "CheckpointInfo",
    "Checkpointer",
    "fingerprint_diff",
    "pack",
    "settings_fingerprint",
    "unpack",
]

log = logging.getLogger(__name__)

_NAME = re.compile(r"^ckpt-(\d{12})\.streamcl$")


@dataclass(frozen=True)
class CheckpointInfo:
    """What one checkpoint write produced.

    Attributes
    ----------
    path : Path
        The final file.
    size_bytes : int
        Its size, bytes.
    seconds : float
        Time to encode, write and fsync it, seconds.
    """

    path: Path
    size_bytes: int
    seconds: float


# -- settings fingerprint ----------------------------------------------------------------------
def settings_fingerprint(settings: Any) -> dict[str, Any]:
    """The settings a checkpoint depends on, as plain data (compared on restore).

    The learner section (except :data:`TUNABLE_LEARNER`), the plasticity methods and
    the source identity (a file position means nothing for another file).
    """
    learner = drop_keys(settings.learner.model_dump(mode="json"), TUNABLE_LEARNER)
    src = settings.source
    source: dict[str, Any] = {"kind": src.kind, "target": src.target, "id_column": src.id_column}
    if src.kind == "file":
        source["path"] = src.path
    kafka = getattr(settings, "kafka", None)
    if src.kind == "kafka" and kafka is not None:
        source["topics"] = list(getattr(kafka, "topics", ()))
    return {
        "format": FORMAT_VERSION,
        "learner": learner,
        "plasticity": list(settings.plasticity.methods),
        "source": source,
    }


# -- the folder ----------------------------------------------------------------------------------
class Checkpointer:
    """Atomic writes, retention and verified loading of checkpoints in one folder.

    Parameters
    ----------
    directory
        Folder of the checkpoints (created if missing).
    fingerprint
        :func:`settings_fingerprint` of the current settings; stored in each checkpoint
        and compared on load.
    keep
        Newest checkpoints kept; older ones are deleted after each write.
    key
        Signing key: HMAC-SHA256 instead of SHA-256, so a file rewritten by someone
        without the key fails verification.

    Raises
    ------
    OSError
        The folder cannot be created.
    """

    def __init__(
        self,
        directory: str | Path,
        fingerprint: Mapping[str, Any],
        keep: int = 3,
        key: bytes | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.fingerprint = dict(fingerprint)
        self.keep = keep
        self.key = key
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(".ckpt-*.tmp"):
            stale.unlink(missing_ok=True)  # a write torn by a crash

    def paths(self) -> list[Path]:
        """Checkpoint files, newest first."""
        found = [p for p in self.directory.iterdir() if _NAME.match(p.name)]
        return sorted(found, key=lambda p: p.name, reverse=True)

    def save(self, state: Mapping[str, Any]) -> CheckpointInfo:
        """Write ``state`` plus the fingerprint as the newest checkpoint; prune old ones.

        Raises
        ------
        CheckpointError
            ``state`` holds a value that cannot be stored without pickle.
        OSError
            The write or an fsync failed (the previous checkpoints are untouched).
        """
        started = time.perf_counter()
        data = pack({**state, "fingerprint": self.fingerprint}, self.key)
        existing = self.paths()
        seq = int(_NAME.match(existing[0].name).group(1)) + 1 if existing else 1  # type: ignore[union-attr]
        final = self.directory / f"ckpt-{seq:012d}.streamcl"
        tmp = self.directory / f".ckpt-{seq:012d}.{os.getpid()}.tmp"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(self.directory)
        for old in self.paths()[self.keep :]:
            old.unlink(missing_ok=True)
        return CheckpointInfo(final, len(data), time.perf_counter() - started)

    def load(self, path: Path) -> dict[str, Any]:
        """Read and verify one checkpoint, and check its fingerprint.

        Raises
        ------
        CheckpointError
            Corrupt or tampered (checksum), or written under incompatible settings
            (``incompatible`` in the message, naming each differing setting).
        """
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CheckpointError(f"cannot read {path}: {exc}") from None
        state = unpack(data, self.key)
        diff = fingerprint_diff(state.get("fingerprint") or {}, self.fingerprint)
        if diff:
            raise IncompatibleCheckpointError(
                f"checkpoint {path} is incompatible with the current settings ("
                + "; ".join(diff)
                + "). Restore those settings, or point checkpoint.dir at an empty folder "
                "to start a fresh model."
            )
        return state

    def load_latest(self) -> tuple[dict[str, Any], Path] | None:
        """The newest checkpoint that verifies, falling back past corrupt ones.

        Returns
        -------
        tuple[dict, Path] or None
            The state and its file; None when the folder holds no checkpoint.

        Raises
        ------
        CheckpointError
            The newest verifying checkpoint is from incompatible settings, or every
            checkpoint in the folder fails verification.
        """
        paths = self.paths()
        problems: list[str] = []
        for path in paths:
            try:
                return self.load(path), path
            except IncompatibleCheckpointError:
                raise
            except CheckpointError as exc:
                log.error("checkpoint %s is unusable, trying the previous one: %s", path, exc)
                problems.append(f"{path.name}: {exc}")
        if paths:
            raise CheckpointError(
                f"no usable checkpoint in {self.directory} ({'; '.join(problems)}); move the "
                "files away to start a fresh model"
            )
        return None


class IncompatibleCheckpointError(CheckpointError):
    """The checkpoint was written under settings that change the state's meaning."""


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

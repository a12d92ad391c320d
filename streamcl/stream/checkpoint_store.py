"""The checkpoint file format and the folder of checkpoints: atomic, checksummed, no pickle.

File layout (one file per checkpoint, ``ckpt-<seq>.streamcl``)::

    MAGIC (16 bytes) | MAC (32 bytes) | header length (8 bytes, big-endian) | header | tensors

``header`` is UTF-8 JSON holding all plain data; every tensor or numpy array in the state
is replaced there by a reference (``{"__tensor__": "t3"}``) into ``tensors``, a
``torch.save`` of a flat ``dict[str, Tensor]`` loaded back with ``weights_only=True``.
``MAC`` is SHA-256 (or HMAC-SHA256 when a signing key is configured) over everything after
it, so a torn, truncated or tampered file fails verification before anything is parsed, and
loading never unpickles an object: a checkpoint cannot run code.

Writes go to a temporary file that is fsynced, renamed over the final name, after which the
folder is fsynced; the newest ``keep`` checkpoints are kept. Loading walks from the newest
to the oldest and takes the first that verifies. Each checkpoint also holds the
:func:`settings_fingerprint` it was written under; one from incompatible settings is
refused (:class:`IncompatibleCheckpointError`).

What goes into a checkpoint, and when, is :mod:`streamcl.stream.checkpoint`'s part.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamcl.errors import CheckpointError

__all__ = [
    "FORMAT_VERSION",
    "CheckpointInfo",
    "Checkpointer",
    "pack",
    "settings_fingerprint",
    "unpack",
]

log = logging.getLogger(__name__)

MAGIC = b"STREAMCL-CKPT\x00v1"
FORMAT_VERSION = 1
_MAC_LEN = 32
_NAME = re.compile(r"^ckpt-(\d{12})\.streamcl$")
_MARKERS = ("__tensor__", "__ndarray__", "__items__", "__tuple__")
#: numpy dtype kinds stored as tensors: bool, signed and unsigned int, float.
_ARRAY_KINDS = "biuf"


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


# -- encoding ----------------------------------------------------------------------------------
def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Plain JSON-able copy of ``obj`` with tensors and arrays moved into ``tensors``."""
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj.detach().cpu().clone()
        return {"__tensor__": name}
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _ARRAY_KINDS:
            raise CheckpointError(f"cannot checkpoint a numpy array of dtype {obj.dtype}")
        name = f"t{len(tensors)}"
        tensors[name] = torch.from_numpy(np.ascontiguousarray(obj).copy())
        return {"__ndarray__": name}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) for k in obj) and not any(m in obj for m in _MARKERS):
            return {k: _encode(v, tensors) for k, v in obj.items()}
        return {"__items__": [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    raise CheckpointError(f"cannot checkpoint a value of type {type(obj).__name__}")


def _decode(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if len(obj) == 1:
        ((key, value),) = obj.items()
        if key == "__tensor__":
            return tensors[value]
        if key == "__ndarray__":
            return tensors[value].numpy()
        if key == "__tuple__":
            return tuple(_decode(v, tensors) for v in value)
        if key == "__items__":
            return {_hashable(_decode(k, tensors)): _decode(v, tensors) for k, v in value}
    return {k: _decode(v, tensors) for k, v in obj.items()}


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def _mac(payload: bytes, key: bytes | None) -> bytes:
    if key:
        return hmac.new(key, payload, hashlib.sha256).digest()
    return hashlib.sha256(payload).digest()


def pack(state: Mapping[str, Any], key: bytes | None = None) -> bytes:
    """Encode ``state`` (nested dicts/lists/tuples of plain data, tensors, numpy arrays).

    Raises
    ------
    CheckpointError
        A value is of a type that cannot be stored without pickle.
    """
    tensors: dict[str, torch.Tensor] = {}
    header = json.dumps(_encode(state, tensors), separators=(",", ":")).encode("utf-8")
    blob = io.BytesIO()
    torch.save(tensors, blob)
    payload = len(header).to_bytes(8, "big") + header + blob.getvalue()
    return MAGIC + _mac(payload, key) + payload


def unpack(data: bytes, key: bytes | None = None) -> dict[str, Any]:
    """Verify and decode what :func:`pack` wrote.

    Raises
    ------
    CheckpointError
        Wrong magic, checksum mismatch (torn, truncated or tampered file), or a payload
        that does not decode (including anything that would need unpickling).
    """
    if not data.startswith(MAGIC):
        raise CheckpointError("not a streamcl checkpoint (bad magic)")
    mac = data[len(MAGIC) : len(MAGIC) + _MAC_LEN]
    payload = data[len(MAGIC) + _MAC_LEN :]
    if len(mac) != _MAC_LEN or not hmac.compare_digest(mac, _mac(payload, key)):
        raise CheckpointError("checksum mismatch: the checkpoint is truncated, corrupt or tampered")
    n = int.from_bytes(payload[:8], "big")
    try:
        header = json.loads(payload[8 : 8 + n].decode("utf-8"))
        tensors = torch.load(io.BytesIO(payload[8 + n :]), weights_only=True, map_location="cpu")
    except Exception as exc:  # verified but undecodable: refuse, never unpickle
        raise CheckpointError(f"checkpoint payload does not decode: {exc}") from None
    if not isinstance(tensors, dict) or not all(
        isinstance(t, torch.Tensor) for t in tensors.values()
    ):
        raise CheckpointError("checkpoint tensor section is not a flat dict of tensors")
    state = _decode(header, tensors)
    if not isinstance(state, dict):
        raise CheckpointError("checkpoint header is not a mapping")
    return state


# -- settings fingerprint ----------------------------------------------------------------------
#: Learner settings (dotted below ``learner``) that may change between runs without
#: invalidating a checkpoint: step sizes, serving and drift-reaction knobs.
TUNABLE_LEARNER = frozenset(
    {
        "lr",
        "batch_size",
        "seed",
        "hedge_eta",
        "hedge_decay",
        "memory.snapshot_every",
        "drift.actions",
        "drift.input_actions",
        "drift.lr_boost",
        "drift.lr_restart_steps",
        "drift.log_size",
        "max_live_models",
        "template",
        "standby",
    }
)


def _drop(tree: dict[str, Any], dotted: frozenset[str], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if name in dotted:
            continue
        out[key] = _drop(value, dotted, f"{name}.") if isinstance(value, dict) else value
    return out


def settings_fingerprint(settings: Any) -> dict[str, Any]:
    """The settings a checkpoint depends on, as plain data (compared on restore).

    The learner section (except :data:`TUNABLE_LEARNER`), the plasticity methods and
    the source identity (a file position means nothing for another file).
    """
    learner = _drop(settings.learner.model_dump(mode="json"), TUNABLE_LEARNER)
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


def fingerprint_diff(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Dotted names of the fingerprint entries that differ, e.g. ``["learner.hidden"]``."""
    out: list[str] = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += [f"{key}.{k}" for k in fingerprint_diff(a, b)]
        elif _plain(a) != _plain(b):
            out.append(f"{key}: checkpoint {_plain(a)!r}, settings {_plain(b)!r}")
    return out


def _plain(x: Any) -> Any:
    return json.loads(json.dumps(x, default=list)) if x is not None else None


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

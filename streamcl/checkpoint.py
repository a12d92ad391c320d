"""Checkpoints: learner state plus source positions, written atomically, loaded without pickle.

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
to the oldest and takes the first that verifies.
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
from typing import Any, Protocol

import numpy as np
import torch

from streamcl.errors import CheckpointError

__all__ = [
    "FORMAT_VERSION",
    "CheckpointInfo",
    "CheckpointManager",
    "Checkpointer",
    "LogRegressedError",
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


# -- the loop's state ------------------------------------------------------------------------
class Stateful(Protocol):
    """Anything checkpointed: plain data, tensors and numpy arrays out, the same back in."""

    def state_dict(self) -> dict[str, Any]:
        """The object's state."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the object's state with ``state``."""
        ...


class LogRegressedError(CheckpointError):
    """The source's log ends before a checkpointed offset (e.g. a broker lost its data)."""


class CheckpointManager:
    """Triggers, writes and restores checkpoints of a :class:`~streamcl.prequential.StreamLoop`.

    Every method but :meth:`restore` runs on the loop thread (or after it stopped), the
    learner's only writer, so a checkpoint is a consistent cut: the state after the last
    handled micro-batch and the source position just after it.

    Parameters
    ----------
    checkpointer
        The folder.
    loop
        The stream loop whose learner, score, de-duplication window and ledger are saved.
    every_events
        Checkpoint after this many records handled (learned or rejected) since the last.
    every_seconds
        ... or after this long, seconds, whichever comes first (only if something changed).
    on_regressed_log
        ``"fail"`` or ``"reset_to_earliest"`` (see :meth:`check_log`).
    extra
        More named state (e.g. ``{"labels": pending_store}``).
    """

    def __init__(
        self,
        checkpointer: Checkpointer,
        loop: Any,
        every_events: int = 10_000,
        every_seconds: float = 60.0,
        on_regressed_log: str = "fail",
        extra: Mapping[str, Stateful] | None = None,
    ) -> None:
        self.checkpointer = checkpointer
        self.loop = loop
        self.every_events = every_events
        self.every_seconds = every_seconds
        self.on_regressed_log = on_regressed_log
        self.extra = dict(extra or {})
        self.last: CheckpointInfo | None = None
        self.restored: dict[str, Any] | None = None
        self._pending_check: dict[str, int] | None = None
        self._last_check = 0.0
        self._mark()

    def _handled(self) -> int:
        return int(self.loop.events_handled + self.loop.rejected)

    def _mark(self) -> None:
        self._since_handled = self._handled()
        self._since_time = time.monotonic()

    def components(self) -> dict[str, Stateful]:
        """Named state saved in every checkpoint."""
        loop = self.loop
        learner = loop.learner
        return {
            "learner": learner if hasattr(learner, "load_state_dict") else _LegacyLearner(learner),
            "score": loop.score,
            "loop": _LoopCounters(loop),
            "dedup": loop.dedup,
            "ledger": loop.ledger,
            **({"labels": loop.labels.store} if getattr(loop, "labels", None) else {}),
            **self.extra,
        }

    def due(self) -> bool:
        """True when ``every_events`` records or ``every_seconds`` passed since the last one."""
        n = self._handled() - self._since_handled
        if n >= self.every_events:
            return True
        return n > 0 and time.monotonic() - self._since_time >= self.every_seconds

    def after_step(self) -> None:
        """Checkpoint if :meth:`due`; called by the loop between micro-batches."""
        if self.due():
            self.checkpoint("periodic")

    def checkpoint(self, reason: str = "periodic") -> CheckpointInfo | None:
        """Write a checkpoint now, then commit the source to its position.

        Dead letters are flushed first, so a record is never both skipped (its offset
        checkpointed) and missing from the dead-letter topic. A failed write is logged and
        counted and the loop goes on; the next trigger tries again.

        Returns
        -------
        CheckpointInfo or None
            None when the write failed.
        """
        loop, metrics = self.loop, self.loop.metrics
        source = loop.source
        try:
            loop.dead_letters.flush()
            position = dict(source.position()) if source is not None else {}
            state = {
                "created": time.time(),
                "reason": reason,
                "position": position,
                "state": {name: c.state_dict() for name, c in self.components().items()},
            }
            info = self.checkpointer.save(state)
        except Exception:
            log.exception("checkpoint (%s) failed; the previous one stays the newest", reason)
            metrics.checkpoint_failures.inc()
            return None
        self.last = info
        self._mark()
        metrics.checkpoints.inc()
        metrics.checkpoint_duration.observe(info.seconds)
        metrics.checkpoint_size.set(info.size_bytes)
        log.info(
            "checkpoint %s (%s): %d bytes in %.3f s at %s",
            info.path.name,
            reason,
            info.size_bytes,
            info.seconds,
            position,
        )
        if source is not None:
            try:
                source.commit(position)  # progress report only, after the state is durable
            except Exception:
                log.exception("committing %s after checkpoint failed", position)
        return info

    def restore(self) -> dict[str, Any] | None:
        """Load the newest good checkpoint into the loop and seek the source to its position.

        Returns
        -------
        dict or None
            ``path``, ``position``, ``learned`` and ``created`` of the checkpoint restored,
            None when the folder is empty.

        Raises
        ------
        CheckpointError
            Every checkpoint is corrupt, the newest good one is from incompatible settings,
            or (policy ``fail``) the log ends before its position.
        """
        loaded = self.checkpointer.load_latest()
        if loaded is None:
            return None
        state, path = loaded
        saved = state.get("state", {})
        for name, component in self.components().items():
            if name in saved:
                component.load_state_dict(saved[name])
            else:
                log.warning("checkpoint %s has no %r state; keeping it fresh", path.name, name)
        self.loop.snapshot = self.loop.learner.snapshot()
        position = {str(k): int(v) for k, v in state.get("position", {}).items()}
        source = self.loop.source
        if source is not None and position:
            source.seek(position)
            self._pending_check = position
            self.check_log()  # may stay pending (Kafka: until the first fetch)
        self._mark()
        self.restored = {
            "path": str(path),
            "position": position,
            "learned": self.loop.ledger.count,
            "created": state.get("created"),
        }
        log.info(
            "restored %s: position %s, %d events learned", path, position, self.loop.ledger.count
        )
        return self.restored

    def check_log(self) -> bool:
        """Compare the checkpointed position with the end of the source's log; apply the policy.

        The end is :func:`log_end` (Kafka: the high-water mark per partition, known after
        the first fetch; a file: where the seek stopped). Partitions whose end is not known
        yet stay pending, and :meth:`before_step` checks them again.

        Returns
        -------
        bool
            True when every checkpointed partition has been checked.

        Raises
        ------
        LogRegressedError
            Policy ``fail`` and the log ends before a checkpointed offset.
        """
        position, source = self._pending_check, self.loop.source
        if position is None or source is None:
            return True
        try:
            ends = log_end(source)
        except Exception as exc:
            log.warning("cannot read the end of the log yet: %s", exc)
            return False
        self._pending_check = {k: v for k, v in position.items() if k not in ends} or None
        self._apply_policy(position, ends)
        return self._pending_check is None

    def _apply_policy(self, position: Mapping[str, int], ends: Mapping[str, int]) -> None:
        source = self.loop.source
        behind = {k: (v, ends[k]) for k, v in position.items() if k in ends and ends[k] < v}
        if not behind or source is None:
            return
        detail = ", ".join(f"{k} ends at {e} < checkpointed {v}" for k, (v, e) in behind.items())
        self.loop.metrics.log_regressions.inc()
        if self.on_regressed_log == "reset_to_earliest":
            log.error("log regressed (%s); policy reset_to_earliest: re-reading from 0", detail)
            source.seek({k: 0 for k in behind})
            return
        message = (
            f"log regressed: {detail}. The broker lost data the model already learned; "
            "refusing to consume (checkpoint.on_regressed_log=fail). Set it to "
            "reset_to_earliest to re-read what the log holds."
        )
        self.loop.hold = message
        log.error(message)
        raise LogRegressedError(message)

    def before_step(self) -> None:
        """Check the log's end (the loop calls this before each step; cheap).

        Pending checkpointed partitions are checked as their ends become known; then, at
        most once a second, the current position is checked too, so a broker that loses
        its data mid-stream is noticed instead of silently skipping the recreated log.
        """
        try:
            if self._pending_check is not None:
                self.check_log()
            elif self.loop.hold is None and time.monotonic() - self._last_check >= 1.0:
                self._last_check = time.monotonic()
                source = self.loop.source
                if source is not None and _has_highwater(source):
                    self._apply_policy(dict(source.position()), log_end(source))
        except LogRegressedError:
            self._pending_check = None  # the hold stays: not ready, with the reason


def _has_highwater(source: Any) -> bool:
    return hasattr(source, "end_position") or hasattr(source, "_consumer")


def log_end(source: Any) -> dict[str, int]:
    """Where the log ends, per partition key, for the partitions where that is known.

    ``source.end_position()`` when the source has one; for a Kafka source, the consumer's
    high-water marks (known after a fetch; ``end_offsets()`` under-reports on tansu);
    otherwise the source's position (a file source after a seek that ran out of rows).
    """
    end_position = getattr(source, "end_position", None)
    if end_position is not None:
        return {str(k): int(v) for k, v in end_position().items()}
    consumer = getattr(source, "_consumer", None)
    if hasattr(source, "_consumer"):
        out: dict[str, int] = {}
        if consumer is not None:
            for tp in consumer.assignment():
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    out[f"{tp.topic}:{tp.partition}"] = int(highwater)
        return out
    return {str(k): int(v) for k, v in source.position().items()}


class _LegacyLearner:
    """state_dict for a learner without one: featurizer, classes, network and optimiser."""

    def __init__(self, learner: Any) -> None:
        self.learner = learner

    def state_dict(self) -> dict[str, Any]:
        lr = self.learner
        return {
            "featurizer": lr.featurizer.state_dict(),
            "classes": list(lr.classes),
            "version": lr.version,
            "events_learned": lr.events_learned,
            "model": None if lr.model is None else dict(lr.model.state_dict()),
            "optimizer": None if lr.optimizer is None else lr.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from streamcl.network import MLP

        lr = self.learner
        lr._reset()
        lr.featurizer.load_state_dict(state["featurizer"])
        lr.classes = list(state["classes"])
        lr.class_index = {c: i for i, c in enumerate(lr.classes)}
        lr.version, lr.events_learned = int(state["version"]), int(state["events_learned"])
        weights = state["model"]
        if weights is not None:
            n_in = weights["hidden_layers.0.weight"].shape[1]
            n_out = weights["head.weight"].shape[0]
            lr.model = MLP(n_in, lr.settings.hidden, n_out, seed=lr.settings.seed)
            lr.model.load_state_dict(weights)
            lr.optimizer = lr._make_optimizer()
            lr.optimizer.load_state_dict(state["optimizer"])


class _LoopCounters:
    """state_dict of the loop's running counters."""

    def __init__(self, loop: Any) -> None:
        self.loop = loop

    def state_dict(self) -> dict[str, Any]:
        return {"events_handled": self.loop.events_handled, "rejected": self.loop.rejected}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loop.events_handled = int(state["events_handled"])
        self.loop.rejected = int(state["rejected"])

"""Checkpoints: learner state plus source positions, written atomically, loaded without pickle.

A checkpoint is a consistent cut taken on the loop thread between micro-batches: the
``state_dict()`` of every :class:`Stateful` component (learner, score, loop counters,
de-duplication window, ledger, pending labels) and the source position just after the last
handled record. :class:`CheckpointManager` writes one every ``every_events`` records or
``every_seconds``, whichever comes first: it flushes the dead letters, saves the file, and
only then commits the source to the saved position (a progress report). On start it loads
the newest checkpoint that verifies into each component, seeks the source to its position
and compares that position, and later the current one, with the end of the source's log
(``on_regressed_log``: fail, or re-read from offset 0).

The file format, atomic writes, retention, verification and the settings fingerprint live
in :mod:`streamcl.stream.checkpoint_store`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

from streamcl.errors import CheckpointError
from streamcl.stream.checkpoint_store import Checkpointer, CheckpointInfo

__all__ = ["CheckpointManager", "LogRegressedError"]

log = logging.getLogger(__name__)


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
    """Triggers, writes and restores checkpoints of a :class:`~.prequential.StreamLoop`.

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
        self._saved: dict[str, Any] = {}  # the last restored checkpoint's component states
        self._pending_check: dict[str, int] | None = None
        self._last_check = 0.0
        self._mark()
        if hasattr(loop.source, "on_recreated"):
            loop.source.on_recreated = self.recreated

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

    def add(self, name: str, component: Stateful) -> bool:
        """Save ``component`` in every checkpoint from now on, under ``name``.

        For parts built after the restore (the model publisher): if the checkpoint restored
        last holds state under ``name``, it is loaded into ``component`` at once; later
        restores (a standby's takeover) load it with the rest.

        Returns
        -------
        bool
            True when a restored state was loaded into ``component``.
        """
        self.extra[name] = component
        if name not in self._saved:
            return False
        component.load_state_dict(self._saved[name])
        return True

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
                "log_ids": dict(getattr(source, "log_ids", {})),
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
        saved = self._saved = state.get("state", {})
        for name, component in self.components().items():
            if name in saved:
                component.load_state_dict(saved[name])
            else:
                log.warning("checkpoint %s has no %r state; keeping it fresh", path.name, name)
        self.loop.snapshot = self.loop.learner.snapshot()
        position = {str(k): int(v) for k, v in state.get("position", {}).items()}
        source = self.loop.source
        if hasattr(source, "log_ids") and isinstance(state.get("log_ids"), dict):
            source.log_ids = {str(k): str(v) for k, v in state["log_ids"].items()}
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

    def recreated(self, keys: list[str]) -> bool:
        """Apply the regressed-log policy to partitions of recreated topics (new topic id).

        The offsets saved for them refer to a log that no longer exists, even when the new
        one is longer. Returns whether the source may go on reading.
        """
        self.loop.metrics.log_regressions.inc()
        if self.on_regressed_log == "reset_to_earliest":
            log.error("topic recreated (%s); policy reset_to_earliest: re-reading from 0", keys)
            self.loop.source.seek(dict.fromkeys(keys, 0))
            return True
        self.loop.hold = (
            f"log regressed: topic recreated (new topic id) under {keys}; refusing to consume "
            "(checkpoint.on_regressed_log=fail). Set it to reset_to_earliest to re-read it."
        )
        log.error(self.loop.hold)
        return False

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
        from streamcl.learning.network import MLP

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

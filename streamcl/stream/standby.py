"""Hot standby for the single global model (``learner.partitioning: none``, ``learner.standby``).

:class:`StandbyRunner` runs the stream loop only while this instance holds the learner lock
(:class:`~streamcl.connectors.kafka_lock.KafkaLock`). Waiting, it is ready as a standby and
reads nothing. When it gets the lock it restores the newest checkpoint (written by the
previous active) into the loop, seeks the source to its offsets and learns; before every
step and every checkpoint it checks the lock's lease, and the moment the lease lapses it
stops learning, publishing and checkpointing. If it gets the lock again it restores again:
whatever it learned after its last checkpoint may have been learned by another active since.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from streamcl.stream.prequential import StreamLoop

__all__ = ["StandbyRunner"]

log = logging.getLogger(__name__)


class StandbyRunner:
    """Runs ``loop`` while ``lock.held``; restores ``checkpoints`` at every takeover.

    Parameters
    ----------
    loop
        The stream loop (its source consumes with ``assign()``, outside any group).
    lock
        Anything with a ``held`` property and ``acquired_at`` (monotonic seconds).
    checkpoints
        The :class:`~streamcl.stream.checkpoint.CheckpointManager` (shared folder).

    Attributes
    ----------
    active : bool
        True while learning.
    takeover_s : float or None
        Seconds from getting the lock to the first step after the restore (last takeover).
    """

    def __init__(self, loop: StreamLoop, lock: Any, checkpoints: Any) -> None:
        self.loop = loop
        self.lock = lock
        self.checkpoints = checkpoints
        self._active = False
        self.takeover_s: float | None = None
        if loop.source is not None:
            loop.source = _FencedSource(loop.source, lock)  # type: ignore[assignment]

    @property
    def active(self) -> bool:
        """True while learning: taken over and the lock's lease still valid."""
        return self._active and bool(self.lock.held)

    def _take_over(self) -> None:
        started = self.lock.acquired_at or time.monotonic()
        if self.checkpoints is not None:
            self.checkpoints.restore()
        self.loop.hold = None
        self._active = True
        self.takeover_s = time.monotonic() - started
        self.loop.metrics.standby_active.set(1)
        self.loop.metrics.takeovers.inc()
        log.warning("took over as the active learner in %.2f s", self.takeover_s)

    def _stand_down(self) -> None:
        self._active = False
        self.loop.hold = "standby: not holding the learner lock"
        disconnect = getattr(self.loop.source, "disconnect", None)
        if disconnect is not None:
            disconnect()  # stale positions and high-water marks go; a takeover reconnects
        self.loop.metrics.standby_active.set(0)
        log.warning("lost the learner lock: stopped learning")

    def _hand_off(self) -> None:
        """A clean revocation: checkpoint everything learned, stop, let the lock go.

        Only while the lease is fresh: a zombie (paused past its session, then revoked on
        its rejoin) has a stale model, and its checkpoint would be the newest file.
        """
        if self.checkpoints is not None and getattr(self.lock, "lease_fresh", True):
            self.checkpoints.checkpoint("handoff")
        self._stand_down()

    def run(self, stop: threading.Event, idle_sleep_s: float = 0.05) -> None:
        """Wait for the lock, take over, learn while it is held; until ``stop`` is set."""
        self.loop.hold = "standby: not holding the learner lock"
        while not stop.is_set():
            self.loop.heartbeat = time.monotonic()
            if getattr(self.lock, "releasing", False):
                if self._active:
                    self._hand_off()
                self.lock.released()
                stop.wait(idle_sleep_s)
                continue
            held = self.lock.held
            if not held:
                if self._active:
                    self._stand_down()
                stop.wait(idle_sleep_s)
                continue
            try:
                if not self._active:
                    self._take_over()
                handled = self.loop.step()
                if self.loop.after_step is not None and self.lock.held:
                    self.loop.after_step()  # the checkpoint is fenced by the lease too
                if handled == 0:
                    stop.wait(idle_sleep_s)
            except Exception:
                log.exception("stream loop step failed; continuing")
                stop.wait(1.0)


class _FencedSource:
    """A source whose reads come back empty unless the lock is held *after* the read.

    A process paused inside ``poll()`` past its session wakes up with records in hand; the
    check after the read drops them before they are learned or their predictions published,
    and seeks each partition back to its first dropped record. Without the seek the
    position would run ahead of the model: the lease can come back (a rebalance that
    leaves the lock here), or a hand-off checkpoint can follow, and the dropped records
    would never be learned.
    """

    def __init__(self, source: Any, lock: Any) -> None:
        self._source = source
        self._lock = lock

    def read(self, max_records: int, timeout_s: float) -> list[Any]:
        records: list[Any] = self._source.read(max_records, timeout_s)
        if not records or self._lock.held:
            return records
        first: dict[str, int] = {}
        for r in records:
            key = f"{r.topic}:{r.partition}"
            first[key] = min(first.get(key, r.offset), r.offset)
        self._source.seek(first)
        log.warning("dropped %d records read while not holding the lock", len(records))
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)

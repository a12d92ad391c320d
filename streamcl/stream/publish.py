"""The learner's side of model versions: publish, gate, promote, announce.

Runs on the loop thread between learning steps (:meth:`Publisher.after_step`), so the
snapshot it writes is the one the loop just published and no lock is needed. Every
``publish_every_events`` events or ``publish_every_seconds`` seconds (whichever first) a
new snapshot becomes a candidate version: its artifact is written to the store, the
:class:`~streamcl.stream.gate.ShadowGate` scores it against the served version on the next
labelled events (fed by :meth:`Publisher.observe` before they are learned, and by
:meth:`Publisher.observe_joined` for labels that join their events later), and it is then
promoted (pointer written, announcement sent) or held (listed with its reason). While the
learner has nothing new, it still confirms the pointer every interval (a heartbeat the
replicas read). A store that cannot be reached is logged and counted; the loop goes on and
tries again at the next interval.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from streamcl.errors import ModelVersionError, StoreError
from streamcl.events import Event, Label
from streamcl.metrics import Metrics
from streamcl.models.announce import Announcer
from streamcl.models.registry import ModelRegistry
from streamcl.models.version import encode_version
from streamcl.settings import ModelSettings
from streamcl.stream.gate import Decision, ShadowGate
from streamcl.stream.prequential import StreamLoop

if TYPE_CHECKING:
    from streamcl.stream.labels import LabelJoin

__all__ = ["Publisher"]

log = logging.getLogger(__name__)

#: A candidate still unscored after this many publication intervals is decided on what
#: was scored (e.g. when labels are rare, or arrive later than ``models.gate_pending``
#: unlabelled events).
GATE_TIMEOUT_INTERVALS = 10
#: Most candidates scored at once; no new candidate is made beyond it.
MAX_TRIALS = 8


class Publisher:
    """Publishes the loop's snapshots as versions of one model (see the module docstring).

    Parameters
    ----------
    registry
        The model's registry in its store.
    loop
        The stream loop whose snapshots are published.
    settings
        ``models`` settings.
    fingerprint
        :func:`~streamcl.models.version.model_fingerprint` of the settings.
    metrics
        Where publications are counted.
    announcer
        Kafka announcements of promotions, or None.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        loop: StreamLoop,
        settings: ModelSettings,
        fingerprint: dict[str, Any],
        metrics: Metrics,
        announcer: Announcer | None = None,
    ) -> None:
        self.registry, self.loop, self.settings = registry, loop, settings
        self.fingerprint, self.metrics, self.announcer = fingerprint, metrics, announcer
        self.gate = ShadowGate(settings.gate_window, settings.gate_margin, loop.learner.regression)
        # Unlabelled events (id -> event), newest last, for the gate to score on their labels;
        # kept only once a label join is attached (attach_labels): nothing else labels them.
        self._unlabelled: OrderedDict[str, Event] = OrderedDict()
        self._joined_labels = False
        self._next: int | None = None
        self._floor = 1  # the lowest number the next version may take (from the checkpoint)
        self._pending: dict[int, tuple[dict[str, Any], Any]] = {}
        self._last_at = time.monotonic()
        self._last_events = loop.events_handled
        self._last_steps = -1
        self._last_write = 0.0
        self.last_promoted: dict[str, Any] | None = None
        for outcome in ("promoted", "held", "failed"):  # the series exist from the start
            metrics.versions_published.labels(outcome)

    def restore_champion(self) -> None:
        """Load the served version from the store as the gate's champion (at start)."""
        try:
            target = self.registry.pointer()
            if target is None:
                return
            served = self.registry.load(int(target["version"]), self.fingerprint)
            self.gate.champion = served.snapshot
            self.last_promoted = target
            self.metrics.published_version.set(served.version)
        except (StoreError, ModelVersionError) as exc:
            log.warning("served model version not loaded as the gate's champion: %s", exc)

    def describe(self) -> dict[str, Any]:
        """Store, last promoted version and candidates being scored, for ``GET /v1/model``."""
        last = self.last_promoted or {}
        return {
            "store": self.registry.store.url,
            "name": self.registry.name,
            "promoted_version": last.get("version"),
            "promoted_created": last.get("created"),
            "candidates_scored": sorted(self._pending),
        }

    def state_dict(self) -> dict[str, Any]:
        """``{"next_version": int}``: the number the next version takes, saved in checkpoints."""
        return {"next_version": self._next or self._floor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint (a restart, or a standby's takeover).

        Version numbers never restart below the checkpointed one, even if the store was
        emptied (replicas refuse a lower number without a pin); the next number is read
        from the store again (another learner may have published meanwhile); candidates
        being scored are dropped and the served version is the gate's champion again.
        """
        self._floor = max(1, int(state.get("next_version", 1)))
        self._next = None
        self.gate.trials.clear()
        self._pending.clear()
        self.restore_champion()

    def observe(self, events: Sequence[Event]) -> None:
        """Feed the gate events about to be learned (call before learning them).

        Labelled events are scored at once; with a label join attached
        (:meth:`attach_labels`), the last ``models.gate_pending`` unlabelled ones are kept
        until their labels join (:meth:`observe_joined`).
        """
        self.gate.observe(events)
        keep = self.settings.gate_pending if self.gate.window and self._joined_labels else 0
        if not keep:
            return
        waiting = self._unlabelled
        for event in events:
            if event.label is None:
                waiting[event.id] = event
        while len(waiting) > keep:
            waiting.popitem(last=False)

    def observe_joined(self, ids: Sequence[str], labels: Sequence[Label]) -> None:
        """Score the gate's candidates on delayed labels ``labels`` of events ``ids``.

        Call before the learner learns them (:attr:`LabelJoin.before_learn
        <streamcl.stream.labels.LabelJoin.before_learn>`): the candidate and the served
        version predict each event from its raw features as a labelled event. Events no
        longer kept (more than ``models.gate_pending`` unlabelled events ago) are skipped.
        """
        waiting = self._unlabelled
        joined = []
        for event_id, label in zip(ids, labels, strict=True):
            event = waiting.pop(event_id, None)
            if event is not None:
                joined.append(event.model_copy(update={"label": label}))
        if joined:
            self.gate.observe(joined)

    def attach_labels(self, join: LabelJoin) -> None:
        """Have the label join feed :meth:`observe_joined` before each delayed-label step."""
        join.before_learn = self.observe_joined
        self._joined_labels = True

    def after_step(self) -> None:
        """Decide a pending candidate, or publish a new one when due, or send a heartbeat."""
        now = time.monotonic()
        interval = self.settings.publish_every_seconds
        for version, decision in self.gate.decide(GATE_TIMEOUT_INTERVALS * interval):
            self._finish(version, decision)
        if self.gate.pending >= MAX_TRIALS:
            return
        events = self.loop.events_handled - self._last_events
        timely = now - self._last_at >= interval
        if not timely and events < self.settings.publish_every_events:
            return
        # On a fixed grid, not from whenever the step ended: otherwise each interval grows
        # by the step that overran it (a version every ~1.4 s instead of 1 s under load).
        self._last_at = max(self._last_at + interval, now - interval) if timely else now
        self._last_events = self.loop.events_handled
        snapshot = self.loop.snapshot
        if snapshot.version == self._last_steps or snapshot.version == 0:
            self._heartbeat()
            return
        try:
            self._candidate(snapshot)
        except StoreError as exc:
            self.metrics.versions_published.labels("failed").inc()
            log.warning("publishing a model version failed (retrying next interval): %s", exc)

    def _candidate(self, snapshot: Any) -> None:
        if self._next is None:
            self._next = max(self.registry.next_version(), self._floor)
        version = self._next
        created = time.time()
        source = self.loop.source
        data, sha = encode_version(
            snapshot,
            version,
            self.registry.name,
            created,
            self.fingerprint,
            offsets=None if source is None else source.position(),
            metrics=self.loop.score.summary(),
        )
        self.registry.put_version(version, data)
        self._next = version + 1
        self._last_steps = snapshot.version
        entry = {
            "version": version,
            "sha256": sha,
            "created": created,
            "size_bytes": len(data),
            "offsets": None if source is None else source.position(),
            "metrics": self.loop.score.summary(),
            "steps": snapshot.version,
        }
        self._pending[version] = (entry, snapshot)
        decision = self.gate.start(version, snapshot)
        if decision is not None:
            self._finish(version, decision)

    def _finish(self, version: int, decision: Decision) -> None:
        entry, snapshot = self._pending.pop(version)
        try:
            if decision.promote:
                ptr = self.registry.promote({**entry, "gate": decision.scores})
                self.gate.champion = snapshot
                self.last_promoted = ptr
                self.metrics.versions_published.labels("promoted").inc()
                self.metrics.published_version.set(entry["version"])
                if self.announcer is not None:
                    self.announcer.announce({k: ptr[k] for k in ptr if k not in ("held",)})
            else:
                self.registry.hold(entry["version"], decision.reason, decision.scores)
                self.metrics.versions_published.labels("held").inc()
                self.metrics.versions_held.inc()
                log.warning("model version %d held: %s", entry["version"], decision.reason)
            self._last_write = time.monotonic()
        except StoreError as exc:
            self.metrics.versions_published.labels("failed").inc()
            log.warning("recording model version %d failed: %s", entry["version"], exc)

    def _heartbeat(self) -> None:
        if time.monotonic() - self._last_write < self.settings.publish_every_seconds:
            return
        try:
            self.registry.heartbeat()
            self._last_write = time.monotonic()
        except StoreError as exc:
            log.warning("model pointer heartbeat failed: %s", exc)

"""The composition root: settings -> source, decoder, learner, loop, metrics, HTTP app."""

from __future__ import annotations

import logging
import os
import resource
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import torch

from streamcl.connectors.base import Source
from streamcl.connectors.files import FileSource
from streamcl.events import EventDecoder
from streamcl.learning.learner import Learner
from streamcl.metrics import Metrics
from streamcl.models.announce import Announcer
from streamcl.models.registry import registry_from_settings
from streamcl.models.version import model_fingerprint
from streamcl.settings import Settings
from streamcl.stream.checkpoint import CheckpointManager
from streamcl.stream.checkpoint_store import Checkpointer, settings_fingerprint, unpack
from streamcl.stream.prequential import StreamLoop
from streamcl.stream.publish import Publisher

__all__ = ["Service", "build_source"]

log = logging.getLogger(__name__)

#: The loop counts as dead when its heartbeat is older than this, seconds.
HEARTBEAT_TIMEOUT_S = 30.0


def build_source(settings: Settings) -> Source | None:
    """The source named by ``settings.source.kind`` (None for HTTP-only ingestion).

    Raises
    ------
    FileNotFoundError
        When a file source's path does not exist.
    """
    s = settings.source
    if s.kind == "file":
        return FileSource(s.path, rate=s.rate, loop=s.loop)
    if s.kind == "kafka":
        if settings.kafka.consumer_client == "confluent-kafka":
            from streamcl.connectors.kafka_rdsource import RdKafkaSource

            return RdKafkaSource.from_settings(settings)  # type: ignore[no-any-return]
        from streamcl.connectors.kafka import KafkaSource

        return KafkaSource.from_settings(settings)  # type: ignore[no-any-return]
    return None


class Service:
    """One learner service: owns the loop thread; the HTTP app calls its plain methods.

    Parameters
    ----------
    settings
        Validated settings.
    source
        Overrides the source built from settings (tests inject list sources).
    """

    def __init__(self, settings: Settings, source: Source | None = None) -> None:
        torch.set_num_threads(1)  # small models: threads cost more than they give
        self.settings = settings
        self.metrics = Metrics()
        ev, src = settings.events, settings.source
        self.decoder = EventDecoder(
            max_payload_bytes=ev.max_payload_bytes,
            max_features=ev.max_features,
            max_string_length=ev.max_string_length,
            target=src.target,
            id_column=src.id_column,
            task=settings.learner.task,
        )
        self.source = source if source is not None else build_source(settings)
        loop_options: dict[str, Any] = {
            "batch_size": settings.learner.batch_size,
            "read_size": settings.source.read_batch,
            "window": settings.metrics.window,
        }
        self.keyed: Any = None
        self.standby: Any = None
        if settings.learner.partitioning == "key":
            self.loop = self._keyed_loop(settings, loop_options)
            self.learner: Any = self.loop.learner
        else:
            self.learner = Learner(settings.learner, plasticity=settings.plasticity)
            self.loop = StreamLoop(
                self.source,
                self.learner,
                self.decoder,
                self.metrics,
                dedup_window=ev.dedup_window,
                history_points=settings.metrics.history_points,
                **loop_options,
            )
        self.sinks: list[Any] = []
        if settings.source.kind == "kafka":
            from streamcl.stream.kafka_io import wire_kafka

            self.sinks = list(wire_kafka(self))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at = time.time()
        self.checkpoints = self._checkpoints(settings) if self.keyed is None else None
        # per-key models are not published through the global model's registry
        self.registry = registry_from_settings(settings) if self.keyed is None else None
        self.publisher = self._publisher(settings)
        if settings.learner.standby:
            self.standby = self._standby(settings)  # learns, checkpoints, publishes when active

    def _keyed_loop(self, settings: Settings, options: dict[str, Any]) -> StreamLoop:
        """Per-key models whose checkpoints move with their partitions (docs/scaling.md)."""
        from streamcl.stream.keyed import KeyedLearner
        from streamcl.stream.keyed_loop import KeyedCheckpoints, KeyedLoop
        from streamcl.stream.partitions import PartitionStore

        c, lr = settings.checkpoint, settings.learner
        key = c.signing_key.get_secret_value().encode() if c.signing_key is not None else None
        lease = getattr(self.source, "lease_valid", None)
        store = self._open_store(settings, c.store, Path(str(c.dir)) / "partitions")
        partitions = PartitionStore(store, settings_fingerprint(settings), self.metrics, key, lease)
        template = None
        if lr.template is not None:
            template = unpack(lr.template.read_bytes(), key)["state"]["learner"]
        keyed = KeyedLearner(settings, partitions, self.metrics, template)
        loop = KeyedLoop(
            self.source, keyed, self.decoder, self.metrics, key_field=lr.key_field, **options
        )
        if getattr(self.source, "commit_interval_s", 0):
            self.source.commit_interval_s = 0  # type: ignore[union-attr]  # commit after checkpoints
        self.keyed = KeyedCheckpoints(loop, c.every_events, c.every_seconds)
        loop.after_step = self.keyed.after_step
        m = settings.models
        if m.store is not None:  # serving per key: each key's model as its own versions
            from streamcl.models.version import model_fingerprint
            from streamcl.stream.keyed_publish import KeyPublisher

            models = self._open_store(settings, m.store, None)
            publisher = KeyPublisher(models, m.name, model_fingerprint(settings), m.keep)
            self.keyed.on_saved = publisher.publish
        return loop

    @staticmethod
    def _open_store(settings: Settings, url: str | None, folder: Path | None) -> Any:
        """The object store at ``url`` (S3 through ``models.s3_*``), else a folder store."""
        from streamcl.models.store import DirectoryStore, open_store

        m = settings.models
        if url is None:
            return DirectoryStore(folder) if folder is not None else None
        secret = m.s3_secret_access_key.get_secret_value() if m.s3_secret_access_key else None
        return open_store(url, m.s3_endpoint_url, m.s3_region, m.s3_access_key_id, secret)

    def _standby(self, settings: Settings) -> Any:
        """The learner lock and the runner that learns only while holding it."""
        from streamcl.connectors.kafka_config import consumer_config
        from streamcl.connectors.kafka_lock import KafkaLock
        from streamcl.stream.standby import StandbyRunner

        k = settings.kafka
        if self.source is not None and hasattr(self.source, "subscribe"):
            self.source.subscribe = False  # the lock is the group; events are assigned
        config = {**consumer_config(k), "group_id": f"{k.group_id}.lock"}
        config.pop("group_instance_id", None)
        config.pop("partition_assignment_strategy", None)
        self.lock = KafkaLock(k.lock_topic or f"{k.group_id}.lock", config)
        return StandbyRunner(self.loop, self.lock, self.checkpoints)

    def _publisher(self, settings: Settings) -> Publisher | None:
        """Publish model versions to the store when ``models.store`` is set; hook the loop."""
        if self.registry is None:
            return None
        m = settings.models
        announcer = None
        if m.announcements_topic is not None:
            announcer = Announcer(settings.kafka, m.announcements_topic, m.name)
        publisher = Publisher(
            self.registry, self.loop, m, model_fingerprint(settings), self.metrics, announcer
        )
        previous = self.loop.after_step

        def after_step() -> None:
            if previous is not None:
                previous()
            publisher.after_step()

        self.loop.after_step = after_step
        self.loop.before_learn = publisher.observe
        if self.loop.labels is not None:  # delayed labels (kafka.labels_topic) score it too
            publisher.attach_labels(self.loop.labels)
        # version numbers survive restarts and takeovers; a restored state loads the champion
        restored = self.checkpoints is not None and self.checkpoints.add("models", publisher)
        if not restored:
            publisher.restore_champion()
        return publisher

    def _checkpoints(self, settings: Settings) -> CheckpointManager | None:
        """Build the checkpoint manager, restore the newest good checkpoint, hook the loop.

        Raises
        ------
        CheckpointError
            Every checkpoint is corrupt, the newest is from incompatible settings, or the
            source's log regressed under policy ``fail``.
        """
        c = settings.checkpoint
        if c.dir is None:
            return None
        key = c.signing_key.get_secret_value().encode() if c.signing_key is not None else None
        folder = Checkpointer(c.dir, settings_fingerprint(settings), keep=c.keep, key=key)
        manager = CheckpointManager(
            folder, self.loop, c.every_events, c.every_seconds, c.on_regressed_log
        )
        if getattr(self.source, "commit_interval_s", 0):
            self.source.commit_interval_s = 0  # type: ignore[union-attr]  # commit after checkpoints
        manager.restore()
        self.loop.before_step = manager.before_step
        self.loop.after_step = manager.after_step
        return manager

    def checkpoint_now(self) -> Future[Any]:
        """Ask the loop to write a checkpoint; the future holds its summary (or None).

        Raises
        ------
        QueueFullError
            The loop's control queue is full.
        """
        return self.loop.call_soon(lambda: self._checkpoint("requested"))

    def _checkpoint(self, reason: str) -> dict[str, Any] | None:
        if self.checkpoints is None:
            return None
        info = self.checkpoints.checkpoint(reason)
        if info is None:
            raise OSError("checkpoint write failed; see the service log")
        return {"path": str(info.path), "size_bytes": info.size_bytes, "seconds": info.seconds}

    def reset(self) -> Future[Any]:
        """Ask the loop to reset the learner (a fresh model; counters and ids are kept).

        A checkpoint follows at once, so a crash cannot bring the old model back.

        Raises
        ------
        QueueFullError
            The loop's control queue is full.
        """

        def _reset() -> dict[str, Any]:
            learner = self.loop.learner
            getattr(learner, "reset", learner._reset)()
            self.loop.snapshot = learner.snapshot()
            return {"model_version": learner.version, "checkpoint": self._checkpoint("reset")}

        return self.loop.call_soon(_reset)

    def memory_bytes(self) -> int:
        """Resident set size of this process, bytes."""
        try:
            with open("/proc/self/statm", encoding="ascii") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def over_budget(self) -> str:
        """Why load is shed: ``""`` within ``server.memory_budget_bytes`` (or no budget)."""
        budget = self.settings.server.memory_budget_bytes
        if budget is None:
            return ""
        rss = self.memory_bytes()
        return f"memory {rss} bytes above budget {budget}" if rss > budget else ""

    def start(self) -> None:
        """Start the loop thread (idempotent; starts it again after :meth:`stop`)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            if self.standby is not None:
                self.lock.start()
            self._thread = threading.Thread(
                target=self.loop.run if self.standby is None else self.standby.run,
                args=(self._stop,),
                name="streamcl-loop",
                daemon=True,
            )
            self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the loop after its current step, then close the source."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        stuck = self._thread is not None and self._thread.is_alive()
        if stuck:
            log.error("loop did not stop in %.0f s; no final checkpoint", timeout_s)
        elif self.keyed is not None:
            self.keyed.checkpoint("shutdown")
        elif self.checkpoints is not None and (self.standby is None or self.standby.active):
            # the loop has stopped: a final checkpoint covers everything handled
            self.checkpoints.checkpoint("shutdown")
        if self.standby is not None:
            self.lock.close()  # after the final checkpoint: the standby restores it
        if self.source is not None:
            self.source.close()  # commits handled offsets after flushing the sinks
        for sink in self.sinks:
            sink.close()
        if self.publisher is not None and self.publisher.announcer is not None:
            self.publisher.announcer.close()
        log.info("stopped after %d events", self.loop.events_handled)

    def alive(self) -> tuple[bool, str]:
        """Liveness: ``(True, "")`` while the loop thread runs with a recent heartbeat."""
        if self._thread is None or not self._thread.is_alive():
            return False, "loop not running"
        if time.monotonic() - self.loop.heartbeat > HEARTBEAT_TIMEOUT_S:
            return False, "loop heartbeat stale"
        return True, ""

    def ready(self) -> tuple[bool, str]:
        """Readiness: alive, source healthy, and a batch learned (unless HTTP-only)."""
        alive, reason = self.alive()
        if not alive:
            return False, reason
        if self.standby is not None and not self.standby.active:
            return True, ""  # ready as a hot standby
        if self.loop.hold is not None:
            return False, self.loop.hold
        shed = self.over_budget()
        if shed:
            return False, shed
        if self.source is not None:
            healthy, reason = self.source.health()
            if not healthy:
                return False, f"source: {reason}"
            if self.learner.version == 0 and self.keyed is None:
                return False, "no batch learned yet"
        return True, ""

    def is_ready(self) -> bool:
        """Whether :meth:`ready` holds (for the v2 health routes and the ready gauge)."""
        return self.ready()[0]

    def describe(self) -> dict[str, Any]:
        """Model and loop summary plus the settings (secrets masked), for ``GET /v1/model``."""
        cp = self.checkpoints
        return {
            **self.loop.summary(),
            "role": None
            if self.standby is None
            else {
                "active": self.standby.active,
                "takeover_s": self.standby.takeover_s,
            },
            "source": None
            if self.source is None
            else {"position": self.source.position(), "exhausted": self.source.exhausted},
            "checkpoint": None
            if cp is None
            else {
                "restored": cp.restored,
                "last": None if cp.last is None else str(cp.last.path),
                "last_size_bytes": None if cp.last is None else cp.last.size_bytes,
            },
            "models": None if self.publisher is None else self.publisher.describe(),
            "uptime_s": time.time() - self.started_at,
            "settings": self.settings.model_dump(mode="json"),
        }

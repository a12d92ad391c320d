"""The composition root: settings -> source, decoder, learner, loop, metrics, HTTP app."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import torch

from streamcl.connectors.base import Source
from streamcl.connectors.files import FileSource
from streamcl.events import EventDecoder
from streamcl.learner import Learner
from streamcl.metrics import Metrics
from streamcl.prequential import StreamLoop
from streamcl.settings import Settings

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
        )
        self.source = source if source is not None else build_source(settings)
        self.learner = Learner(settings.learner, plasticity=settings.plasticity)
        self.loop = StreamLoop(
            self.source,
            self.learner,
            self.decoder,
            self.metrics,
            batch_size=settings.learner.batch_size,
            window=settings.metrics.window,
        )
        self.sinks: list[Any] = []
        if settings.source.kind == "kafka":
            from streamcl.kafka_io import wire_kafka

            self.sinks = list(wire_kafka(self))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at = time.time()

    def start(self) -> None:
        """Start the loop thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self.loop.run, args=(self._stop,), name="streamcl-loop", daemon=True
            )
            self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the loop after its current step, then close the source."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self.source is not None:
            self.source.close()  # commits handled offsets after flushing the sinks
        for sink in self.sinks:
            sink.close()

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
        if self.source is not None:
            healthy, reason = self.source.health()
            if not healthy:
                return False, f"source: {reason}"
            if self.learner.version == 0:
                return False, "no batch learned yet"
        return True, ""

    def describe(self) -> dict[str, Any]:
        """Model and loop summary plus the settings (secrets masked), for ``GET /v1/model``."""
        return {
            **self.loop.summary(),
            "uptime_s": time.time() - self.started_at,
            "settings": self.settings.model_dump(mode="json"),
        }

"""A stateless serving replica: load, verify and swap published model versions.

The replica follows its model's registry (:mod:`streamcl.models.registry`): every
``serve.poll_interval_s`` it reads the pin and the pointer, and when Kafka announcements are
configured it also follows the announcements topic, so a new version is loaded within one
poll. A version is read, checked against its announced SHA-256 and its own checksum, its
settings fingerprint compared with the replica's, and only then swapped in by one reference
assignment: a request never sees half a model and never waits for a load. A corrupt,
truncated or incompatible version is refused with a logged reason and a counter
(``streamcl_model_loads_total{outcome}``) and the previous one stays served.

Versions only move forward, except while a pin (or rollback) is set, and when it is lifted.
The replica is ready once a version is loaded and was confirmed current (by the learner's
pointer heartbeat, or a readable pin) less than ``serve.max_staleness_s`` ago; an
unreachable store therefore turns it not-ready in time, while it keeps answering with the
version it has, and it recovers by itself when the store is back.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from streamcl.errors import ModelVersionError, StoreError
from streamcl.metrics import Metrics
from streamcl.models.registry import ModelRegistry, Target
from streamcl.models.version import ModelVersion
from streamcl.settings import ServeSettings

__all__ = ["Replica"]

log = logging.getLogger(__name__)


class Replica:
    """Follows one model's versions and holds the one to serve in :attr:`model`.

    Parameters
    ----------
    registry
        The model's registry.
    fingerprint
        :func:`~streamcl.models.version.model_fingerprint` of the replica's settings.
    settings
        ``serve`` settings.
    metrics
        Where loads, version and age are exported.
    """

    def __init__(
        self,
        registry: ModelRegistry,
        fingerprint: dict[str, Any],
        settings: ServeSettings,
        metrics: Metrics,
    ) -> None:
        self.registry, self.fingerprint, self.settings = registry, fingerprint, settings
        self.metrics = metrics
        #: The served version (swapped by one assignment), or None before the first load.
        self.model: ModelVersion | None = None
        self.pinned = False
        self.confirmed = 0.0
        self.last_error = ""
        self._refused: dict[tuple[int, str | None], str] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # poll() from the thread and from announcements
        metrics.model_age.set_function(self.age_s)
        metrics.model_staleness.set_function(self.staleness_s)

    # -- following -----------------------------------------------------------------------------
    def poll(self) -> bool:
        """Read the pin and pointer once; load and swap a newer (or pinned) version.

        Returns
        -------
        bool
            True when a version was swapped in.
        """
        with self._lock:
            try:
                target = self.registry.target()
            except StoreError as exc:
                self._store_error(exc)
                return False
            self.last_error = ""
            if target is None:
                return False
            return self._follow(target)

    def _follow(self, target: Target) -> bool:
        current = self.model
        if current is not None and target.version == current.version:
            self.confirmed = max(self.confirmed, min(target.confirmed, time.time()))
            self.pinned = target.pinned
            self.metrics.model_pinned.set(int(self.pinned))
            return False
        backwards = current is not None and target.version < current.version
        if backwards and not (target.pinned or self.pinned):
            log.warning(
                "pointer names version %d below the served %d; not going back without a pin",
                target.version,
                current.version if current else 0,
            )
            return False
        key = (target.version, target.sha256)
        if key in self._refused:
            return False
        try:
            loaded = self.registry.load(target.version, self.fingerprint, target.sha256)
        except StoreError as exc:
            self._store_error(exc)
            return False
        except ModelVersionError as exc:
            self._refused[key] = exc.reason
            self.metrics.model_loads.labels(exc.reason).inc()
            log.error("refused model version %d: %s", target.version, exc)
            return False
        self.model = loaded  # the swap: one reference assignment
        self.pinned = target.pinned
        self.confirmed = max(loaded.created, min(target.confirmed, time.time()))
        self.metrics.model_loads.labels("loaded").inc()
        self.metrics.model_version.set(loaded.version)
        self.metrics.model_pinned.set(int(self.pinned))
        log.info("serving model version %d%s", loaded.version, " (pinned)" if self.pinned else "")
        return True

    def _store_error(self, exc: StoreError) -> None:
        if not self.last_error:
            log.warning("model store unreachable, serving the loaded version: %s", exc)
        self.last_error = str(exc)
        self.metrics.model_loads.labels("store_error").inc()

    def announced(self, entry: dict[str, Any]) -> None:
        """An announcement arrived: poll now instead of at the next interval."""
        self._wake.set()

    def run(self) -> None:
        """Poll until :meth:`stop` (the body of :meth:`start`'s thread)."""
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # never let the follower die
                log.exception("model poll failed")
            self._wake.wait(self.settings.poll_interval_s)
            self._wake.clear()

    def start(self) -> None:
        """Poll once now, then follow on a daemon thread."""
        self.poll()
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="model-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following (the served version stays)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)

    # -- state ---------------------------------------------------------------------------------
    def alive(self) -> bool:
        """The follower thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def age_s(self) -> float:
        """Seconds since the served version was created (NaN before the first load)."""
        m = self.model
        return time.time() - m.created if m is not None else float("nan")

    def staleness_s(self) -> float:
        """Seconds since the served version was last confirmed current (NaN before a load)."""
        return time.time() - self.confirmed if self.model is not None else float("nan")

    def ready(self) -> tuple[bool, str]:
        """``(True, "")`` once a version is loaded and confirmed within the staleness bound."""
        if self.model is None:
            why = f"store: {self.last_error}" if self.last_error else "no model version loaded"
            return False, why
        stale = self.staleness_s()
        if stale > self.settings.max_staleness_s:
            why = f"model version {self.model.version} unconfirmed for {stale:.0f} s"
            return False, why + (f" (store: {self.last_error})" if self.last_error else "")
        return True, ""

    def describe(self) -> dict[str, Any]:
        """The served version and its age, for ``GET /v1/model``."""
        m = self.model
        return {
            "role": "serving",
            "model": self.registry.name,
            "store": self.registry.store.url,
            "model_version": None if m is None else m.version,
            "created": None if m is None else m.created,
            "age_s": None if m is None else self.age_s(),
            "staleness_s": None if m is None else self.staleness_s(),
            "pinned": self.pinned,
            "sha256": None if m is None else m.sha256,
            "offsets": None if m is None else m.offsets,
            "metrics": None if m is None else m.metrics,
            "learning_steps": None if m is None else m.snapshot.version,
            "classes": [] if m is None else [str(c) for c in m.snapshot.classes],
            "refused": [{"version": v, "reason": r} for (v, _), r in self._refused.items()],
            "store_error": self.last_error or None,
        }

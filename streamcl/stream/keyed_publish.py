"""The learner side of serving per key: each key's model published as its own versions.

After a partition's checkpoint is durable, every model it saved is published to the model
store (``models.store``) as a version of :func:`~streamcl.models.keys.key_model_name`: the
version number is the model's learning steps, so it only moves forward, and a version is
never published below the key's current pointer (after a crash the restored model is
older than what its previous owner published; it publishes again once it has learned
past it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from streamcl.models.keys import key_model_name
from streamcl.models.registry import ModelRegistry
from streamcl.models.store import ObjectStore
from streamcl.models.version import encode_version
from streamcl.stream.keyed import KeyModel

__all__ = ["KeyPublisher"]

log = logging.getLogger(__name__)


class KeyPublisher:
    """Publishes per-key model versions after each partition checkpoint.

    Parameters
    ----------
    store
        The model store.
    model
        ``models.name``.
    fingerprint
        :func:`~streamcl.models.version.model_fingerprint` of the settings.
    keep
        Promoted versions kept per key.
    """

    def __init__(
        self, store: ObjectStore, model: str, fingerprint: Mapping[str, Any], keep: int = 2
    ) -> None:
        self.store = store
        self.model = model
        self.fingerprint = dict(fingerprint)
        self.keep = keep
        self.published = 0

    def publish(self, models: Iterable[KeyModel], offsets: Mapping[str, int]) -> None:
        """Publish each of ``models`` as its key's newest version (never raises)."""
        for m in models:
            try:
                self._publish_one(m, offsets)
            except Exception:  # serving lags; learning and checkpoints go on
                log.exception("publishing key %r's model failed", m.key)

    def _publish_one(self, m: KeyModel, offsets: Mapping[str, int]) -> None:
        registry = ModelRegistry(self.store, key_model_name(self.model, m.key), self.keep)
        version = m.learner.version
        pointer = registry.pointer()
        if version == 0 or (pointer is not None and int(pointer["version"]) >= version):
            return  # versions only move forward
        created = time.time()
        position = {m.partition: offsets.get(m.partition)}
        summary = {**m.score.summary(), "key": m.key}
        data, sha = encode_version(
            m.learner.snapshot(),
            version,
            registry.name,
            created,
            self.fingerprint,
            position,
            summary,
        )
        registry.put_version(version, data)
        entry = {
            "version": version,
            "sha256": sha,
            "created": created,
            "offsets": position,
            "metrics": summary,
        }
        registry.promote(entry)
        self.published += 1

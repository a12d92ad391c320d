"""Per-key model versions in the registry: the names, and a serving-side cache of them.

With ``learner.partitioning: key`` the learner publishes each key's model as versions of
its own registry entry, named by :func:`key_model_name` (``<model>.key-<hash>``: any key,
path-safe). A serving process finds a key's newest version through :class:`KeyedVersions`,
which re-reads the key's pointer at most every ``recheck_s`` seconds. Nothing here imports
the training code.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from typing import Any

from streamcl.models.registry import ModelRegistry
from streamcl.models.store import ObjectStore
from streamcl.models.version import ModelVersion

__all__ = ["KeyedVersions", "key_model_name"]


def key_model_name(model: str, key: str) -> str:
    """Registry name of ``key``'s model: ``<model>.key-<24 hex digits of sha256(key)>``."""
    return f"{model}.key-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:24]}"


class KeyedVersions:
    """The newest version of each key's model, loaded on demand, least recently used dropped.

    Parameters
    ----------
    store
        The model store the learner publishes to.
    model
        ``models.name``.
    fingerprint
        Model fingerprint to check versions against (None: not checked).
    recheck_s
        Seconds a key's pointer is trusted before it is read again.
    max_cached
        Most keys' versions kept in memory.
    """

    def __init__(
        self,
        store: ObjectStore,
        model: str,
        fingerprint: dict[str, Any] | None = None,
        recheck_s: float = 1.0,
        max_cached: int = 10_000,
    ) -> None:
        self.store = store
        self.model = model
        self.fingerprint = fingerprint
        self.recheck_s = recheck_s
        self.max_cached = max_cached
        self._cache: OrderedDict[str, tuple[float, ModelVersion]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> ModelVersion | None:
        """``key``'s newest version, or None when nothing was published for it.

        Raises
        ------
        ModelVersionError
            The artifact is missing, corrupt or incompatible.
        StoreError
            The store is unreachable.
        """
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and now - cached[0] < self.recheck_s:
                self._cache.move_to_end(key)
                return cached[1]
        registry = ModelRegistry(self.store, key_model_name(self.model, key))
        target = registry.target()
        if target is None:
            return None
        if cached is not None and cached[1].version == target.version:
            loaded = cached[1]
        else:
            loaded = registry.load(target.version, self.fingerprint, target.sha256)
        with self._lock:
            self._cache[key] = (now, loaded)
            self._cache.move_to_end(key)
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
        return loaded

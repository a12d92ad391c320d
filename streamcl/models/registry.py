"""The registry of one model's versions in an object store: artifacts, pointer, pin.

Objects, for model ``m``::

    versions/m/v000000000042.streamcl   immutable artifacts (streamcl.models.version)
    pointer/m.json                      the promoted version to serve, written by the learner
    pin/m.json                          a pinned version (pin or rollback), written by admins

The learner is the only writer of the pointer and of the artifacts; the pin is written only
by the admin commands (``streamcl models pin|unpin|rollback`` or the learner's admin API), so
the two never race on one object. Replicas serve the pinned version while a pin is set, else
the pointer's. The pointer also keeps the history of promoted versions (newest first, for
rollback), the versions the quality gate held with their reasons, and ``updated``: the last
time the learner confirmed it, so a replica can tell a live learner from a dead one.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from streamcl.errors import ModelVersionError, StoreError, StoreNotFoundError
from streamcl.models.store import ObjectStore
from streamcl.models.version import ModelVersion, decode_version

__all__ = ["ModelRegistry", "Target", "registry_from_settings"]

_VERSION = re.compile(r"^v(\d{12})\.streamcl$")
#: Most held versions listed in the pointer.
HELD_LISTED = 20


@dataclass(frozen=True)
class Target:
    """What a replica should serve now.

    Attributes
    ----------
    version : int
        Version number.
    name : str
        Object name of its artifact.
    sha256 : str or None
        Expected hex SHA-256 (None when unknown, e.g. a pin).
    pinned : bool
        Chosen by a pin or rollback rather than by promotion.
    confirmed : float
        Unix time the choice was last confirmed (the learner's pointer heartbeat, or now
        for a pin), seconds.
    """

    version: int
    name: str
    sha256: str | None
    pinned: bool
    confirmed: float


class ModelRegistry:
    """Versions, pointer and pin of model ``name`` in ``store``.

    Parameters
    ----------
    store
        Where the objects are.
    name
        Model name (``models.name``).
    keep
        Promoted versions kept (older artifacts are deleted after each promotion, except a
        pinned one).
    """

    def __init__(self, store: ObjectStore, name: str = "streamcl", keep: int = 5) -> None:
        self.store = store
        self.name = name
        self.keep = keep

    # -- names ---------------------------------------------------------------------------------
    def version_name(self, version: int) -> str:
        """Object name of version ``version``'s artifact."""
        return f"versions/{self.name}/v{version:012d}.streamcl"

    def uri(self, version: int) -> str:
        """Full URI of a version's artifact (for announcements and listings)."""
        return f"{self.store.url.rstrip('/')}/{self.version_name(version)}"

    def versions(self) -> list[int]:
        """Version numbers with an artifact in the store, ascending.

        Raises
        ------
        StoreError
            The store is unreachable.
        """
        out = []
        for obj in self.store.list(f"versions/{self.name}/"):
            m = _VERSION.match(obj.rsplit("/", 1)[-1])
            if m:
                out.append(int(m.group(1)))
        return sorted(out)

    # -- reading -------------------------------------------------------------------------------
    def _json(self, name: str) -> dict[str, Any] | None:
        try:
            raw = self.store.get(name)
        except StoreNotFoundError:
            return None
        try:
            obj = json.loads(raw)
        except ValueError as exc:
            raise StoreError(f"{name} in {self.store.url} is not JSON: {exc}") from None
        return obj if isinstance(obj, dict) else None

    def pointer(self) -> dict[str, Any] | None:
        """The pointer object, or None before the first promotion.

        Raises
        ------
        StoreError
            The store is unreachable or the pointer is not JSON.
        """
        return self._json(f"pointer/{self.name}.json")

    def pin_state(self) -> dict[str, Any] | None:
        """The pin object (``{"version", "reason", "at"}``), or None when not pinned.

        Raises
        ------
        StoreError
            The store is unreachable.
        """
        pin = self._json(f"pin/{self.name}.json")
        return pin if pin and pin.get("version") is not None else None

    def target(self) -> Target | None:
        """The version replicas should serve (the pin, else the pointer), or None.

        Raises
        ------
        StoreError
            The store is unreachable.
        """
        pin = self.pin_state()
        if pin is not None:
            v = int(pin["version"])
            return Target(v, self.version_name(v), pin.get("sha256"), True, time.time())
        ptr = self.pointer()
        if ptr is None:
            return None
        v = int(ptr["version"])
        updated = float(ptr.get("updated", ptr.get("created", 0.0)))
        return Target(v, self.version_name(v), ptr.get("sha256"), False, updated)

    def load(
        self, version: int, fingerprint: dict[str, Any] | None, sha256: str | None = None
    ) -> ModelVersion:
        """Read, verify and decode version ``version``.

        Raises
        ------
        ModelVersionError
            ``missing`` (no such artifact), ``checksum``, ``undecodable`` or ``incompatible``.
        StoreError
            The store is unreachable.
        """
        try:
            data = self.store.get(self.version_name(version))
        except StoreNotFoundError as exc:
            raise ModelVersionError("missing", str(exc)) from None
        loaded = decode_version(data, fingerprint, sha256)
        if loaded.version != version or loaded.model != self.name:
            raise ModelVersionError(
                "undecodable",
                f"{self.version_name(version)} holds {loaded.model} v{loaded.version}",
            )
        return loaded

    # -- the learner's writes ------------------------------------------------------------------
    def next_version(self) -> int:
        """One more than any version number in use (artifacts, pointer, held).

        Raises
        ------
        StoreError
            The store is unreachable.
        """
        ptr = self.pointer() or {}
        used = [*self.versions(), int(ptr.get("version", 0))]
        used += [int(h["version"]) for h in ptr.get("held", [])]
        return max(used, default=0) + 1

    def put_version(self, version: int, data: bytes) -> None:
        """Write an artifact (before it is promoted or held).

        Raises
        ------
        StoreError
            The write failed.
        """
        self.store.put(self.version_name(version), data)

    def _write_pointer(self, ptr: dict[str, Any]) -> None:
        data = json.dumps(ptr, separators=(",", ":"), default=str).encode()
        self.store.put(f"pointer/{self.name}.json", data)

    def promote(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Make ``entry`` (``version``, ``sha256``, ``created``, ``offsets``, ``metrics``) served.

        Versions beyond the newest ``keep`` promoted ones are deleted (not a pinned one).

        Returns
        -------
        dict
            The new pointer.

        Raises
        ------
        StoreError
            The store is unreachable (the previous pointer stays).
        """
        old = self.pointer() or {}
        history = [int(entry["version"]), *[int(v) for v in old.get("history", [])]]
        ptr = {
            **entry,
            "model": self.name,
            "uri": self.uri(int(entry["version"])),
            "updated": time.time(),
            "history": history[: self.keep],
            "held": old.get("held", []),
        }
        self._write_pointer(ptr)
        self._prune(set(ptr["history"]))
        return ptr

    def hold(self, version: int, reason: str, scores: dict[str, Any]) -> None:
        """List ``version`` as held by the gate, with ``reason``; its artifact is pruned later.

        Raises
        ------
        StoreError
            The store is unreachable.
        """
        ptr = self.pointer()
        if ptr is None:
            return
        held = [{"version": version, "reason": reason, "at": time.time(), **scores}]
        ptr["held"] = (held + list(ptr.get("held", [])))[:HELD_LISTED]
        ptr["updated"] = time.time()  # the learner is alive; the served version stays
        self._write_pointer(ptr)

    def heartbeat(self) -> None:
        """Confirm the served version is still current (the learner is alive).

        Raises
        ------
        StoreError
            The store is unreachable.
        """
        ptr = self.pointer()
        if ptr is not None:
            ptr["updated"] = time.time()
            self._write_pointer(ptr)

    def _prune(self, keep: set[int]) -> None:
        pin = self.pin_state()
        if pin is not None:
            keep.add(int(pin["version"]))
        newest = max(keep, default=0)
        for v in self.versions():
            if v not in keep and v < newest:
                self.store.delete(self.version_name(v))

    # -- admin ---------------------------------------------------------------------------------
    def pin(self, version: int, reason: str = "pin") -> dict[str, Any]:
        """Serve ``version`` on every replica until :meth:`unpin`.

        Raises
        ------
        ModelVersionError
            ``missing``: no artifact of that version in the store.
        StoreError
            The store is unreachable.
        """
        if version not in self.versions():
            raise ModelVersionError("missing", f"no version {version} of {self.name} in the store")
        pin = {"version": version, "reason": reason, "at": time.time()}
        self.store.put(f"pin/{self.name}.json", json.dumps(pin).encode())
        return pin

    def unpin(self) -> None:
        """Go back to serving the newest promoted version.

        Raises
        ------
        StoreError
            The store is unreachable.
        """
        self.store.delete(f"pin/{self.name}.json")

    def rollback(self) -> dict[str, Any]:
        """Pin the promoted version before the one served now (again: one further back).

        Raises
        ------
        ModelVersionError
            ``missing``: no earlier promoted version is kept.
        StoreError
            The store is unreachable.
        """
        ptr = self.pointer() or {}
        pin = self.pin_state()
        current = int(pin["version"]) if pin else int(ptr.get("version", 0))
        earlier = [int(v) for v in ptr.get("history", []) if int(v) < current]
        if not earlier:
            raise ModelVersionError("missing", f"no promoted version before {current} is kept")
        return self.pin(max(earlier), reason="rollback")

    def listing(self) -> dict[str, Any]:
        """Versions in the store with their status, the pin and the held versions.

        Raises
        ------
        StoreError
            The store is unreachable.
        """
        ptr = self.pointer() or {}
        pin = self.pin_state()
        held = {int(h["version"]): h for h in ptr.get("held", [])}
        promoted = {int(v) for v in ptr.get("history", [])}
        rows = []
        for v in self.versions():
            status = "promoted" if v in promoted else "held" if v in held else "candidate"
            rows.append({"version": v, "status": status, "uri": self.uri(v)})
        return {
            "model": self.name,
            "store": self.store.url,
            "served": int(pin["version"]) if pin else ptr.get("version"),
            "latest": ptr.get("version"),
            "pinned": pin,
            "updated": ptr.get("updated"),
            "versions": rows,
            "held": list(ptr.get("held", [])),
        }


def registry_from_settings(settings: Any) -> ModelRegistry | None:
    """The registry named by ``settings.models`` (None when no store is configured).

    Raises
    ------
    StoreError
        The store URL is invalid.
    """
    m = settings.models
    if m.store is None:
        return None
    from streamcl.models.store import open_store

    secret = m.s3_secret_access_key.get_secret_value() if m.s3_secret_access_key else None
    store = open_store(
        m.store,
        endpoint_url=m.s3_endpoint_url,
        region=m.s3_region,
        access_key_id=m.s3_access_key_id,
        secret_access_key=secret,
    )
    return ModelRegistry(store, m.name, m.keep)

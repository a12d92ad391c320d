"""Per-partition checkpoints in a shared object store: the partition's models and next offset.

Layout under ``keyed/<topic>/<partition>/`` of the store (a folder or an S3 bucket, see
:mod:`streamcl.models.store`)::

    manifest                        {offset, models: {key: blob name}, owner, seq, fingerprint}
    models/<key hash>/<owner>-<seq> one key's learner, score and ledger

Every blob is written once under a new name (copy-on-write) and never changed; the
manifest, written last and atomically, is the partition's checkpoint: the state of every
key of the partition after the record before ``offset``. A crash between a model write and
the manifest write leaves the previous manifest and the blobs it names intact, so the next
owner restores a consistent cut and re-reads from its offset (Flink's and Kafka Streams'
exactly-once state: the state and the offset saved together). Only keys that changed since
the last checkpoint are written, so a checkpoint costs what changed, not what exists.

Blobs use the checkpoint file format (:func:`~streamcl.models.format.pack`:
checksummed, optionally HMAC-signed, no pickle).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streamcl.errors import CheckpointError
from streamcl.metrics import Metrics
from streamcl.models.format import fingerprint_diff, pack, unpack
from streamcl.models.store import ObjectStore, StoreNotFoundError
from streamcl.stream.checkpoint_store import IncompatibleCheckpointError

__all__ = ["PartitionState", "PartitionStore", "partition_prefix", "read_partition"]

log = logging.getLogger(__name__)

PREFIX = "keyed"


def partition_prefix(partition: str) -> str:
    """Store prefix of ``"topic:partition"``: ``keyed/<topic>/<partition>/``."""
    topic, _, number = partition.rpartition(":")
    return f"{PREFIX}/{topic}/{int(number)}/"


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


@dataclass
class PartitionState:
    """What this instance knows of a partition it owns.

    Attributes
    ----------
    offset : int or None
        Next offset of the restored manifest (None: the partition was never checkpointed).
    blobs : dict[str, str]
        Newest saved blob of each key (those of the manifest, then those written since).
    superseded : list[str]
        Blobs replaced since the last manifest, deleted once the next manifest is durable.
    """

    offset: int | None
    blobs: dict[str, str] = field(default_factory=dict)
    superseded: list[str] = field(default_factory=list)


class PartitionStore:
    """Reads and writes the per-partition checkpoints of the partitions this instance owns.

    Parameters
    ----------
    store
        The shared object store.
    fingerprint
        :func:`~streamcl.stream.checkpoint_store.settings_fingerprint` of the settings;
        a manifest written under incompatible settings is refused.
    metrics
        Restore time, loads and failures are recorded here.
    signing_key
        HMAC key of the blobs (``checkpoint.signing_key``), or None for SHA-256.
    may_write
        Called before every manifest write; False means this instance may no longer own
        its partitions (its group membership lapsed: a zombie), and nothing is written.

    Attributes
    ----------
    owned : dict[str, PartitionState]
        Partitions acquired and not released, by ``"topic:partition"``.
    """

    def __init__(
        self,
        store: ObjectStore,
        fingerprint: Mapping[str, Any],
        metrics: Metrics,
        signing_key: bytes | None = None,
        may_write: Callable[[], bool] | None = None,
    ) -> None:
        self.store = store
        self.fingerprint = dict(fingerprint)
        self.metrics = metrics
        self.signing_key = signing_key
        self.may_write = may_write
        self.owner = f"{uuid.uuid4().hex[:8]}{os.getpid()}"
        self.owned: dict[str, PartitionState] = {}
        self._seq = 0

    def _name(self, partition: str, key: str) -> str:
        self._seq += 1
        return f"{partition_prefix(partition)}models/{_key_hash(key)}/{self.owner}-{self._seq:09d}"

    # -- partitions ------------------------------------------------------------------------
    def acquire(self, partition: str) -> int | None:
        """Read the partition's manifest; the partition is then owned.

        Returns
        -------
        int or None
            The offset to resume from; None when the partition was never checkpointed
            (its keys have learned nothing: read it from the start).

        Raises
        ------
        CheckpointError
            The manifest does not verify, or was written under incompatible settings.
        """
        started = time.perf_counter()
        try:
            data = self.store.get(partition_prefix(partition) + "manifest")
        except StoreNotFoundError:
            self.owned[partition] = PartitionState(None)
            return None
        manifest = unpack(data, self.signing_key)
        diff = fingerprint_diff(manifest.get("fingerprint") or {}, self.fingerprint)
        if diff:
            raise IncompatibleCheckpointError(
                f"partition {partition}'s checkpoint is incompatible with the settings ("
                + "; ".join(diff)
                + ")"
            )
        offset = int(manifest["offset"])
        blobs = {str(k): str(v) for k, v in manifest["models"].items()}
        self.owned[partition] = PartitionState(offset, blobs)
        self.metrics.keyed_restore_duration.observe(time.perf_counter() - started)
        log.info("partition %s restored: offset %d, %d models", partition, offset, len(blobs))
        return offset

    def release(self, partition: str) -> None:
        """Stop owning ``partition`` (after its last checkpoint, or when it was lost)."""
        self.owned.pop(partition, None)

    # -- models ----------------------------------------------------------------------------
    def load_model(self, partition: str, key: str) -> dict[str, Any] | None:
        """The saved state of ``key`` on ``partition``, or None for a key never saved.

        Raises
        ------
        CheckpointError
            The blob is missing or does not verify.
        """
        name = self.owned[partition].blobs.get(key)
        if name is None:
            return None
        try:
            blob = unpack(self.store.get(name), self.signing_key)
        except StoreNotFoundError:
            raise CheckpointError(f"model blob {name} of key {key!r} is missing") from None
        if blob.get("key") != key:
            raise CheckpointError(f"model blob {name} holds key {blob.get('key')!r}, not {key!r}")
        state: dict[str, Any] = blob["state"]
        return state

    def save_model(self, partition: str, key: str, state: Mapping[str, Any]) -> str:
        """Write one key's state under a new name; the manifest names it once it is saved.

        Raises
        ------
        StoreError
            The write failed.
        """
        part = self.owned[partition]
        name = self._name(partition, key)
        self.store.put(name, pack({"key": key, "state": dict(state)}, self.signing_key))
        old = part.blobs.get(key)
        if old is not None:
            part.superseded.append(old)
        part.blobs[key] = name
        return name

    def save_manifest(self, partition: str, offset: int, fenced: bool = True) -> bool:
        """Make the partition's saved models and ``offset`` its checkpoint (atomic put).

        ``fenced``: ask :attr:`may_write` first. A revocation is not fenced: kafka-python
        calls it only while this member is still in the group (an eviction is a *loss*).

        Returns
        -------
        bool
            False when :attr:`may_write` refused (a zombie writes nothing).

        Raises
        ------
        StoreError
            The write failed; the previous manifest stays the checkpoint.
        """
        if fenced and self.may_write is not None and not self.may_write():
            log.error("not writing %s's checkpoint: this instance may have lost it", partition)
            return False
        part = self.owned[partition]
        manifest = {
            "offset": int(offset),
            "models": dict(part.blobs),
            "owner": self.owner,
            "created": time.time(),
            "fingerprint": self.fingerprint,
        }
        self.store.put(partition_prefix(partition) + "manifest", pack(manifest, self.signing_key))
        part.offset = int(offset)
        for name in part.superseded:
            try:
                self.store.delete(name)
            except Exception as exc:  # garbage only: never fail a checkpoint for it
                log.warning("could not delete superseded blob %s: %s", name, exc)
        part.superseded.clear()
        return True


def read_partition(
    store: ObjectStore, partition: str, signing_key: bytes | None = None
) -> tuple[int, dict[str, dict[str, Any]]] | None:
    """The offset and every key's state of a partition's checkpoint (tests, tools).

    Returns
    -------
    tuple[int, dict] or None
        ``(offset, {key: state})``; None when the partition has no manifest.
    """
    try:
        manifest = unpack(store.get(partition_prefix(partition) + "manifest"), signing_key)
    except StoreNotFoundError:
        return None
    states = {
        str(key): unpack(store.get(name), signing_key)["state"]
        for key, name in manifest["models"].items()
    }
    return int(manifest["offset"]), states

"""Per-key models: one learner per model key, grouped by the Kafka partition the key lives on.

With ``learner.partitioning: key`` every model key (the Kafka record key, or the feature
named by ``learner.key_field``) has its own :class:`~streamcl.learning.learner.Learner`
(network, memory, detectors), its own prequential score and its own ledger of learned ids.
Kafka's partitioner maps keys to partitions, so the instance that owns a partition owns
the models of its keys, the way Kafka Streams partitions its state stores.

:class:`KeyedLearner` holds the live models of the partitions this instance owns, at most
``max_live`` of them: the least recently used one is saved to the store and evicted, and
loaded again on its next event. Its state moves with the partition through
:class:`~streamcl.stream.partitions.PartitionStore` (a partition's models and next offset,
written as one manifest).

Only the loop thread touches a :class:`KeyedLearner`, except the rebalance callbacks,
which kafka-python runs while the loop thread waits inside ``poll()``.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streamcl.learning.learner import Learner, Snapshot
from streamcl.metrics import Metrics
from streamcl.settings import Settings
from streamcl.stream.dedup import DedupWindow, IdLedger
from streamcl.stream.partitions import PartitionStore
from streamcl.stream.scores import PrequentialScore, RegressionScore

__all__ = ["KeyModel", "KeyedLearner"]

log = logging.getLogger(__name__)


@dataclass
class KeyModel:
    """The model of one key: learner, prequential score, ledger of learned ids, recent ids.

    Attributes
    ----------
    key : str
        The model key.
    partition : str
        ``"topic:partition"`` the key's events come from.
    dirty : bool
        Changed since it was last saved to the store.
    """

    key: str
    partition: str
    learner: Learner
    score: PrequentialScore | RegressionScore
    ledger: IdLedger = field(default_factory=IdLedger)
    dedup: DedupWindow = field(default_factory=lambda: DedupWindow(0))
    dirty: bool = True

    def state_dict(self) -> dict[str, Any]:
        """Learner, score and ledger state (plain data and tensors)."""
        return {
            "learner": self.learner.state_dict(),
            "score": self.score.state_dict(),
            "ledger": self.ledger.state_dict(),
            "dedup": self.dedup.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.learner.load_state_dict(dict(state["learner"]))
        self.score.load_state_dict(dict(state["score"]))
        self.ledger.load_state_dict(dict(state["ledger"]))
        if "dedup" in state:  # absent from checkpoints written before the per-key window
            self.dedup.load_state_dict(dict(state["dedup"]))


class KeyedLearner:
    """The live per-key models of this instance, least recently used evicted beyond a limit.

    Parameters
    ----------
    settings
        Settings: ``learner`` builds each key's learner; ``learner.max_live_models`` caps
        the live models; ``metrics.window`` sizes each key's score.
    store
        Where models and partition manifests are saved.
    metrics
        Instance metrics (live models, evictions, loads, restore time; never per key).
    template
        Learner state a new key starts from (``learner.template``); None: a fresh learner.

    Attributes
    ----------
    models : OrderedDict[tuple[str, str], KeyModel]
        Live models by ``(partition, key)``, least recently used first.
    """

    def __init__(
        self,
        settings: Settings,
        store: PartitionStore,
        metrics: Metrics,
        template: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.template = template
        self.max_live = settings.learner.max_live_models
        self.models: OrderedDict[tuple[str, str], KeyModel] = OrderedDict()
        self._fresh = self._new_learner()  # featurizer and snapshot of "no key yet"
        self.regression = self._fresh.regression
        self.steps = 0

    # -- what the stream loop reads --------------------------------------------------------
    @property
    def version(self) -> int:
        """Learning steps taken by this instance's models since it started."""
        return self.steps

    @property
    def featurizer(self) -> Any:
        """The template's featurizer (kinds are checked per key by the keyed loop)."""
        return self._fresh.featurizer

    def snapshot(self) -> Snapshot:
        """Snapshot of the template (or fresh) learner: the answer for an unknown key."""
        return self._fresh.snapshot()

    def export_metrics(self, metrics: Any) -> None:
        """Instance-level gauges only (never a label per key)."""
        metrics.keyed_live_models.set(len(self.models))
        metrics.keyed_partitions.set(len(self.store.owned))

    def summary(self) -> dict[str, Any]:
        """Instance summary for ``GET /v1/model``."""
        return {
            "task": self.settings.learner.task,
            "partitioning": "key",
            "version": self.steps,
            "live_models": len(self.models),
            "max_live_models": self.max_live,
            "partitions": sorted(self.store.owned),
            "keys": sum(len(p.blobs) for p in self.store.owned.values()),
        }

    # -- models ----------------------------------------------------------------------------
    def _new_learner(self) -> Learner:
        learner = Learner(self.settings.learner, plasticity=self.settings.plasticity)
        if self.template is not None:
            learner.load_state_dict(dict(self.template))
        return learner

    def _new_model(self, partition: str, key: str) -> KeyModel:
        learner = self._new_learner()
        window = self.settings.metrics.window
        score = RegressionScore(window) if learner.regression else PrequentialScore(window)
        dedup = DedupWindow(self.settings.events.key_dedup_window)
        return KeyModel(key, partition, learner, score, dedup=dedup)

    def model(self, partition: str, key: str) -> KeyModel:
        """The live model of ``key`` on ``partition``: loaded from the store or created.

        Raises
        ------
        CheckpointError
            The key's saved model does not verify.
        """
        slot = (partition, key)
        found = self.models.get(slot)
        if found is not None:
            self.models.move_to_end(slot)
            return found
        model = self._new_model(partition, key)
        state = self.store.load_model(partition, key)
        if state is not None:
            started = time.perf_counter()
            model.load_state_dict(state)
            model.dirty = False
            self.metrics.keyed_loads.inc()
            self.metrics.keyed_load_duration.observe(time.perf_counter() - started)
        self.models[slot] = model
        self._evict_over_limit()
        return model

    def _evict_over_limit(self) -> None:
        while len(self.models) > self.max_live:
            (partition, key), model = next(iter(self.models.items()))
            if model.dirty:
                self.store.save_model(partition, key, model.state_dict())
            del self.models[(partition, key)]
            self.metrics.keyed_evictions.inc()

    def of_partition(self, partition: str) -> list[KeyModel]:
        """Live models of ``partition``."""
        return [m for (p, _), m in self.models.items() if p == partition]

    # -- partitions ------------------------------------------------------------------------
    def checkpoint(self, offsets: Mapping[str, int], fenced: bool = True) -> list[KeyModel]:
        """Save the dirty models of each partition, then its manifest with its next offset.

        ``fenced``: write a manifest only while the group lease holds (not on revocation).

        Returns
        -------
        list[KeyModel]
            The models saved under a durable manifest (to publish).

        Raises
        ------
        StoreError
            A write failed (the previous manifest stays the partition's newest).
        """
        saved: list[KeyModel] = []
        for partition, offset in offsets.items():
            if partition not in self.store.owned:
                continue
            dirty = [m for m in self.of_partition(partition) if m.dirty]
            for m in dirty:
                self.store.save_model(partition, m.key, m.state_dict())
            if self.store.save_manifest(partition, offset, fenced):
                for m in dirty:
                    m.dirty = False
                saved += dirty
        return saved

    def release(self, partitions: list[str]) -> None:
        """Forget the models of ``partitions`` (after they were checkpointed, or lost)."""
        gone = set(partitions)
        for slot in [s for s in self.models if s[0] in gone]:
            del self.models[slot]
        for partition in partitions:
            self.store.release(partition)

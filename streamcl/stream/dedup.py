"""Exactly-once bookkeeping: a bounded window of recent event ids, and a ledger of learned ids.

Both live in the stream loop (its only writer) and in every checkpoint, so after a crash
the restored window and ledger describe exactly the events the restored model has seen:
events replayed after the checkpoint are neither rejected as duplicates nor counted twice.

Examples
--------
>>> window = DedupWindow(2)
>>> window.seen_or_add("a"), window.seen_or_add("a"), window.seen_or_add("b")
(False, True, False)
>>> ledger = IdLedger()
>>> ledger.add("a"); ledger.add("b")
>>> other = IdLedger(); other.add("b"); other.add("a")
>>> ledger.count, ledger.digest == other.digest  # order-independent
(2, True)
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

__all__ = ["DedupWindow", "IdLedger", "id_hash", "ids_digest"]

_MASK = (1 << 64) - 1


def id_hash(event_id: str) -> int:
    """64-bit BLAKE2b hash of an event id, as an unsigned int."""
    return int.from_bytes(hashlib.blake2b(event_id.encode("utf-8"), digest_size=8).digest(), "big")


def ids_digest(ids: Iterable[str]) -> str:
    """The digest :class:`IdLedger` reaches after adding ``ids`` (16 hex digits).

    The sum modulo 2**64 of per-id hashes: order-independent, and (unlike XOR) a
    duplicate changes it, so ``count`` and ``digest`` together catch loss and duplication.
    """
    return f"{_hash_sum(ids)[1] & _MASK:016x}"


def _hash_sum(ids: Iterable[str]) -> tuple[int, int]:
    """How many ``ids`` there are, and the plain sum of their :func:`id_hash` values."""
    count = total = 0
    blake2b, from_bytes = hashlib.blake2b, int.from_bytes
    for event_id in ids:  # id_hash inlined: this runs for every learned event
        total += from_bytes(blake2b(event_id.encode("utf-8"), digest_size=8).digest(), "big")
        count += 1
    return count, total


class DedupWindow:
    """The last ``size`` distinct event ids, oldest evicted first.

    Parameters
    ----------
    size
        Ids remembered; 0 disables de-duplication. Memory is about 100 bytes per id.
    """

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def seen_or_add(self, event_id: str) -> bool:
        """True when ``event_id`` is in the window; otherwise remember it and return False."""
        if self.size == 0:
            return False
        if event_id in self._ids:
            return True
        self._ids[event_id] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return False

    def clear(self) -> None:
        """Forget every id (after a learner reset)."""
        self._ids.clear()

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able state: the ids, oldest first."""
        return {"size": self.size, "ids": list(self._ids)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (trimmed to the current ``size``)."""
        ids = [str(i) for i in state["ids"]]
        keep = ids[len(ids) - self.size :] if self.size else []
        self._ids = OrderedDict.fromkeys(keep)


class IdLedger:
    """Count and order-independent digest of the ids of learned events.

    Attributes
    ----------
    count : int
        Events learned.
    total : int
        Sum of :func:`id_hash` of their ids, modulo 2**64.
    """

    def __init__(self) -> None:
        self.count = 0
        self.total = 0

    def add(self, event_id: str) -> None:
        """Record one learned event."""
        self.add_many((event_id,))

    def add_many(self, event_ids: Iterable[str]) -> None:
        """Record several learned events (the same state as :meth:`add` for each)."""
        count, total = _hash_sum(event_ids)
        self.count += count
        self.total = (self.total + total) & _MASK

    @property
    def digest(self) -> str:
        """:attr:`total` as 16 hex digits (compare with :func:`ids_digest`)."""
        return f"{self.total:016x}"

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able state (the digest as hex: JSON integers lose precision elsewhere)."""
        return {"count": self.count, "digest": self.digest}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.count = int(state["count"])
        self.total = int(str(state["digest"]), 16) & _MASK

"""Test helpers for per-key models: a keyed stream, a fake multi-partition source."""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from typing import Any

from streamcl.connectors.base import Position, Record

from streamcl.stream.dedup import ids_digest


def keyed_events(n: int, keys: int, seed: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """``n`` ``(key, event)`` pairs; each key has its own concept (threshold and sign)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = rng.randrange(keys)
        x = rng.uniform(-1, 1)
        y = rng.uniform(-1, 1)
        sign = 1 if k % 2 else -1
        label = int(sign * (x - 0.8 * math.sin(k)) + 0.2 * y > 0)
        out.append(
            (f"key-{k:03d}", {"id": f"e{i}-{k}", "features": {"x": x, "y": y}, "label": label})
        )
    return out


def expected(pairs: list[tuple[str, dict[str, Any]]]) -> dict[str, tuple[int, str]]:
    """``{key: (count, digest of ids)}`` of a keyed stream."""
    ids: dict[str, list[str]] = defaultdict(list)
    for key, event in pairs:
        ids[key].append(event["id"])
    return {k: (len(v), ids_digest(v)) for k, v in ids.items()}


class PartitionedSource:
    """In-memory records of topic ``k`` over ``partitions`` partitions (key hash % n)."""

    def __init__(self, pairs: list[tuple[str, dict[str, Any]]], partitions: int = 2) -> None:
        self.parts: dict[int, list[tuple[str, bytes]]] = defaultdict(list)
        for key, event in pairs:
            p = sum(key.encode()) % partitions
            self.parts[p].append((key, json.dumps(event).encode()))
        self.next = {p: 0 for p in range(partitions)}
        self.on_assigned: Any = None
        self.on_revoked: Any = None
        self.on_lost: Any = None
        self.commits: list[Position] = []

    def assign(self) -> None:
        targets = self.on_assigned([f"k:{p}" for p in self.next])
        for key, off in targets.items():
            self.next[int(key.split(":")[1])] = off

    def read(self, max_records: int, timeout_s: float = 0.0) -> list[Record]:
        out: list[Record] = []
        for p in self.next:  # round robin in chunks of 7, like interleaved fetches
            rows = self.parts[p][self.next[p] : self.next[p] + 7]
            for i, (key, value) in enumerate(rows):
                out.append(Record(value, key.encode(), "k", p, self.next[p] + i))
            self.next[p] += len(rows)
        return out

    def next_offsets(self) -> Position:
        return {f"k:{p}": off for p, off in self.next.items()}

    position = next_offsets

    def seek(self, position: Position) -> None:
        pass

    def commit(self, position: Position) -> None:
        self.commits.append(dict(position))

    def health(self) -> tuple[bool, str]:
        return True, ""

    @property
    def exhausted(self) -> bool:
        return all(self.next[p] >= len(self.parts[p]) for p in self.next)

    def close(self) -> None:
        pass

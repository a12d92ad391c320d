"""Test helpers: an in-memory source and elec2 slices."""

from __future__ import annotations

import csv
import gzip
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from streamcl.connectors.base import Position, Record

ELEC2 = Path(__file__).resolve().parents[1] / "streamcl" / "data" / "elec2.csv.gz"


def elec2_rows(n: int) -> list[dict[str, str]]:
    """The first ``n`` rows of the packaged elec2 stream, as CSV row mappings."""
    with gzip.open(ELEC2, "rt", newline="") as fh:
        reader = csv.DictReader(fh)
        return [row for _, row in zip(range(n), reader, strict=False)]


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


class ListSource:
    """A finite source over in-memory values (JSON-able dicts, bytes or CSV rows)."""

    def __init__(self, values: Iterable[Mapping[str, Any] | bytes], topic: str = "list") -> None:
        self.values = [v if isinstance(v, bytes) else _encode(v) for v in values]
        self.topic = topic
        self.next = 0
        self.closed = False

    def read(self, max_records: int, timeout_s: float = 0.0) -> list[Record]:
        out = [
            Record(value=v, topic=self.topic, offset=self.next + i)
            for i, v in enumerate(self.values[self.next : self.next + max_records])
        ]
        self.next += len(out)
        return out

    def position(self) -> Position:
        return {f"{self.topic}:0": self.next}

    def seek(self, position: Position) -> None:
        self.next = position[f"{self.topic}:0"]

    def commit(self, position: Position) -> None:
        pass

    def health(self) -> tuple[bool, str]:
        return True, ""

    @property
    def exhausted(self) -> bool:
        return self.next >= len(self.values)

    def close(self) -> None:
        self.closed = True


def _encode(value: Mapping[str, Any]) -> bytes | Mapping[str, Any]:
    if "features" in value:
        return json.dumps(value).encode()
    return value  # a CSV row mapping

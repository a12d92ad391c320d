"""File source: replays a CSV, CSV.gz or JSONL(.gz) file as a stream.

CSV rows become :class:`~streamcl.connectors.base.Record` values holding the row mapping;
JSONL lines hold their raw bytes. The position is the number of data rows already read
(``{"file": n}``), so a checkpoint resumes after the last handled row.
"""

from __future__ import annotations

import csv
import gzip
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import IO

from streamcl.connectors.base import Position, Record

__all__ = ["FileSource", "resolve_path"]

BUILTIN = {"builtin://elec2": "elec2.csv.gz"}


def resolve_path(path: str) -> Path:
    """A real path for ``path``; ``builtin://elec2`` names the packaged elec2 stream.

    Raises
    ------
    FileNotFoundError
        The file does not exist, or the builtin name is unknown.
    """
    if path.startswith("builtin://"):
        if path not in BUILTIN:
            raise FileNotFoundError(f"unknown builtin data set {path!r}; known: {sorted(BUILTIN)}")
        return Path(str(resources.files("streamcl") / "data" / BUILTIN[path]))
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"data file not found: {p}")
    return p


class FileSource:
    """A CSV / CSV.gz / JSONL / JSONL.gz file replayed as a stream.

    Parameters
    ----------
    path
        File path or ``builtin://elec2``; the format follows the suffix
        (``.csv``, ``.csv.gz``, ``.jsonl``, ``.jsonl.gz``, ``.json``).
    rate
        Replay rate limit, events/s; None replays as fast as it is read.
    loop
        Start again from the top at the end (an endless stream).

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When the suffix is not one of the formats above.
    """

    def __init__(self, path: str, rate: float | None = None, loop: bool = False) -> None:
        self.path = resolve_path(path)
        name = self.path.name.removesuffix(".gz")
        if not name.endswith((".csv", ".jsonl", ".json")):
            raise ValueError(f"unsupported file format {self.path.name!r}: use CSV or JSONL")
        self.is_csv = name.endswith(".csv")
        self.rate = rate
        self.loop = loop
        self.topic = self.path.name
        self._next = 0
        self._passes = 0
        self._done = False
        self._started: float | None = None
        self._sent_since_start = 0
        self._file: IO[str] | None = None
        self._rows: Iterator[bytes | dict[str, str]] = iter(())
        self._open()

    def _open(self) -> None:
        self.close()
        if self.path.suffix == ".gz":
            stream: IO[str] = gzip.open(self.path, "rt", encoding="utf-8", newline="")  # noqa: SIM115
        else:
            stream = self.path.open(encoding="utf-8", newline="")
        self._file = stream
        self._rows = self._iter_rows(stream)
        self._done = False

    def _iter_rows(self, stream: IO[str]) -> Iterator[bytes | dict[str, str]]:
        if self.is_csv:
            yield from csv.DictReader(stream)
        else:
            for line in stream:
                if line.strip():
                    yield line.encode("utf-8")

    def read(self, max_records: int, timeout_s: float = 0.0) -> list[Record]:
        """Up to ``max_records`` next records; waits at most ``timeout_s`` s to keep ``rate``."""
        budget = max_records if self.rate is None else self._rate_budget(max_records, timeout_s)
        out: list[Record] = []
        while len(out) < budget and not self._done:
            value = next(self._rows, None)
            if value is None:
                if self.loop and self._next + len(out) > 0:
                    self._passes += 1
                    self._open()
                    continue
                self._done = True
                break
            out.append(Record(value=value, topic=self.topic, offset=self._next + len(out)))
        self._next += len(out)
        self._sent_since_start += len(out)
        return out

    def _rate_budget(self, max_records: int, timeout_s: float) -> int:
        assert self.rate is not None
        now = time.monotonic()
        if self._started is None:
            self._started, self._sent_since_start = now, 0
        allowed = int((now - self._started) * self.rate) + 1 - self._sent_since_start
        if allowed <= 0:
            wait = min(timeout_s, (1 - allowed) / self.rate)
            time.sleep(max(wait, 0.0))
            now = time.monotonic()
            allowed = int((now - self._started) * self.rate) + 1 - self._sent_since_start
        return max(0, min(max_records, allowed))

    def position(self) -> Position:
        """``{"file": n}``: rows read so far in total (across loops), the next to read.

        Record offsets count the same way, so they stay unique when the file loops.
        """
        return {"file": self._next}

    def seek(self, position: Position) -> None:
        """Skip to row ``position["file"]`` (modulo the file length when looping)."""
        target = int(position.get("file", 0))
        self._open()
        self._next = 0
        rate, self.rate = self.rate, None
        try:
            while self._next < target:
                if not self.read(min(65_536, target - self._next)):
                    break
        finally:
            self.rate = rate
            self._started = None

    def commit(self, position: Position) -> None:
        """Files need no progress report."""

    def health(self) -> tuple[bool, str]:
        """Always healthy once opened."""
        return True, ""

    @property
    def exhausted(self) -> bool:
        """True after the last row of a non-looping file."""
        return self._done

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None

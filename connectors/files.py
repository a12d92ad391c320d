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
from itertools import islice, repeat
from pathlib import Path
from typing import IO, Any

from streamcl.connectors.base import Position, Record

__all__ = ["FileSource", "csv_dicts", "resolve_path"]

BUILTIN = {"builtin://elec2": "elec2.csv.gz"}


def csv_dicts(header: list[str], rows: list[list[str]]) -> list[dict[str, str | None]]:
    """CSV rows as :class:`csv.DictReader` makes them: one dict per non-empty row.

    A short row's missing columns are None; a long row's extra cells are a list under the
    key None (DictReader's ``restval`` and ``restkey``). A chunk of full rows, the usual
    case, is zipped in C without a Python step per row.
    """
    width = len(header)
    if width and set(map(len, rows)) == {width}:
        return list(map(dict, map(zip, repeat(header), rows)))
    out: list[dict[Any, Any]] = []
    for row in rows:
        if not row:
            continue
        d: dict[Any, Any] = dict(zip(header, row, strict=False))
        if len(row) > width:
            d[None] = row[width:]
        for key in header[len(row) :]:
            d[key] = None
        out.append(d)
    return out


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
        self._lines: Iterator[Any] | None = None  # csv.reader rows, or the file's lines
        self._header: list[str] = []
        self._open()

    def _open(self) -> None:
        self.close()
        if self.path.suffix == ".gz":
            stream: IO[str] = gzip.open(self.path, "rt", encoding="utf-8", newline="")  # noqa: SIM115
        else:
            stream = self.path.open(encoding="utf-8", newline="")
        self._file = stream
        if self.is_csv:
            self._lines = csv.reader(stream)
            self._header = next(self._lines, [])
        else:
            self._lines = stream
        self._done = False

    def _chunk(self, n: int) -> tuple[list[bytes | dict[str, str | None]], bool]:
        """Up to ``n`` next values, and whether the file ended (blank lines are skipped)."""
        assert self._lines is not None
        raw = list(islice(self._lines, n))
        if self.is_csv:
            return csv_dicts(self._header, raw), len(raw) < n
        return [line.encode("utf-8") for line in raw if line.strip()], len(raw) < n

    def read(self, max_records: int, timeout_s: float = 0.0) -> list[Record]:
        """Up to ``max_records`` next records; waits at most ``timeout_s`` s to keep ``rate``."""
        budget = max_records if self.rate is None else self._rate_budget(max_records, timeout_s)
        out: list[Record] = []
        topic = self.topic
        while len(out) < budget and not self._done:
            values, ended = self._chunk(budget - len(out))
            start = self._next + len(out)
            out += [Record(v, None, topic, 0, start + i) for i, v in enumerate(values)]
            if ended:
                if self.loop and self._next + len(out) > 0:
                    self._passes += 1
                    self._open()
                    continue
                self._done = True
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

"""The source contract and the record type shared by every connector.

A source yields :class:`Record` values and is explicit about resuming:
:meth:`Source.position` returns the *next* position to read (not the last one read), and
:meth:`Source.seek` goes back to a position returned earlier, so a checkpoint that stores
a position resumes exactly after the last handled record.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["DeadLetterSink", "LogDeadLetterSink", "Position", "Record", "Source"]

#: A resumable position: the next offset to read for each partition (``"topic:partition"``)
#: or stream (``"file"``). JSON-able, stored in checkpoints.
Position = dict[str, int]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    """One raw record from a source.

    Attributes
    ----------
    value : bytes or Mapping[str, str]
        JSON-encoded event (Kafka, JSONL, HTTP) or an already-split CSV row.
    key : bytes or None
        Record key (Kafka), if any.
    topic : str
        Topic or file name the record came from.
    partition : int
        Partition (0 for files).
    offset : int
        Offset within the partition (row number for files, 0-based).
    timestamp : float or None
        Broker or file timestamp, epoch seconds.
    headers : tuple[tuple[str, bytes], ...]
        Record headers (Kafka).
    """

    value: bytes | Mapping[str, str]
    key: bytes | None = None
    topic: str = ""
    partition: int = 0
    offset: int = 0
    timestamp: float | None = None
    headers: tuple[tuple[str, bytes], ...] = field(default=())


@runtime_checkable
class Source(Protocol):
    """What the stream loop needs from a source of records."""

    def read(self, max_records: int, timeout_s: float) -> list[Record]:
        """Up to ``max_records`` records, waiting at most ``timeout_s`` seconds; may be empty."""
        ...

    def position(self) -> Position:
        """The next position to read from, per partition (after the records returned so far)."""
        ...

    def seek(self, position: Position) -> None:
        """Resume from ``position`` (as returned by :meth:`position`)."""
        ...

    def commit(self, position: Position) -> None:
        """Report progress up to ``position`` (Kafka: commit offsets); may be a no-op."""
        ...

    def health(self) -> tuple[bool, str]:
        """``(healthy, reason)``; the reason says why not, e.g. ``"broker unreachable"``."""
        ...

    @property
    def exhausted(self) -> bool:
        """True when a finite source has nothing more to read."""
        ...

    def close(self) -> None:
        """Release files or connections; idempotent."""
        ...


class DeadLetterSink(Protocol):
    """Where records that fail decoding go, with their reason."""

    def send(self, record: Record, reason: str, field: str, detail: str, error: str) -> None:
        """Keep ``record`` with why it was rejected; must not raise on I/O trouble."""
        ...

    def flush(self) -> None:
        """Make sure what was sent is durable (before a checkpoint)."""
        ...

    def close(self) -> None:
        """Release resources; idempotent."""
        ...


class LogDeadLetterSink:
    """Dead-letter sink for file and HTTP sources: logs each rejection with its position."""

    def send(self, record: Record, reason: str, field: str, detail: str, error: str) -> None:
        """Log ``topic[partition]@offset``, the reason and the field."""
        log.warning(
            "dead letter %s[%d]@%d: %s %s: %s",
            record.topic,
            record.partition,
            record.offset,
            reason,
            field,
            detail,
        )

    def flush(self) -> None:
        """Nothing to flush."""

    def close(self) -> None:
        """Nothing to close."""

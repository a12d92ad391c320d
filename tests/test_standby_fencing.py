"""The standby runner's fences, without a broker: reads dropped off-lease, zombie hand-offs.

The loop must never learn a record read while the lock's lease was not held, and the
source's position must not move past such a record (else a later checkpoint, or the lease
coming back, skips it for good). A zombie (lease expired, then revoked on its rejoin) must
not write the hand-off checkpoint: its model is stale and its file would be the newest.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from unittest.mock import MagicMock

from streamcl.connectors.base import Record

from streamcl.stream.standby import StandbyRunner


class Lock:
    def __init__(self) -> None:
        self.held = True
        self.lease_fresh = True
        self.releasing = False
        self.acquired_at = 0.0


class Source:
    """Returns ``batch`` once; the lease lapses while ``poll()`` runs when ``lapse`` is set."""

    def __init__(self, lock: Lock, batch: list[Record], lapse: bool) -> None:
        self.lock, self.batch, self.lapse = lock, batch, lapse
        self.sought: list[dict[str, int]] = []

    def read(self, max_records: int, timeout_s: float) -> list[Record]:
        if self.lapse:
            self.lock.held = False
        return self.batch

    def seek(self, position: dict[str, int]) -> None:
        self.sought.append(position)


def records(*where: tuple[int, int]) -> list[Record]:
    return [Record(value=b"{}", topic="t", partition=p, offset=o) for p, o in where]


def runner(source: Any, lock: Lock) -> tuple[StandbyRunner, MagicMock]:
    checkpoints = MagicMock()
    loop = SimpleNamespace(source=source, metrics=MagicMock(), hold=None)
    return StandbyRunner(loop, lock, checkpoints), checkpoints  # type: ignore[arg-type]


def test_records_read_off_lease_are_dropped_and_their_partitions_rewound() -> None:
    lock = Lock()
    source = Source(lock, records((0, 7), (0, 8), (1, 3), (1, 4), (1, 5)), lapse=True)
    run, _ = runner(source, lock)
    assert run.loop.source.read(512, 0.05) == []
    assert source.sought == [{"t:0": 7, "t:1": 3}]


def test_records_read_on_lease_pass_through_untouched() -> None:
    lock = Lock()
    batch = records((0, 7), (1, 3))
    source = Source(lock, batch, lapse=False)
    run, _ = runner(source, lock)
    assert run.loop.source.read(512, 0.05) == batch
    assert source.sought == []


def test_a_clean_revocation_checkpoints_before_letting_go() -> None:
    lock = Lock()
    run, checkpoints = runner(None, lock)
    run._active = True
    run._hand_off()
    checkpoints.checkpoint.assert_called_once_with("handoff")
    assert not run.active and run.loop.hold


def test_a_zombie_revoked_after_its_lease_expired_writes_no_checkpoint() -> None:
    lock = Lock()
    lock.lease_fresh = False
    run, checkpoints = runner(None, lock)
    run._active = True
    run._hand_off()
    checkpoints.checkpoint.assert_not_called()
    assert not run.active

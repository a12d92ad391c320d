"""Model version numbers across learner restarts and hot-standby takeovers.

Replicas never go back to a lower version number without a pin, so a learner must never
reuse or restart its numbering: not after a restart whose store was emptied, and not after a
takeover while another learner published. In-process, directory stores, loops stepped by
hand."""

from __future__ import annotations

import shutil
from pathlib import Path

from sources import ListSource, elec2_rows

from streamcl.service import Service
from streamcl.settings import Settings, load_settings


def _values(n: int, start: int = 0) -> list[dict]:
    out = []
    for i, row in enumerate(elec2_rows(start + n)[start:], start=start):
        label = int(row.pop("class"))
        out.append(
            {"id": str(i), "features": {k: float(v) for k, v in row.items()}, "label": label}
        )
    return out


def _settings(tmp_path: Path) -> Settings:
    return load_settings(
        source={"kind": "none", "read_batch": 100},
        checkpoint={"dir": str(tmp_path / "checkpoints"), "every_events": 500},
        models={
            "store": str(tmp_path / "models"),
            "publish_every_events": 200,
            "publish_every_seconds": 1e6,
            "gate_window": 0,
        },
    )


def _run(service: Service, source: ListSource) -> None:
    while not source.exhausted:
        service.loop.step()
        assert service.loop.after_step is not None
        service.loop.after_step()
    assert service.checkpoints is not None
    service.checkpoints.checkpoint("test")


def _versions(service: Service) -> list[int]:
    assert service.registry is not None
    return sorted(service.registry.versions())


def test_a_restart_with_an_emptied_store_continues_the_numbering(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    first = Service(settings, source=ListSource(_values(1500)))
    _run(first, first.source)  # type: ignore[arg-type]
    before = max(_versions(first))
    assert before >= 5
    shutil.rmtree(tmp_path / "models")  # the store is wiped (a new bucket, a lost volume)
    (tmp_path / "models").mkdir()
    source = ListSource(_values(1500, start=1500))
    second = Service(settings, source=source)  # restores the checkpoint
    source.seek({"list:0": 0})
    _run(second, source)
    after = _versions(second)
    assert after and min(after) > before, (before, after)
    pointer = second.registry.pointer()  # type: ignore[union-attr]
    assert pointer is not None and pointer["version"] == max(after)


def test_a_takeover_after_another_learner_published_numbers_above_it(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    a_source = ListSource(_values(1000))
    a = Service(settings, source=a_source)
    _run(a, a_source)  # learner A publishes, checkpoints, then loses the lock
    b_source = ListSource(_values(1000, start=1000))
    b = Service(settings, source=b_source)  # B takes over from A's checkpoint
    b_source.seek({"list:0": 0})
    _run(b, b_source)
    b_max = max(_versions(b))
    assert a.checkpoints is not None
    a.checkpoints.restore()  # A gets the lock back: restores B's checkpoint, as a takeover does
    a_source.values += ListSource(_values(1000, start=2000)).values
    _run(a, a_source)
    a_new = [v for v in _versions(a) if v > b_max]
    assert a_new, (b_max, _versions(a))
    pointer = a.registry.pointer()  # type: ignore[union-attr]
    assert pointer is not None and pointer["version"] == max(a_new)

"""The prequential loop: test-then-train order, scoring, rejections that never stop it."""

from __future__ import annotations

import json
import random
from itertools import pairwise
from typing import Any

import pytest
from river.metrics import CohenKappa
from sources import ListSource, elec2_rows

from streamcl.events import EventDecoder
from streamcl.learning.learner import Learner
from streamcl.metrics import Metrics
from streamcl.settings import load_settings
from streamcl.stream.dedup import IdLedger, id_hash
from streamcl.stream.prequential import PrequentialScore, StreamLoop


def _loop(values: list[Any], **learner: Any) -> StreamLoop:
    settings = load_settings(learner={"batch_size": 8, **learner})
    return StreamLoop(
        ListSource(values),
        Learner(settings.learner),
        EventDecoder(target="class"),
        Metrics(),
        batch_size=settings.learner.batch_size,
        window=100,
    )


def _run(loop: StreamLoop) -> list[Any]:
    out: list[Any] = []
    loop.on_predictions = lambda records, events, preds: out.extend(preds)
    assert loop.source is not None
    while not loop.source.exhausted:
        loop.step()
    return out


def test_an_events_own_label_never_reaches_its_prediction() -> None:
    rows = elec2_rows(400)
    flipped = [dict(r) for r in rows]
    k = 203
    flipped[k]["class"] = "0" if rows[k]["class"] == "1" else "1"
    a = _run(_loop(rows))
    b = _run(_loop(flipped))
    # Predictions up to and including event k were made before its label was learned.
    assert a[: k + 1] == b[: k + 1]
    # Later ones differ: the label was learned (so this check can fail).
    later = zip(a[k + 1 :], b[k + 1 :], strict=True)
    assert any(p.probabilities != q.probabilities for p, q in later)


def test_every_event_is_predicted_once_and_scored_once() -> None:
    rows = elec2_rows(300)
    loop = _loop(rows)
    preds = _run(loop)
    assert len(preds) == 300
    assert loop.score.n == 300
    assert loop.learner.events_learned == 300
    assert loop.events_handled == 300


def test_first_prediction_is_made_with_no_model() -> None:
    preds = _run(_loop(elec2_rows(8)))
    assert preds[0].label is None and preds[0].probabilities == {}
    assert preds[1].label is not None  # the warm-up learned the first event on its own
    # without the warm-up, the whole first micro-batch is predicted before any learning
    preds = _run(_loop(elec2_rows(8), warmup=0))
    assert all(p.label is None and p.probabilities == {} for p in preds)


def test_bad_records_are_counted_and_the_good_ones_learned() -> None:
    good = [{"id": str(i), "features": {"x": float(i % 7)}, "label": i % 2} for i in range(40)]
    values: list[Any] = [
        *good[:20],
        b"{not json",
        b"[1]",
        {"id": "x", "features": {"x": 1}, "label": [1]},
        *good[20:],
    ]
    values.append(json.dumps({"id": "y", "features": {"x": "text"}, "label": 1}).encode())
    loop = _loop(values)
    _run(loop)
    assert loop.rejected == 4
    assert loop.learner.events_learned == 40
    text = loop.metrics.exposition().decode()
    assert 'streamcl_rejected_events_total{reason="bad_json"} 1.0' in text
    assert 'streamcl_rejected_events_total{reason="type_mismatch"} 1.0' in text
    assert 'streamcl_events_total{outcome="rejected"} 4.0' in text


def test_kinds_fixed_earlier_in_the_same_read_reject_later_events() -> None:
    values: list[Any] = [
        {"id": "a", "features": {"x": 1.0, "c": "u"}, "label": 1},
        {"id": "b", "features": {"x": "text", "c": "u"}, "label": 1},  # x was a number
        {"id": "c", "features": {"x": 2.0, "c": "v"}, "label": 0},  # a's shape: kept
        {"id": "d", "features": {"x": 3, "c": "w"}, "label": 0},  # an int is a number too
        {"id": "e", "features": {"x": True, "c": "w"}, "label": 0},  # a boolean is not
        {"id": "f", "features": {"x": 4.0, "c": "w"}, "label": "1"},  # a's shape, str label
        {"id": "g", "features": {"c": 5.0, "x": 4.0}, "label": 1},  # c was a category
    ]
    loop = _loop(values)
    rejected: list[tuple[str, str, str]] = []
    loop.reject = lambda r, exc: rejected.append((json.loads(r.value)["id"], exc.reason, exc.field))
    assert len(_run(loop)) == 3
    assert rejected == [
        ("b", "type_mismatch", "features.x"),
        ("e", "type_mismatch", "features.x"),
        ("f", "type_mismatch", "label"),
        ("g", "type_mismatch", "features.c"),
    ]


def test_unlabelled_events_are_predicted_not_learned() -> None:
    values = [{"id": str(i), "features": {"x": float(i)}, "label": i % 2} for i in range(16)]
    values += [{"id": f"u{i}", "features": {"x": 1.0}} for i in range(16)]
    loop = _loop(values)
    preds = _run(loop)
    assert len(preds) == 32
    assert loop.learner.events_learned == 16
    assert loop.score.n == 16


def test_snapshot_is_published_after_each_step() -> None:
    loop = _loop(elec2_rows(64))
    versions = []
    assert loop.source is not None
    while not loop.source.exhausted:
        loop.step()
        versions.append(loop.snapshot.version)
    assert versions == sorted(versions) and versions[-1] == loop.learner.version > 0


def test_score_accuracy_window_and_kappa_temporal() -> None:
    score = PrequentialScore(window=4)
    labels = [1, 1, 0, 0, 1, 1]
    for y in labels:
        score.update(y, y)  # perfect predictions
    assert score.accuracy == 1.0 and score.window_accuracy == 1.0
    assert score.kappa_temporal == pytest.approx(1.0)
    nc = PrequentialScore(window=4)
    prev = None
    for y in labels:
        nc.update(prev, y)  # the no-change classifier itself
        prev = y
    assert nc.kappa_temporal == pytest.approx(0.0, abs=0.2)
    assert nc.kappa_temporal < score.kappa_temporal
    assert score.history == [(4, 1.0)]


@pytest.mark.parametrize("window", [1, 3, 50])
def test_batched_scores_follow_the_event_by_event_definitions(window: int) -> None:
    rng = random.Random(window)
    score, kappa = PrequentialScore(window=window), CohenKappa()
    predicted: list[Any] = []
    actual: list[Any] = []
    history: list[tuple[int, float]] = []
    for _ in range(40):  # batches of 0 to 2.5 windows
        n = rng.randint(0, max(2, 5 * window // 2))
        ys = [rng.choice([0, 1, 2, "a"]) for _ in range(n)]
        ps = [rng.choice([0, 1, 2, "a", None]) for _ in range(n)]
        right = score.update_many(ps, ys)
        assert right == sum(p == y for p, y in zip(ps, ys, strict=True))
        for p, y in zip(ps, ys, strict=True):
            predicted.append(p)
            actual.append(y)
            kappa.update(y, p)
            if len(actual) % window == 0:
                last = zip(predicted[-window:], actual[-window:], strict=True)
                history.append((len(actual), sum(p == y for p, y in last) / window))
        ok = [p == y for p, y in zip(predicted, actual, strict=True)]
        nc = [False] + [b == a for b, a in pairwise(actual)]
        assert score.n == len(actual)
        assert score.accuracy == (sum(ok) / len(ok) if ok else 0.0)
        assert score.no_change == (sum(nc) / len(nc) if nc else 0.0)
        if ok:
            assert score.window_accuracy == sum(ok[-window:]) / len(ok[-window:])
            assert score.window_no_change == sum(nc[-window:]) / len(nc[-window:])
        assert score.kappa == pytest.approx(kappa.get(), abs=1e-12)
        assert score.history == history
    assert len(history) >= 3


def test_ledger_batches_add_up_to_the_sum_of_id_hashes() -> None:
    ids = [f"ev-{i}" for i in range(500)]
    one, many = IdLedger(), IdLedger()
    for event_id in ids:
        one.add(event_id)
    for start in range(0, len(ids), 64):
        many.add_many(ids[start : start + 64])
    expected = sum(map(id_hash, ids)) % 2**64
    assert (one.count, one.total) == (many.count, many.total) == (500, expected)
    assert one.digest == many.digest == f"{expected:016x}"


def test_submitted_events_are_processed_by_the_loop() -> None:
    loop = _loop([])
    decoder = EventDecoder()
    events = [
        decoder.validate({"id": str(i), "features": {"x": i}, "label": i % 2}) for i in range(10)
    ]
    future = loop.submit(events)
    loop.step()
    assert len(future.result(timeout=1)) == 10
    assert loop.learner.events_learned == 10

"""kNN memory, prototypes and replay buffer: bounds, eviction policies, search, state."""

from __future__ import annotations

import numpy as np
import pytest

from streamcl.learning.memory import (
    KNNMemory,
    Prototypes,
    ReplayBuffer,
    batch_neighbours,
    knn_search,
)


def _blobs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = (rng.normal(size=(n, 4)) + 4.0 * y[:, None]).astype(np.float32)
    return x, y


@pytest.mark.parametrize("eviction", ["fifo", "reservoir", "class_balanced"])
def test_capacity_bound_holds(eviction: str) -> None:
    mem = KNNMemory(capacity=50, k=5, eviction=eviction)
    x, y = _blobs(400)
    for i in range(0, 400, 16):
        mem.add(x[i : i + 16], y[i : i + 16], time=i)
        assert mem.size <= 50
    assert mem.size == 50 and mem.seen == 400


def test_fifo_keeps_the_newest_entries() -> None:
    mem = KNNMemory(capacity=30, eviction="fifo")
    x, y = _blobs(100)
    for i in range(100):
        mem.add(x[i : i + 1], y[i : i + 1], time=i)
    assert sorted(mem.times[: mem.size].tolist()) == list(range(70, 100))


def test_class_balanced_keeps_a_rare_class() -> None:
    mem = KNNMemory(capacity=30, eviction="class_balanced")
    x, _ = _blobs(300)
    y = np.zeros(300, dtype=np.int64)
    y[::50] = 1  # 6 rare examples among 294 common ones
    for i in range(300):
        mem.add(x[i : i + 1], y[i : i + 1], time=i)
    assert int((mem.targets[: mem.size] == 1).sum()) == 6


def test_vote_predicts_the_nearest_blob() -> None:
    mem = KNNMemory(capacity=500, k=7)
    x, y = _blobs(300)
    mem.add(x, y, time=0)
    probs, nearest = mem.predict(np.array([[8.0, 8, 8, 8]], dtype=np.float32), n_classes=3)
    assert probs.shape == (1, 3) and probs.argmax() == 2
    assert abs(float(probs.sum()) - 1.0) < 1e-5 and nearest.shape == (1,)


def test_hnsw_beyond_threshold_finds_the_exact_neighbours() -> None:
    x, y = _blobs(600)
    mem = KNNMemory(capacity=1000, k=5, hnsw_threshold=200)
    for i in range(0, 600, 50):
        mem.add(x[i : i + 50], y[i : i + 50], time=i)
    assert mem._hnsw is not None
    q = x[:40] + 0.01
    _, approx = mem.search(q)
    _, exact = knn_search(np.ascontiguousarray(x), q, 5)
    recall = np.mean([len(set(a) & set(e)) / 5 for a, e in zip(approx, exact, strict=True)])
    assert recall >= 0.95


def test_forget_before_trims_old_entries_and_fifo_resumes() -> None:
    mem = KNNMemory(capacity=40, eviction="fifo")
    x, y = _blobs(100)
    for i in range(40):
        mem.add(x[i : i + 1], y[i : i + 1], time=i)
    assert mem.forget_before(30) == 30
    assert mem.size == 10 and mem.times[: mem.size].min() == 30
    for i in range(40, 100):
        mem.add(x[i : i + 1], y[i : i + 1], time=i)
    assert sorted(mem.times[: mem.size].tolist()) == list(range(60, 100))


def test_forget_before_keeps_the_newest_up_to_min_size() -> None:
    mem = KNNMemory(capacity=40)
    x, y = _blobs(20)
    mem.add(x, y, time=np.arange(20))
    assert mem.forget_before(18, min_size=5) == 15 and mem.size == 5
    assert sorted(mem.times[: mem.size].tolist()) == [15, 16, 17, 18, 19]
    assert mem.forget_before(19, min_size=3) == 2 and mem.size == 3


def test_per_row_times_let_a_trim_cut_inside_a_batch() -> None:
    mem = KNNMemory(capacity=40)
    replay = ReplayBuffer(capacity=40)
    x, y = _blobs(16)
    times = np.arange(100, 116)
    mem.add(x, y, time=times)
    replay.add(x, y.astype(np.float64), time=times)
    assert mem.forget_before(108) == 8 and replay.forget_before(108) == 8
    assert sorted(mem.times[: mem.size].tolist()) == list(range(108, 116))
    assert sorted(replay.times[: replay.size].tolist()) == list(range(108, 116))


def test_keys_grow_with_new_columns() -> None:
    mem = KNNMemory(capacity=10, k=2)
    mem.add(np.ones((3, 2), dtype=np.float32), np.array([0, 0, 1]), time=0)
    mem.add(np.ones((2, 5), dtype=np.float32), np.array([1, 1]), time=1)
    assert mem.width == 5 and np.all(mem.keys[:3, 2:] == 0)
    d, _ = mem.search(np.ones((1, 3), dtype=np.float32))
    assert d.shape == (1, 2)


@pytest.mark.parametrize("hnsw_threshold", [10_000, 50])
def test_knn_state_round_trip(hnsw_threshold: int) -> None:
    x, y = _blobs(300)
    a = KNNMemory(capacity=120, eviction="reservoir", hnsw_threshold=hnsw_threshold)
    a.add(x[:200], y[:200], time=0)
    b = KNNMemory(capacity=120, eviction="reservoir", hnsw_threshold=hnsw_threshold)
    b.load_state_dict(a.state_dict())
    for m in (a, b):
        m.add(x[200:], y[200:], time=1)
    assert np.array_equal(a.keys, b.keys) and np.array_equal(a.targets, b.targets)
    assert all(
        np.array_equal(u, v) for u, v in zip(a.search(x[:20]), b.search(x[:20]), strict=True)
    )


def test_empty_memory_search_raises() -> None:
    with pytest.raises(ValueError, match="empty"):
        KNNMemory().search(np.zeros((1, 2), dtype=np.float32))


def test_prototypes_predict_a_class_seen_once() -> None:
    protos = Prototypes(decay=0.99)
    x, y = _blobs(200)
    protos.learn(x[y < 2], y[y < 2], n_classes=2)
    protos.learn(np.full((1, 4), 8.0, dtype=np.float32), np.array([2]), n_classes=3)
    p = protos.predict(np.full((1, 4), 8.2, dtype=np.float32), n_classes=3)
    assert p.argmax() == 2 and abs(float(p.sum()) - 1.0) < 1e-5


def test_prototypes_give_zero_to_unseen_classes() -> None:
    protos = Prototypes()
    protos.learn(np.zeros((2, 3), dtype=np.float32), np.array([0, 0]), n_classes=1)
    p = protos.predict(np.zeros((1, 3), dtype=np.float32), n_classes=3)
    assert p[0, 0] == pytest.approx(1.0) and p[0, 1] == 0.0 and p[0, 2] == 0.0


@pytest.mark.parametrize("balanced", [False, True])
def test_replay_buffer_is_bounded_and_samples_stored_rows(balanced: bool) -> None:
    buf = ReplayBuffer(capacity=25, balanced=balanced, seed=1)
    x, y = _blobs(300)
    for i in range(0, 300, 10):
        buf.add(x[i : i + 10], y[i : i + 10])
        assert buf.size <= 25
    rx, ry = buf.sample(8, width=6)
    assert rx.shape == (8, 6) and np.all(rx[:, 4:] == 0)
    stored = {tuple(r) for r in buf.x[: buf.size].tolist()}
    assert all(tuple(r[:4]) in stored for r in rx.tolist())
    assert set(ry.tolist()) <= {0.0, 1.0, 2.0}


def test_class_balanced_replay_keeps_every_class() -> None:
    buf = ReplayBuffer(capacity=30, balanced=True)
    x, _ = _blobs(400)
    y = np.where(np.arange(400) % 40 == 0, 1, 0)
    buf.add(x, y)
    assert int((buf.y[: buf.size] == 1).sum()) >= 5


def test_replay_state_round_trip() -> None:
    x, y = _blobs(100)
    a = ReplayBuffer(capacity=20)
    a.add(x[:60], y[:60])
    b = ReplayBuffer(capacity=20)
    b.load_state_dict(a.state_dict())
    assert all(np.array_equal(u, v) for u, v in zip(a.sample(5, 4), b.sample(5, 4), strict=True))


def test_batch_neighbours_are_the_earlier_labelled_events_only() -> None:
    keys = np.arange(4, dtype=np.float32)[:, None]
    known = np.array([1.0, np.nan, 0.0, 1.0])
    d, t = batch_neighbours(keys, known)
    finite = np.isfinite(d)
    # event i sees j < i with a label: 0 sees nothing, 1 sees 0, 2 sees 0, 3 sees 0 and 2
    assert finite.tolist() == [
        [False, False, False, False],
        [True, False, False, False],
        [True, False, False, False],
        [True, False, True, False],
    ]
    assert d[3, 2] == 1.0 and d[3, 0] == 9.0 and t[3, 2] == 0.0 and t[3, 0] == 1.0


def test_knn_vote_reacts_inside_a_batch() -> None:
    """Memory says class 0 everywhere; a batch of class-1 events at a new place.

    Without the batch's own labels every event is voted 0; with them, each event after the
    first is voted 1 by its earlier, nearer batch neighbours -- and never by its own label.
    """
    mem = KNNMemory(capacity=100, k=5)
    rng = np.random.default_rng(0)
    mem.add(rng.normal(0, 1, (100, 2)).astype(np.float32), np.zeros(100), time=0)
    batch = (np.full((6, 2), 4.0) + rng.normal(0, 0.01, (6, 2))).astype(np.float32)
    alone, _ = mem.predict(batch, 2)
    assert (alone.argmax(1) == 0).all()
    votes, _ = mem.predict(batch, 2, batch_neighbours(batch, np.ones(6)))
    assert votes[0].argmax() == 0 and (votes[1:].argmax(1) == 1).all()


@pytest.mark.parametrize("query_width", [3, 5, 8])
def test_knn_search_equals_faiss_knn_on_padded_or_cut_queries(query_width: int) -> None:
    import faiss

    from streamcl.models.kernels import knn_search, pad_columns

    rng = np.random.default_rng(7)
    keys = rng.standard_normal((300, 5)).astype(np.float32)
    keys[100:120] = keys[0]  # ties: faiss orders them by row
    queries = rng.standard_normal((40, query_width))
    queries[:5, : min(5, query_width)] = keys[0, : min(5, query_width)]
    d, i = knn_search(keys, queries[:, ::1], 12)  # float64: converted
    q = np.ascontiguousarray(pad_columns(queries.astype(np.float32), 5)[:, :5])
    ref_d, ref_i = faiss.knn(q, keys, 12)
    assert np.array_equal(d, ref_d) and np.array_equal(i, ref_i)
    d2, i2 = knn_search(keys, q[:, :5][::2], 400)  # strided rows; k clipped to the keys
    assert d2.shape == (20, 300) and np.array_equal(i2[:, :12], ref_i[::2])

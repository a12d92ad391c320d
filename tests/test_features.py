"""Featurizer: a learning batch is standardised in statistics that include its features."""

from __future__ import annotations

import numpy as np

from streamcl.events import Event
from streamcl.learning.features import Featurizer


def _batch(values: list[float], start: int = 0) -> list[Event]:
    return [Event(id=str(start + i), features={"x": v}, label=0) for i, v in enumerate(values)]


def test_a_learning_batch_is_standardised_with_statistics_that_include_it() -> None:
    featurizer = Featurizer()
    first, second = [0.0, 1.0, 0.0, 1.0], [100.0, 102.0]
    batch = _batch(first)
    featurizer.transform(batch, learn=True)
    featurizer.learn(batch)
    x = featurizer.transform(_batch(second, 4), learn=True)[:, 0]
    seen = np.array(first + second)
    expected = (np.array(second) - seen.mean()) / seen.std()
    np.testing.assert_allclose(x, expected, rtol=1e-5)
    # without the batch in the statistics the rows would be (v - 0.5) / 0.5, about 200
    assert np.abs(x).max() < 2


def test_the_statistics_are_committed_by_learn_only() -> None:
    featurizer = Featurizer()
    warm = _batch([0.0, 1.0])
    featurizer.transform(warm, learn=True)
    featurizer.learn(warm)
    before = featurizer.view().means.copy()
    batch = _batch([5.0, 7.0], 2)
    once = featurizer.transform(batch, learn=True)
    twice = featurizer.transform(batch, learn=True)  # as the stream loop's held rows do
    np.testing.assert_array_equal(once, twice)
    np.testing.assert_array_equal(featurizer.view().means, before)  # serving: unchanged
    assert featurizer.batch_view().means[0] == np.mean([0.0, 1.0, 5.0, 7.0])
    featurizer.learn(batch[:1])  # a drift cut the batch: only its prefix is learned
    assert featurizer.view().means[0] == np.mean([0.0, 1.0, 5.0])
    np.testing.assert_array_equal(featurizer.batch_view().means, featurizer.view().means)


def test_a_first_batch_is_not_left_unscaled() -> None:
    """Before: the very first batch met empty statistics and every row was 0."""
    x = Featurizer().transform(_batch([1.0, 3.0]), learn=True)[:, 0]
    np.testing.assert_allclose(x, [-1.0, 1.0])


def test_the_view_kept_after_learn_is_the_one_view_would_build() -> None:
    featurizer = Featurizer(label_lags=2)
    rng = np.random.default_rng(0)
    for start in range(0, 40, 4):
        batch = [
            Event(id=str(start + i), features={"x": float(v), "c": "ab"[i % 2]}, label=i % 3)
            for i, v in enumerate(rng.normal(size=4))
        ]
        featurizer.transform(batch, learn=True)
        featurizer.learn(batch)
        assert featurizer._view is not None or start == 0  # kept once no lag column is new
        kept = featurizer.view()
        featurizer._view = None  # rebuilt from the committed statistics
        built = featurizer.view()
        assert kept.columns == built.columns and kept.recent_labels == built.recent_labels
        assert kept.lag_columns == built.lag_columns
        for a, b in [(kept.means, built.means), (kept.stds, built.stds)]:
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
        np.testing.assert_array_equal(kept.numeric, built.numeric)
        assert (kept.target_mean, kept.target_std) == (built.target_mean, built.target_std)
        assert kept.schema == built.schema

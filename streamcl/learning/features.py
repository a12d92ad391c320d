"""Featurize: events -> dense float32 matrices for the learner.

Numeric and boolean features are standardised with running means and variances (the
statistics of river's :class:`~river.preprocessing.StandardScaler`, updated a micro-batch
at a time with Chan et al.'s parallel formula instead of one dict per event; a learning
batch is scaled with statistics that already include its own features, as river's
``learn_one`` before ``transform_one`` would, see :meth:`Featurizer.transform`); string
features are one-hot encoded with river's ``name_value`` key convention. Columns are
discovered online: a new numeric feature or a new category appends a column, so the width
only grows.

Temporal augmentation (Bifet, A. et al. 2013, "Pitfalls in benchmarking data stream
classification and how to avoid them", ECML-PKDD): with ``label_lags = L > 0`` the last
``L`` labels received (in stream order) become inputs, one-hot per lag for classification
(``__lag{j}_{label}``) and standardised values for regression (``__lag{j}``). Inside a
micro-batch, event ``i`` sees the labels of events ``< i`` that arrived with their event
(they are known before ``i`` is predicted, see DESIGN.md), never its own label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from streamcl.events import Event, Label
from streamcl.models.schema import FeatureSchema, kind_of, mismatch
from streamcl.models.view import OTHER, FeatureView

__all__ = ["FeatureView", "Featurizer", "merge_moments"]


class Featurizer:
    """Online scaler, one-hot encoder and label-lag encoder with a growing column map.

    Parameters
    ----------
    max_categories
        Most distinct categories kept per string feature; later ones share the
        ``name_{OTHER}`` column so hostile input cannot grow the model without bound.
    max_columns
        Most columns in total; features first seen beyond it are ignored (and counted in
        :attr:`dropped_features`).
    label_lags
        Number of most recent labels fed as inputs (0: none).
    regression
        Labels are numbers: lags are standardised values, not one-hot columns.

    Attributes
    ----------
    columns : dict[str, int]
        Column index of each numeric feature name, one-hot ``name_value`` key and lag key.
    kinds : dict[str, str]
        ``"number"``, ``"category"`` or ``"boolean"`` per feature name, fixed when first seen.
    recent_labels : list
        The last ``label_lags`` labels received, most recent first.
    """

    def __init__(
        self,
        max_categories: int = 100,
        max_columns: int = 4_096,
        label_lags: int = 0,
        regression: bool = False,
    ) -> None:
        self.max_categories = max_categories
        self.max_columns = max_columns
        self.label_lags = label_lags
        self.regression = regression
        self._reset()

    def _reset(self) -> None:
        self.columns: dict[str, int] = {}
        self.kinds: dict[str, str] = {}
        self.numeric: list[str] = []
        self.n_categories: dict[str, int] = {}
        self.dropped_features = 0
        self.recent_labels: list[Label] = []
        # running statistics of the numeric features, aligned with self.numeric
        self._count = np.zeros(0)
        self._mean = np.zeros(0)
        self._m2 = np.zeros(0)
        # running statistics of a regression target (for its lags)
        self._target = np.zeros(3)
        self._view: FeatureView | None = None
        self._schema_cache: tuple[dict[str, str], int, FeatureSchema] | None = None
        self._columns_layout: (
            tuple[dict[str, int], np.ndarray, dict[tuple[int, Label | None], int]] | None
        ) = None
        # the last transform(learn=True): events, raw numeric block, its presence mask,
        # the statistics merged with it and the view they make (committed by learn())
        self._last: (
            tuple[
                Sequence[Event],
                np.ndarray,
                np.ndarray,
                tuple[np.ndarray, np.ndarray, np.ndarray],
                FeatureView,
            ]
            | None
        ) = None

    @property
    def n_columns(self) -> int:
        """Current width of the matrices :meth:`transform` returns."""
        return len(self.columns)

    def check(self, event: Event) -> None:
        """Check that every feature keeps the kind (number or category) it was first seen with.

        Raises
        ------
        DecodeError
            ``type_mismatch`` naming ``features.<name>``, e.g. a string where a number was.
        """
        for name, value in event.features.items():
            kind = self.kinds.get(name)
            if kind is not None and kind != kind_of(value):
                raise mismatch(name, kind, value)

    def transform(self, events: Sequence[Event], learn: bool = False) -> np.ndarray:
        """Encode events with the current statistics (and, learning, the batch's own).

        With ``learn`` the numeric features are standardised with running statistics that
        already include this batch's features -- as river's ``StandardScaler`` updated
        with ``learn_one`` before ``transform_one`` would -- so the first events of a
        stream and a shifted batch are not scaled by stale moments. Only features, never
        labels, enter the statistics, so test-then-train stays honest. The statistics are
        not committed until :meth:`learn` (which may get a prefix of the batch); the view
        used is :meth:`batch_view`.

        Parameters
        ----------
        events
            Events already passed by :meth:`check`; not mutated.
        learn
            Register new columns (and feature kinds) first. Serving uses :meth:`view`
            instead, so requests never change the model.

        Returns
        -------
        numpy.ndarray
            ``(len(events), n_columns)`` float32; a missing numeric feature is 0 (its mean).
        """
        if not learn:
            return self.view().transform(events)
        view = self.view()
        x, present, unknown = view.encode(events, report_unknown=True)
        if unknown:  # register new columns, then encode again with them
            for event in events:
                self._register(event.features)
            view = self.view()
            x, present = view.encode(events)
        # Standardise in statistics that include the batch's own (unlabelled) features;
        # learn() commits them, so transforming the same events twice gives the same rows.
        raw, given = x[:, view.numeric], present[:, view.numeric]
        moments = self._merged(raw, given)
        scaled = view.rescaled(moments[1], _std(moments))
        self._last = (events, raw, given, moments, scaled)
        return scaled.finish(x, present, events, (raw, given))

    def batch_view(self) -> FeatureView:
        """The view the last ``transform(learn=True)`` standardised with.

        Its statistics include that batch's features (see :meth:`transform`); before any
        such transform, or once :meth:`learn` has committed it, the same as :meth:`view`.
        """
        last = self._last
        return self.view() if last is None else last[4]

    def view(self) -> FeatureView:
        """An immutable view of the current statistics, columns and recent labels."""
        if self._view is None:
            idx, lag_cols = self._layout()
            tmean, tstd = self._target_stats()
            self._view = FeatureView(
                self.columns,
                idx,
                self._mean.copy(),
                _std((self._count, self._mean, self._m2)),
                self.label_lags,
                self.regression,
                lag_cols,
                tuple(self.recent_labels),
                tmean,
                tstd,
                self._schema(),
            )
        return self._view

    def _schema(self) -> FeatureSchema:
        """The views' schema, cached by the identity and size of :attr:`kinds` (it only grows)."""
        c = self._schema_cache
        if c is None or c[0] is not self.kinds or c[1] != len(self.kinds):
            c = self._schema_cache = (
                self.kinds,
                len(self.kinds),
                FeatureSchema.from_kinds(self.kinds),
            )
        return c[2]

    def _layout(self) -> tuple[np.ndarray, dict[tuple[int, Label | None], int]]:
        """Numeric column indices (read-only int64) and lag columns, for :meth:`view`.

        Cached until :attr:`columns` changes: it is replaced (copy on write), never mutated,
        and together with :attr:`numeric`, so its identity is the cache key.
        """
        if self._columns_layout is None or self._columns_layout[0] is not self.columns:
            idx = np.array([self.columns[n] for n in self.numeric], dtype=np.int64)
            idx.flags.writeable = False
            lag_cols: dict[tuple[int, Label | None], int] = {}
            for key, col in self.columns.items():
                if key.startswith("__lag"):
                    j, _, rest = key[5:].partition("_")
                    lag_cols[(int(j), None if self.regression else _label_of(rest))] = col
            self._columns_layout = (self.columns, idx, lag_cols)
        return self._columns_layout[1], self._columns_layout[2]

    def _target_stats(self) -> tuple[float, float]:
        n, mean, m2 = self._target.tolist()  # Python floats: the same IEEE arithmetic, faster
        return mean, math.sqrt(m2 / n) if n > 1 and m2 > 0 else 1.0

    def learn(self, events: Sequence[Event]) -> None:
        """Update the running statistics and the recent labels with ``events``.

        Called after the events were predicted.
        """
        batch_view = None
        if self.numeric:
            last = self._last
            if last is not None and last[0] is events and last[1].shape[1] == len(self.numeric):
                self._count, self._mean, self._m2 = last[3]  # what transform() merged
                batch_view = last[4]
            else:
                x, present = self._raw(events)
                self._count, self._mean, self._m2 = self._merged(x, present)
        self._last = None
        labels = [e.label for e in events if e.label is not None]
        if self.label_lags and labels:
            if self.regression:
                self._update_target(np.array(labels, dtype=np.float64))
            else:
                for j in range(1, self.label_lags + 1):
                    for label in labels:
                        key = f"__lag{j}_{label!r}"
                        if key not in self.columns:
                            self._add_column(key, key, 0.0)
            self.recent_labels = (labels[::-1] + self.recent_labels)[: self.label_lags]
        self._view = None
        if batch_view is not None and batch_view.columns is self.columns and not self.regression:
            # view() of the statistics just committed (the batch view's), with the new labels
            self._view = batch_view.relabelled(tuple(self.recent_labels))

    def _raw(self, events: Sequence[Event]) -> tuple[np.ndarray, np.ndarray]:
        """Raw numeric values ``(batch, n_numeric)`` float64 and their presence mask."""
        pos = {name: j for j, name in enumerate(self.numeric)}
        x = np.zeros((len(events), len(pos)))
        present = np.zeros(x.shape, dtype=bool)
        for i, event in enumerate(events):
            for name, value in event.features.items():
                j = pos.get(name)
                if j is not None and not isinstance(value, str):
                    x[i, j] = float(value)
                    present[i, j] = True
        return x, present

    def _merged(
        self, x: np.ndarray, present: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Running ``(count, mean, M2)`` (each ``(n_numeric,)`` float64) with rows ``x`` folded in.

        Chan et al. 1979's parallel update; ``present`` masks missing values. Pure: the
        featurizer's own statistics are left unchanged.
        """
        # np.add.reduce: what ndarray.sum calls, without its Python wrapper
        if len(x) and present.all():  # the usual batch: the same arithmetic, unmasked
            n_b = np.full(x.shape[1], float(len(x)))
            mean_b = np.add.reduce(x, 0) / n_b
            m2_b = np.add.reduce((x - mean_b) ** 2, 0)
            n = self._count + n_b
            frac = n_b / n
        else:
            n_b = np.add.reduce(present, 0).astype(np.float64)
            sum_b = np.add.reduce(np.where(present, x, 0.0), 0)
            mean_b = np.divide(sum_b, n_b, out=np.zeros_like(sum_b), where=n_b > 0)
            m2_b = np.add.reduce(np.where(present, x - mean_b, 0.0) ** 2, 0)
            n = self._count + n_b
            frac = np.divide(n_b, n, out=np.zeros_like(n), where=n > 0)
        delta = mean_b - self._mean
        return n, self._mean + delta * frac, self._m2 + m2_b + delta**2 * self._count * frac

    def _update_target(self, y: np.ndarray) -> None:
        self._target = merge_moments(self._target, y)
        if self.label_lags:
            for j in range(1, self.label_lags + 1):
                if f"__lag{j}" not in self.columns:
                    self._add_column(f"__lag{j}", f"__lag{j}", 0.0)

    def _register(self, features: dict[str, Any]) -> None:
        """Add columns for unseen features or categories, in sorted key order.

        So the column layout does not depend on the order of a dict's keys.
        """
        new: list[tuple[str, str, Any]] = []
        for name, value in features.items():
            if isinstance(value, str):
                key = f"{name}_{value}"
                if (
                    key not in self.columns
                    and self.n_categories.get(name, 0) >= self.max_categories
                ):
                    key = f"{name}_{OTHER}"
            else:
                key = name
            if key not in self.columns:
                new.append((key, name, value))
        for key, name, value in sorted(new, key=lambda t: t[0]):
            if key not in self.columns:
                self._add_column(key, name, value)

    def _add_column(self, key: str, name: str, value: Any) -> int | None:
        if self.n_columns >= self.max_columns:
            self.dropped_features += 1
            return None
        self.kinds.setdefault(name, kind_of(value))
        # Copy on write: views handed out earlier keep the mapping they were built with.
        self.columns = {**self.columns, key: self.n_columns}
        if isinstance(value, str):
            self.n_categories[name] = self.n_categories.get(name, 0) + 1
        elif not key.startswith("__lag"):
            self.numeric.append(key)
            self._count = np.append(self._count, 0.0)
            self._mean = np.append(self._mean, 0.0)
            self._m2 = np.append(self._m2, 0.0)
        self._view = None
        return self.columns[key]

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able state (no pickled objects), for checkpoints."""
        var = np.where(self._count > 0, self._m2 / np.maximum(self._count, 1), 0.0)
        return {
            "columns": dict(self.columns),
            "kinds": dict(self.kinds),
            "numeric": list(self.numeric),
            "n_categories": dict(self.n_categories),
            "means": dict(zip(self.numeric, self._mean.tolist(), strict=True)),
            "vars": dict(zip(self.numeric, var.tolist(), strict=True)),
            "counts": dict(zip(self.numeric, self._count.tolist(), strict=True)),
            "dropped_features": self.dropped_features,
            "recent_labels": list(self.recent_labels),
            "target": self._target.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self._reset()
        self.columns = {str(k): int(v) for k, v in state["columns"].items()}
        self.kinds = dict(state["kinds"])
        self.numeric = list(state["numeric"])
        self.n_categories = dict(state["n_categories"])
        self._count = np.array([state["counts"].get(n, 0.0) for n in self.numeric], dtype=float)
        self._mean = np.array([state["means"].get(n, 0.0) for n in self.numeric], dtype=float)
        var = np.array([state["vars"].get(n, 0.0) for n in self.numeric], dtype=float)
        self._m2 = var * self._count
        self.dropped_features = int(state["dropped_features"])
        self.recent_labels = list(state.get("recent_labels", []))
        self._target = np.array(state.get("target", [0.0, 0.0, 0.0]), dtype=float)


def _std(moments: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Standard deviations ``(n_numeric,)`` float64 of ``(count, mean, M2)``; 0 if unseen."""
    count, _, m2 = moments
    return np.sqrt(np.where(count > 0, m2 / np.maximum(count, 1), 0.0))  # type: ignore[no-any-return]


def _label_of(text: str) -> Label:
    """Inverse of ``repr`` for int and str labels (lag column keys)."""
    if text.startswith(("'", '"')):
        return text[1:-1]
    return int(text)


def merge_moments(moments: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fold a batch into running ``[n, mean, M2]`` (Chan et al. 1979 parallel update).

    Parameters
    ----------
    moments
        ``(3,)`` float64: count, mean and sum of squared deviations so far.
    y
        ``(n,)`` new values (n >= 1).

    Returns
    -------
    numpy.ndarray
        ``(3,)`` float64 moments including ``y``; the variance is ``M2 / n``.
    """
    n0, mean0, m20 = moments
    n_b, mean_b = len(y), float(y.mean())
    n = n0 + n_b
    delta = mean_b - mean0
    return np.array(
        [
            n,
            mean0 + delta * n_b / n,
            m20 + float(((y - mean_b) ** 2).sum()) + delta**2 * n0 * n_b / n,
        ]
    )

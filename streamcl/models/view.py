"""The frozen feature view: columns, scaler statistics and recent labels, for prediction.

The learner's :class:`~streamcl.learning.features.Featurizer` builds one per published
snapshot; a model version stores it, and serving threads only read it. The transform is
the featurizer's (standardised numbers, one-hot strings with river's ``name_value`` keys,
label lags) without any learning.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from typing import Any, Literal, overload

import numpy as np

from streamcl.events import Event, Label
from streamcl.models.schema import FeatureSchema

__all__ = ["OTHER", "FeatureView"]

#: The shared column of a string feature's categories beyond the cap.
OTHER = "__other__"

#: Feature value types encoded as numbers (``float(value)``); see :meth:`FeatureView.encode`.
_NUMBER_TYPES = frozenset({float, int, bool})


class FeatureView:
    """Frozen featurizer state: columns, scaler statistics and the most recent labels.

    The loop builds one per published snapshot; serving threads only read it.

    Parameters
    ----------
    columns
        Column index of each numeric name, one-hot key and lag key; never mutated.
    numeric
        ``(n_numeric,)`` int64 column indices of the numeric features.
    means, stds
        ``(n_numeric,)`` float64 running mean and standard deviation of each.
    label_lags
        Number of label lags.
    regression
        Lags are standardised numbers (``lag_columns`` keyed ``(j, None)``).
    lag_columns
        ``{(lag j >= 1, label): column}`` (label None for regression).
    recent_labels
        Labels received before the first event to transform, most recent first.
    target_mean, target_std
        Running statistics of a regression target, for its lags.
    schema
        The learned feature kinds, which serving checks inputs against.
    """

    def __init__(
        self,
        columns: dict[str, int],
        numeric: np.ndarray,
        means: np.ndarray,
        stds: np.ndarray,
        label_lags: int = 0,
        regression: bool = False,
        lag_columns: dict[tuple[int, Label | None], int] | None = None,
        recent_labels: tuple[Label, ...] = (),
        target_mean: float = 0.0,
        target_std: float = 1.0,
        schema: FeatureSchema | None = None,
    ) -> None:
        self.columns = columns
        self.numeric = numeric
        self.means = means
        self.stds = stds
        self.label_lags = label_lags
        self.regression = regression
        self.lag_columns = lag_columns or {}
        self.recent_labels = recent_labels
        self.target_mean = target_mean
        self.target_std = target_std
        self.schema = schema if schema is not None else FeatureSchema()

    @property
    def n_columns(self) -> int:
        """Width of the matrices :meth:`transform` returns."""
        return len(self.columns)

    def transform(self, events: Sequence[Event]) -> np.ndarray:
        """``(len(events), n_columns)`` float32; unknown features and categories are ignored.

        Lag columns of event ``i`` hold the labels of the events before it (earlier events
        of ``events`` that carry a label, then :attr:`recent_labels`); never its own.
        """
        x, present = self.encode(events)
        return self.finish(x, present, events)

    @overload
    def encode(self, events: Sequence[Event]) -> tuple[np.ndarray, np.ndarray]: ...

    @overload
    def encode(
        self, events: Sequence[Event], report_unknown: Literal[True]
    ) -> tuple[np.ndarray, np.ndarray, bool]: ...

    def encode(self, events: Sequence[Event], report_unknown: bool = False) -> Any:
        """Raw values ``(len(events), n_columns)`` float64 and where a value was given (bool).

        With ``report_unknown``, a third item tells whether any feature had no column.
        """
        fast = self._encode_numbers(events)
        if fast is not None:
            return (*fast, False) if report_unknown else fast
        unknown = False
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        get = self.columns.get
        for i, event in enumerate(events):
            for name, value in event.features.items():
                if value.__class__ is str:
                    col = get(f"{name}_{value}")
                    if col is None:
                        col = get(f"{name}_{OTHER}")
                    val = 1.0
                else:
                    col, val = get(name), float(value)
                if col is not None:
                    rows.append(i)
                    cols.append(col)
                    vals.append(val)
                else:
                    unknown = True
        x = np.zeros((len(events), self.n_columns), dtype=np.float64)
        x[rows, cols] = vals
        present = np.zeros(x.shape, dtype=bool)
        present[rows, cols] = True
        return (x, present, unknown) if report_unknown else (x, present)

    def _encode_numbers(self, events: Sequence[Event]) -> tuple[np.ndarray, np.ndarray] | None:
        """:meth:`encode` of the usual micro-batch, a block at a time; None for any other.

        The usual batch: every event has the same known numeric features, in the same
        order. Its values are converted by one ``np.array`` call (``float(v)`` for each,
        as the per-feature loop does); strings, unknown features or differing feature sets
        (None) go through that loop.
        """
        if not events:
            return None
        features = [e.features for e in events]
        names = tuple(features[0])
        # map and chain run the loops in C: ~3 us less a micro-batch than generators
        if not all(map(names.__eq__, map(tuple, features))):
            return None
        values = list(chain.from_iterable(map(dict.values, features)))
        if not _NUMBER_TYPES.issuperset(map(type, values)):
            return None
        get = self.columns.get
        cols = [get(name, -1) for name in names]
        if -1 in cols:  # a feature without a column
            return None
        x = np.zeros((len(events), self.n_columns), dtype=np.float64)
        x[:, cols] = np.array(values, dtype=np.float64).reshape(len(events), len(names))
        present = np.zeros(x.shape, dtype=bool)
        present[:, cols] = True
        return x, present

    def rescaled(self, means: np.ndarray, stds: np.ndarray) -> FeatureView:
        """The same view with other scaler statistics (``(n_numeric,)`` float64 each)."""
        view = self._copy()
        view.means, view.stds = means, stds
        return view

    def relabelled(self, recent_labels: tuple[Label, ...]) -> FeatureView:
        """The same view with other :attr:`recent_labels` (most recent first)."""
        view = self._copy()
        view.recent_labels = recent_labels
        return view

    def _copy(self) -> FeatureView:
        """A shallow copy (``copy.copy`` costs ~1 us more: it goes through ``__reduce_ex__``)."""
        cls = self.__class__
        view = cls.__new__(cls)
        view.__dict__.update(self.__dict__)
        return view

    def finish(
        self,
        x: np.ndarray,
        present: np.ndarray,
        events: Sequence[Event],
        numeric: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Standardise the numeric columns of :meth:`encode`'s output, add label lags.

        ``numeric``: ``x`` and ``present`` at the numeric columns, if already taken.
        """
        if len(self.numeric):
            raw, given = numeric or (x[:, self.numeric], present[:, self.numeric])
            block = (raw - self.means) / np.where(self.stds > 0, self.stds, 1.0)
            # a constant feature (deviation 0) and a missing value are both 0
            x[:, self.numeric] = np.where(given & (self.stds != 0), block, 0.0)
        if self.label_lags and self.lag_columns:
            self._lags(events, x)
        return x.astype(np.float32)

    def _lags(self, events: Sequence[Event], x: np.ndarray) -> None:
        recent = list(self.recent_labels)
        get = self.lag_columns.get
        for i, event in enumerate(events):
            for j, label in enumerate(recent[: self.label_lags], start=1):
                if self.regression:
                    col = get((j, None))
                    val = (float(label) - self.target_mean) / self.target_std
                else:
                    col, val = get((j, label)), 1.0
                if col is not None:
                    x[i, col] = val
            if event.label is not None:  # known before the next event is predicted
                recent.insert(0, event.label)

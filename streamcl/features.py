"""Featurize: events -> dense float32 matrices for the learner.

Numeric and boolean features are standardised with river's online
:class:`river.preprocessing.StandardScaler`; string features are one-hot encoded with
river's :class:`river.preprocessing.OneHotEncoder`. Columns are discovered online: a new
numeric feature or a new category appends a column, so the width only grows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from river import preprocessing

from streamcl.errors import DecodeError
from streamcl.events import Event

__all__ = ["Featurizer"]

OTHER = "__other__"


class Featurizer:
    """Online scaler and one-hot encoder with a growing column map.

    Parameters
    ----------
    max_categories
        Most distinct categories kept per string feature; later ones share the
        ``name_{OTHER}`` column so hostile input cannot grow the model without bound.
    max_columns
        Most columns in total; features first seen beyond it are ignored (and counted in
        :attr:`dropped_features`).

    Attributes
    ----------
    columns : dict[str, int]
        Column index of each numeric feature name and each one-hot ``name_value`` key.
    kinds : dict[str, str]
        ``"number"`` or ``"category"`` for each feature name, fixed when first seen.
    """

    def __init__(self, max_categories: int = 100, max_columns: int = 4_096) -> None:
        self.max_categories = max_categories
        self.max_columns = max_columns
        self._reset()

    def _reset(self) -> None:
        self.scaler = preprocessing.StandardScaler()
        self.encoder = preprocessing.OneHotEncoder()
        self.columns: dict[str, int] = {}
        self.kinds: dict[str, str] = {}
        self.numeric: list[str] = []
        self.n_categories: dict[str, int] = {}
        self.dropped_features = 0

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
            if kind is not None and kind != _kind(value):
                raise DecodeError(
                    "type_mismatch", f"features.{name}", f"expected a {kind}, got {value!r}"
                )

    def transform(self, events: Sequence[Event], learn: bool = False) -> np.ndarray:
        """Encode events with the current statistics.

        Parameters
        ----------
        events
            Events already passed by :meth:`check`.
        learn
            Register new columns (and feature kinds) first. Serving uses :meth:`view`
            instead, so requests never change the model.

        Returns
        -------
        numpy.ndarray
            ``(len(events), n_columns)`` float32; a missing numeric feature is 0 (its mean).
        """
        if learn:
            for event in events:
                self._register(event.features)
        return self.view().transform(events)

    def view(self) -> FeatureView:
        """An immutable view of the current statistics and columns, safe to share."""
        num = np.array([self.columns[n] for n in self.numeric], dtype=np.int64)
        means = np.array([self.scaler.means.get(n, 0.0) for n in self.numeric])
        stds = np.sqrt(np.array([self.scaler.vars.get(n, 0.0) for n in self.numeric]))
        return FeatureView(self.columns, num, means, stds)

    def learn(self, events: Sequence[Event]) -> None:
        """Update the running statistics with ``events`` (after they were predicted)."""
        for event in events:
            numbers = {k: float(v) for k, v in event.features.items() if not isinstance(v, str)}
            if numbers:
                self.scaler.learn_one(numbers)

    def _register(self, features: dict[str, Any]) -> None:
        for name, value in features.items():
            if isinstance(value, str):
                key = next(iter(self.encoder.transform_one({name: value})))
                if (
                    key not in self.columns
                    and self.n_categories.get(name, 0) >= self.max_categories
                ):
                    key = f"{name}_{OTHER}"
            else:
                key = name
            if key not in self.columns:
                self._add_column(key, name, value)

    def _add_column(self, key: str, name: str, value: Any) -> int | None:
        if self.n_columns >= self.max_columns:
            self.dropped_features += 1
            return None
        self.kinds.setdefault(name, _kind(value))
        # Copy on write: views handed out earlier keep the mapping they were built with.
        self.columns = {**self.columns, key: self.n_columns}
        if isinstance(value, str):
            self.n_categories[name] = self.n_categories.get(name, 0) + 1
        else:
            self.numeric.append(key)
        return self.columns[key]

    def state_dict(self) -> dict[str, Any]:
        """Plain JSON-able state (no pickled objects), for checkpoints."""
        return {
            "columns": self.columns,
            "kinds": self.kinds,
            "numeric": self.numeric,
            "n_categories": self.n_categories,
            "means": dict(self.scaler.means),
            "vars": dict(self.scaler.vars),
            "counts": dict(self.scaler.counts),
            "dropped_features": self.dropped_features,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        self._reset()
        self.columns = {str(k): int(v) for k, v in state["columns"].items()}
        self.kinds = dict(state["kinds"])
        self.numeric = list(state["numeric"])
        self.n_categories = dict(state["n_categories"])
        self.scaler.means.update(state["means"])
        self.scaler.vars.update(state["vars"])
        self.scaler.counts.update(state["counts"])
        self.dropped_features = int(state["dropped_features"])


def _kind(value: Any) -> str:
    return "category" if isinstance(value, str) else "number"


class FeatureView:
    """Frozen featurizer state: the column map and the scaler's means and deviations.

    The loop builds one per published snapshot; serving threads only read it.

    Parameters
    ----------
    columns
        Column index of each numeric name and one-hot key; never mutated after this.
    numeric
        ``(n_numeric,)`` int64 column indices of the numeric features.
    means, stds
        ``(n_numeric,)`` float64 running mean and standard deviation of each.
    """

    def __init__(
        self, columns: dict[str, int], numeric: np.ndarray, means: np.ndarray, stds: np.ndarray
    ) -> None:
        self.columns = columns
        self.numeric = numeric
        self.means = means
        self.stds = stds

    @property
    def n_columns(self) -> int:
        """Width of the matrices :meth:`transform` returns."""
        return len(self.columns)

    def transform(self, events: Sequence[Event]) -> np.ndarray:
        """``(len(events), n_columns)`` float32; unknown features and categories are ignored."""
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []
        get = self.columns.get
        for i, event in enumerate(events):
            for name, value in event.features.items():
                if isinstance(value, str):
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
        x = np.zeros((len(events), self.n_columns), dtype=np.float64)
        x[rows, cols] = vals
        if len(self.numeric):
            present = np.zeros(x.shape, dtype=bool)
            present[rows, cols] = True
            block = (x[:, self.numeric] - self.means) / np.where(self.stds > 0, self.stds, 1.0)
            block[:, self.stds == 0] = 0.0
            x[:, self.numeric] = np.where(present[:, self.numeric], block, 0.0)
        return x.astype(np.float32)

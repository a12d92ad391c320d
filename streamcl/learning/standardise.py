"""Keeping stored rows comparable while the featurizer's running scaler moves.

kNN keys (input space), replay rows and prototypes are standardised with the running means
and deviations of the time they were stored. When those statistics move, the stored numeric
columns are mapped exactly to the current scale, ``x' = (x s_old + m_old - m) / s``, so an
entry stored long ago is still found where an equal input lands today (a class that
returns after a long absence is recognised).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streamcl.learning.features import FeatureView
from streamcl.learning.memory import KNNMemory
from streamcl.learning.prototypes import Prototypes
from streamcl.learning.rehearsal import ReplayBuffer
from streamcl.learning.tree import WindowTree

__all__ = ["Scale", "restandardise"]

#: Up to this many numeric columns, the unmoved scale is recognised in Python floats.
_FEW = 16

#: ``(numeric column indices, means, standard deviations)`` the stored rows are in.
Scale = tuple[np.ndarray, np.ndarray, np.ndarray]


def restandardise(
    space: Scale | None,
    view: FeatureView,
    memories: Sequence[KNNMemory],
    replay: ReplayBuffer,
    prototypes: Prototypes | None,
    tree: WindowTree | None = None,
    tolerance: float = 0.02,
) -> Scale:
    """Map stored rows from ``space`` to ``view``'s scale if it moved enough.

    Moved means by more than ``tolerance`` in relative deviation or in mean shift (in
    deviations). Returns the scale the rows are in afterwards. ``memories`` are the kNN
    memories whose keys are inputs (none when they are embeddings).
    """
    if space is None:
        return _scale_of(view)
    o_idx, o_mean, o_std = space
    k = len(o_idx)
    mean, std = view.means[:k], view.stds[:k]
    if k <= _FEW and _unmoved(
        o_mean.tolist(), o_std.tolist(), mean.tolist(), std.tolist(), tolerance
    ):
        return space
    valid = (o_std > 0) & (std > 0)
    if not valid.any():
        return _scale_of(view)
    if not valid.all():
        o_mean, o_std, mean, std = o_mean[valid], o_std[valid], mean[valid], std[valid]
    ratio = o_std / std
    shift = (o_mean - mean) / std
    # ufunc reductions (ndarray.max's Python wrapper costs more than the work): this check
    # runs every micro-batch
    big = np.maximum.reduce
    if big(np.abs(ratio - 1)) < tolerance and big(np.abs(shift)) < tolerance:
        return space
    current = _scale_of(view)
    cols = o_idx[valid]
    scale, offset = ratio.astype(np.float32), shift.astype(np.float32)
    for knn in memories:
        if knn.size:
            _affine(knn.keys[: knn.size], cols, scale, offset)
            knn.rebuild()
    if replay.size:
        _affine(replay.x[: replay.size], cols, scale, offset)
    if prototypes is not None and len(prototypes.counts):
        _affine(prototypes.means, cols, scale, offset)
    if tree is not None:
        tree.rescale(cols, scale, offset)
    return current


def _unmoved(
    o_mean: list[float], o_std: list[float], mean: list[float], std: list[float], tolerance: float
) -> bool:
    """The check below in Python floats (the same IEEE operations) for a few columns.

    True when some column has both deviations positive and every such column moved less
    than ``tolerance``; a NaN fails ``<`` here as it fails the ufunc maximum's test.
    """
    valid = False
    for om, os_, m, sd in zip(o_mean, o_std, mean, std, strict=True):
        if os_ > 0 and sd > 0:
            if not (abs(os_ / sd - 1) < tolerance and abs((om - m) / sd) < tolerance):
                return False
            valid = True
    return valid


def _scale_of(view: FeatureView) -> Scale:
    """Copies of ``view``'s numeric columns, means and deviations."""
    return view.numeric.copy(), view.means.copy(), view.stds.copy()


def _affine(rows: np.ndarray, cols: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> None:
    """``rows[:, cols] = rows[:, cols] * scale + offset`` in place, for columns it has."""
    keep = cols < rows.shape[1]
    c = cols[keep]
    rows[:, c] = rows[:, c] * scale[keep] + offset[keep]

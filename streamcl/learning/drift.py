"""Task-free drift detection with river's detectors, a drift log, and checkpointable state.

Two signals are watched, with no task labels:

* loss drift: a detector (ADWIN by default; KSWIN or Page-Hinkley by setting) on the
  prequential error stream, the 0/1 error of the combined prediction (classification) or
  the absolute error in target standard deviations (regression), one value per labelled
  event; only an *increase* of the error counts (a learner getting better is no drift);
* input drift: Page-Hinkley on the distance from each event to its nearest kNN-memory
  entry, divided by its running mean (scale-free, capped at 20), so inputs moving away
  from everything remembered raise an alarm before labels do.

Each drift appends a :class:`DriftRecord` to a bounded log; the learner counts it in a
metric and takes the configured actions.

References
----------
Bifet, A. & Gavalda, R. (2007). Learning from time-changing data with adaptive windowing.
    SDM 2007. (ADWIN)
Raab, C., Heusinger, M. & Schleif, F.-M. (2020). Reactive soft prototype computing for
    concept drift streams. Neurocomputing 416. (KSWIN)
Page, E. S. (1954). Continuous inspection schemes. Biometrika 41. (Page-Hinkley)
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from river import drift

from streamcl.learning.detectors import (
    adwin_until,
    detector_state,
    load_detector,
    make_detector,
    page_hinkley_until,
)

__all__ = [
    "DriftMonitor",
    "DriftRecord",
    "bernoulli_split",
    "detector_state",
    "load_detector",
    "make_detector",
    "split_means",
]


def split_means(seq: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Means before and after every split of a sequence, for CUSUM-like change points.

    Parameters
    ----------
    seq
        ``(n,)`` float values in arrival order (losses or 0/1 errors), ``n >= 2``.

    Returns
    -------
    s, before, after, weight : numpy.ndarray
        Each ``(n - 1,)``: the number of values before the split, their mean, the mean of
        the rest, and ``s (n - s) / n``, the weight of the mean difference at that split
        (Page 1954's CUSUM, in the two-sample form used for change-point location).
    """
    n = len(seq)
    cum = np.cumsum(seq)
    s = np.arange(1, n)
    before = cum[:-1] / s
    after = (cum[-1] - cum[:-1]) / (n - s)
    return s, before, after, s * (n - s) / n


def bernoulli_split(seq: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Log-likelihood gain of every split of a 0/1 sequence into two Bernoulli segments.

    The maximum-likelihood change point of a sequence of Bernoulli trials (Hinkley, D. V.
    & Hinkley, E. A. 1970, Inference about the change-point in a sequence of binomial
    variables, Biometrika 57(3)). Unlike the mean-difference weight of :func:`split_means`,
    it is sharp when one segment is nearly constant (an accuracy near 1 before a drift).

    Parameters
    ----------
    seq
        ``(n,)`` values in ``[0, 1]`` in arrival order (0/1 correctness or errors), ``n >= 2``.

    Returns
    -------
    s, before, after, gain : numpy.ndarray
        Each ``(n - 1,)``: the number of values before the split, their mean, the mean of
        the rest, and the gain in log-likelihood (nats) of two segments over one.
    """
    s, before, after, _ = split_means(seq)
    n = len(seq)

    def cost(p: np.ndarray, m: np.ndarray | int) -> np.ndarray:
        """``m`` times the binary entropy of ``p`` (nats): the segment's negative log-likelihood."""
        q = np.clip(p, 1e-12, 1 - 1e-12)
        out: np.ndarray = -m * (q * np.log(q) + (1 - q) * np.log(1 - q))
        return out

    whole = cost(np.array(float(np.mean(seq))), n)
    return s, before, after, whole - cost(before, s) - cost(after, n - s)


@dataclass(frozen=True)
class DriftRecord:
    """One detected drift.

    Attributes
    ----------
    time : float
        Wall-clock time of detection, epoch seconds.
    event : int
        Events seen by the learner when it fired (a stream offset).
    event_id : str
        Id of the event that triggered it.
    detector : str
        ``"loss"`` or ``"input"``, with the river detector in ``kind``.
    kind : str
        ``"adwin"``, ``"kswin"`` or ``"page_hinkley"``.
    statistic : float
        The detector's estimate after the drift (ADWIN: mean error of the kept window).
    window : int
        Events in the detector's window after the drift (ADWIN); 0 for the others.
    """

    time: float
    event: int
    event_id: str
    detector: str
    kind: str
    statistic: float
    window: int


class DriftMonitor:
    """Loss and input drift detectors, the drift log and its counters.

    Parameters
    ----------
    detector
        Loss detector kind, or ``"none"``.
    delta
        ADWIN confidence.
    input_detector
        ``"knn_distance"`` (Page-Hinkley on nearest-memory distance) or ``"none"``.
    log_size
        Most recent :class:`DriftRecord` kept.
    seed
        Seed of KSWIN's sampling.
    clock
        ADWIN: updates between checks for a change (see :func:`make_detector`).

    Attributes
    ----------
    log : collections.deque[DriftRecord]
        Recent drifts, oldest first.
    counts : dict[str, int]
        Drifts detected since start, per detector (``"loss"``, ``"input"``).
    """

    def __init__(
        self,
        detector: str = "adwin",
        delta: float = 0.002,
        input_detector: str = "knn_distance",
        log_size: int = 100,
        seed: int = 0,
        clock: int = 1,
    ) -> None:
        self.detector = detector
        self.delta = delta
        self.input_detector = input_detector
        self.log_size = log_size
        self.seed = seed
        self.clock = clock
        self._reset()

    #: Errors kept to judge a detection (ADWIN's dropped part is compared up to this many).
    history = 20_000

    def _reset(self) -> None:
        self.loss_det = (
            None
            if self.detector == "none"
            else make_detector(self.detector, self.delta, self.seed, self.clock)
        )
        self.input_det = None if self.input_detector == "none" else make_detector("page_hinkley")
        self.log: deque[DriftRecord] = deque(maxlen=self.log_size)
        self.counts = {"loss": 0, "input": 0}
        self.recent: deque[float] = deque(maxlen=self.history)  # latest errors, for _worse
        self.distance_scale = 0.0  # running mean nearest-memory distance (per batch)

    def update(
        self,
        errors: np.ndarray,
        ids: list[str],
        event: int,
        distances: np.ndarray | None = None,
        positions: np.ndarray | None = None,
    ) -> list[DriftRecord]:
        """Feed one batch; return the drifts it triggered (at most one per detector).

        A loss drift ends the batch at its event: the errors after it are not consumed,
        and the input detector sees only the distances up to it. The caller feeds the
        rest again once it has acted on the drift (the learner predicts them anew).

        Parameters
        ----------
        errors
            ``(n_labelled,)`` float per-event error (0/1 or absolute), in stream order.
        ids
            Event ids aligned with ``errors``.
        event
            Events seen before this batch (the offset of its first event).
        distances
            ``(batch,)`` float L2 distance of each event to its nearest memory entry.
        positions
            ``(n_labelled,)`` int positions in the batch of the labelled events
            (default ``0 .. n_labelled - 1``); a record's ``event`` is ``event + position``.
        """
        found: list[DriftRecord] = []
        record, _ = self.update_loss(errors, ids, event, positions)
        if record is not None:
            found.append(record)
            if distances is not None:
                distances = distances[: record.event - event + 1]
        if self.input_det is not None and distances is not None and len(distances):
            # scale-free: distance over its running mean, capped (one far event != drift)
            mean = float(np.add.reduce(distances) / len(distances))  # distances.mean()
            scale = self.distance_scale if self.distance_scale > 0 else mean
            ratios = np.minimum(distances / (scale + 1e-9), 20.0)
            self.distance_scale = 0.99 * scale + 0.01 * mean
            j = page_hinkley_until(self.input_det, ratios.tolist())
            if j is not None:
                found.append(self._record("input", "page_hinkley", self.input_det, event + j, ""))
                self.input_det = make_detector("page_hinkley")
        return found

    def update_loss(
        self,
        errors: np.ndarray,
        ids: list[str],
        event: int,
        positions: np.ndarray | None = None,
    ) -> tuple[DriftRecord | None, int]:
        """Feed labelled errors to the loss detector, up to and including a loss drift.

        Parameters are those of :meth:`update`. Returns the drift (or None) and how many
        of ``errors`` were consumed: all, or those up to the one that triggered it.
        """
        values = errors.tolist()
        det = self.loss_det
        if det is None:
            return None, len(values)
        pos = range(len(values)) if positions is None else np.asarray(positions).tolist()
        if isinstance(det, drift.ADWIN):
            width = int(det.width)
            j = adwin_until(det, values, lambda j: self._worse(values[: j + 1], width + j + 1))
        else:
            j = self._feed(det, values)
        if j is None:
            self.recent.extend(values)
            return None, len(values)
        self.recent.extend(values[: j + 1])
        event_id = ids[j] if j < len(ids) else ""
        return self._record("loss", self.detector, det, event + pos[j], event_id), j + 1

    def _feed(self, det: Any, values: list[float]) -> int | None:
        """KSWIN or Page-Hinkley: ``update`` per value up to a detection of an increase."""
        for j, e in enumerate(values):
            det.update(e)
            if det.drift_detected and self._worse(values[: j + 1], j + 1):
                return j
        return None

    def _worse(self, latest: list[float], width_before: int) -> bool:
        """Whether a detection is an increase of the error (a decrease is no drift).

        ADWIN: the mean of the window it keeps against the mean of the part it dropped
        (``width_before`` is its width before the detection; errors are kept for that).
        KSWIN: the recent errors (the last ``history``, then ``latest``) are split where the
        CUSUM-like statistic ``s (n - s) / n * |mean_before - mean_after|`` peaks; the
        detection counts if the error after the split is the higher one.
        """
        seq = np.array([*self.recent, *latest], dtype=float)
        if isinstance(self.loss_det, drift.ADWIN):
            kept = int(self.loss_det.width)
            dropped = seq[-width_before:-kept] if kept else seq[-width_before:]
            return not len(dropped) or float(self.loss_det.estimation) > float(dropped.mean())
        if len(seq) < 4:
            return True
        _, before, after, weight = split_means(seq)
        diff = after - before
        return bool(diff[int(np.argmax(weight * np.abs(diff)))] > 0)

    def _record(self, name: str, kind: str, det: Any, event: int, event_id: str) -> DriftRecord:
        stat = float(getattr(det, "estimation", 0.0)) if kind == "adwin" else 0.0
        width = int(getattr(det, "width", 0)) if kind == "adwin" else 0
        rec = DriftRecord(time.time(), event, event_id, name, kind, stat, width)
        self.log.append(rec)
        self.counts[name] += 1
        return rec

    def state_dict(self) -> dict[str, Any]:
        """Plain data: detectors (see :func:`detector_state`), the log and the counts."""
        return {
            "loss": None if self.loss_det is None else detector_state(self.loss_det),
            "input": None if self.input_det is None else detector_state(self.input_det),
            "log": [asdict(r) for r in self.log],
            "counts": dict(self.counts),
            "recent": np.array(self.recent, dtype=np.float64),
            "distance_scale": self.distance_scale,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        self._reset()
        if state["loss"] is not None and self.loss_det is not None:
            self.loss_det = load_detector(state["loss"])
        if state["input"] is not None and self.input_det is not None:
            self.input_det = load_detector(state["input"])
        self.log.extend(DriftRecord(**r) for r in state["log"])
        self.counts = {str(k): int(v) for k, v in state["counts"].items()}
        self.recent.extend(np.asarray(state["recent"], dtype=np.float64).tolist())
        self.distance_scale = float(state["distance_scale"])

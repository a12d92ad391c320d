"""Accuracy of served model versions: what a replica's predictions score at a lag.

The learner's prequential accuracy predicts every event with the state that learned every
earlier label. A serving replica predicts with the model version it loaded last, which lags
the learner by the events learned since it was made (the publish interval times the event
rate: 1 s at 1,000 events/s is 1,000 events). Here the learner learns a stream in
micro-batches and, every ``K`` events, makes a version (:meth:`Learner.snapshot`, what the
publisher ships); that version predicts the next ``K`` events before the learner learns
them, as a replica would. Also scored: the same versions with their short-term memory
(``recent``) left out, and the no-change classifier at the same lag (the label ``K`` events
back, at best as fresh as the version).

Usage::

    python benchmarks/served_lag.py                         # elec2 + 2 generators, ~4 min
    python benchmarks/served_lag.py --lags 64 512 --limit 10000 --streams elec2

The last line is a JSON object ``{stream: {"learner": acc, "lag_<K>": {variant: acc}}}``.
"""

from __future__ import annotations

from streamcl.threads import single_threaded

single_threaded()  # as the streamcl command runs; before numpy, faiss or torch load

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from prequential import elec2
from suite import GENERATORS

from streamcl.events import Event
from streamcl.learning.learner import Learner
from streamcl.models.predictor import Snapshot
from streamcl.settings import LearnerSettings


def served(rows: list[tuple[dict[str, Any], Any]], lag: int) -> dict[str, float]:
    """Accuracies over ``rows`` after the first ``lag``, of the learner and of its versions.

    Parameters
    ----------
    rows
        ``(features, label)`` pairs in stream order.
    lag
        Events between two versions (each version serves the ``lag`` events after it).

    Returns
    -------
    dict
        ``learner`` (prequential, test-then-train), ``version``, ``version_no_recent`` and
        ``no_change_at_lag``, each a fraction in [0, 1].
    """
    events = [Event(id=str(i), features=x, label=y) for i, (x, y) in enumerate(rows)]
    learner = Learner(LearnerSettings())
    hits = dict.fromkeys(("learner", "version", "version_no_recent", "no_change_at_lag"), 0)
    version: Snapshot | None = None
    n = 0
    for i in range(0, len(events), lag):
        chunk = events[i : i + lag]
        if version is not None:
            no_recent = replace(
                version, weights={k: w for k, w in version.weights.items() if k != "recent"}
            )
            for name, model in (("version", version), ("version_no_recent", no_recent)):
                predicted = model.predict(chunk)
                hits[name] += sum(p.label == e.label for p, e in zip(predicted, chunk, strict=True))
            last = events[i - 1].label
            hits["no_change_at_lag"] += sum(e.label == last for e in chunk)
            n += len(chunk)
        learned = []
        for j in range(0, len(chunk), 64):  # the service's micro-batch
            learned += learner.predict_learn(chunk[j : j + 64])
        if version is not None:
            hits["learner"] += sum(p.label == e.label for p, e in zip(learned, chunk, strict=True))
        version = learner.snapshot()
    return {k: round(v / n, 4) for k, v in hits.items()}


def main() -> None:
    """Print the table (one row per stream and lag) and, last, the JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lags", type=int, nargs="+", default=[8, 64, 512, 4096])
    parser.add_argument("--streams", nargs="+", default=["elec2", "SEA abrupt", "Agrawal abrupt"])
    parser.add_argument("--limit", type=int, default=20_000, help="events per stream")
    args = parser.parse_args()
    out: dict[str, Any] = {}
    print("| stream | lag (events) | learner | version | version, no recent | no-change at lag |")
    print("|---|---|---|---|---|---|")
    for name in args.streams:
        rows = elec2(args.limit) if name == "elec2" else GENERATORS[name][1](2, args.limit)
        out[name] = {}
        for lag in args.lags:
            r = served(rows, lag)
            out[name][f"lag_{lag}"] = r
            print(
                f"| {name} | {lag} | {r['learner']:.4f} | {r['version']:.4f} | "
                f"{r['version_no_recent']:.4f} | {r['no_change_at_lag']:.4f} |",
                flush=True,
            )
    print(json.dumps(out))


if __name__ == "__main__":
    main()

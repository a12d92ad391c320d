"""elec2 with delayed labels, through the stream loop's label join.

Every event arrives without its label and is predicted (the prediction is scored); its
label arrives ``delay`` events later on the labels "topic" and joins the pending event
(:class:`streamcl.stream.labels.LabelJoin`, as in the service). Variants, all on the same
events in one process:

- ``defaults``: the Hedge weights learn from the experts' outputs kept with the pending
  events (:mod:`streamcl.learning.delayed`, with ``hedge_delayed_scale`` and
  ``hedge_delayed_decay``); a loss drift found on delayed labels is logged and resets the
  Hedge weights, but takes no action (``drift.delayed_actions``);
- ``before``: what the learner did before: no expert outputs kept (the weights never move
  when every label is delayed), and the drift actions (``lr_restart``, ``trim_memory``);
- ``no_hedge_on_join``, ``with_drift_actions``, ``lr_restart_only``, ``trim_memory_only``:
  one of those changes at a time; ``no_drift``: no loss detector at all.

``delay 0`` (labels with their events, ``predict_learn``) is the reference. Accuracy is
over all events; throughput is events per CPU second (``time.process_time``).

Usage::

    python benchmarks/delayed.py                    # delays 100 and 1000, ~10 min
    python benchmarks/delayed.py --delays 100 --limit 10000
    python benchmarks/delayed.py --stream "SEA abrupt" --events 12000   # a suite generator

The last line is a JSON object ``{"delay_<d>": {variant: accuracy}}``.
"""

from __future__ import annotations

from streamcl.threads import single_threaded

single_threaded()  # as the streamcl command runs; before numpy, faiss or torch load

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from prequential import elec2
from streamcl.connectors.base import Record
from suite import GENERATORS, settings_from

from streamcl.events import Event, EventDecoder
from streamcl.learning.learner import Learner
from streamcl.metrics import Metrics
from streamcl.stream.labels import LabelJoin, PendingLabels
from streamcl.stream.prequential import StreamLoop

ACT = "drift.delayed_actions=[lr_restart,trim_memory]"
VARIANTS: dict[str, list[str]] = {
    "defaults": [],
    "before": [ACT],  # no Hedge update on join, drift actions on delayed labels
    "no_hedge_on_join": [],
    "with_drift_actions": [ACT],
    "lr_restart_only": ["drift.delayed_actions=[lr_restart]"],
    "trim_memory_only": ["drift.delayed_actions=[trim_memory]"],
    "no_drift": ["drift.detector=none"],
}


def run(
    rows: list[tuple[dict[str, Any], int]], delay: int, variant: str, base: list[str]
) -> dict[str, Any]:
    """One prequential pass; accuracy of the event-time predictions, events per CPU second."""
    learner = Learner(settings_from(base + VARIANTS[variant]))
    if variant in ("before", "no_hedge_on_join"):
        learner.expert_outputs = lambda indices: [None] * len(indices)  # type: ignore[method-assign]
    loop = StreamLoop(None, learner, EventDecoder(target="class"), Metrics())
    loop.labels = LabelJoin(PendingLabels(), "labels", learner, loop.score, loop.metrics)
    events = [Event(id=str(i), features=x, label=y) for i, (x, y) in enumerate(rows)]
    correct, joined = 0, 0
    started = time.process_time()
    for i in range(0, len(events), loop.batch_size):
        batch = events[i : i + loop.batch_size]
        if delay == 0:
            predictions = loop.process(batch, publish=False)
        else:
            predictions = loop.process([Event(id=e.id, features=e.features) for e in batch], False)
            ready = events[joined : max(joined, i + len(batch) - delay)]
            records = [
                Record(json.dumps({"id": e.id, "label": e.label}).encode(), topic="labels")
                for e in ready
            ]
            loop.labels.join(records, lambda record, exc: None)
            joined += len(ready)
        correct += sum(p.label == e.label for p, e in zip(predictions, batch, strict=True))
        if i % 512 == 0:
            loop.snapshot = learner.snapshot()  # publish per read chunk, as the service does
    seconds = time.process_time() - started
    return {
        "accuracy": round(correct / len(events), 4),
        "events_per_cpu_s": round(len(events) / seconds),
        "loss_drifts": learner.drift.counts["loss"],
        "weights": {k: round(v, 3) for k, v in learner.weights().items()},
    }


def main() -> None:
    """Run the variants and print a table, then the JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delays", type=int, nargs="*", default=[100, 1_000])
    parser.add_argument("--limit", type=int, default=None, help="first events of elec2 only")
    parser.add_argument(
        "--stream", default="elec2", help="elec2, or a generator of benchmarks/suite.py (seed 1)"
    )
    parser.add_argument("--events", type=int, default=12_000, help="events of a generator")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument(
        "--set", nargs="*", default=[], dest="overrides", help="settings of every variant"
    )
    args = parser.parse_args()
    rows = (
        elec2(args.limit) if args.stream == "elec2" else GENERATORS[args.stream][1](1, args.events)
    )
    summary: dict[str, dict[str, float]] = {}
    reference = run(rows, 0, "defaults", args.overrides)
    print(f"labels with events: accuracy {reference['accuracy']}", flush=True)
    summary["delay_0"] = {"defaults": reference["accuracy"]}
    print("| delay (events) | variant | accuracy | loss drifts | events/CPU s | weights |")
    print("|---|---|---|---|---|---|")
    for delay in args.delays:
        summary[f"delay_{delay}"] = {}
        for variant in args.variants:
            r = run(rows, delay, variant, args.overrides)
            summary[f"delay_{delay}"][variant] = r["accuracy"]
            print(
                f"| {delay} | {variant} | {r['accuracy']:.4f} | {r['loss_drifts']} "
                f"| {r['events_per_cpu_s']:,} | {r['weights']} |",
                flush=True,
            )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

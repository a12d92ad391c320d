"""Whether two checkouts of streamcl predict exactly the same: every label and probability.

For a change meant not to alter any prediction (a speed-up): each checkout runs the
default learner test-then-train (``prequential.py``'s ``streamcl_pass``) in a process of its
own, on elec2 and on ``suite.py``'s generators (``GENERATORS``, one seed) plus FriedmanDrift
(regression), and records every prediction's label and probabilities; the two records must
be equal bit for bit (floats compared by their IEEE bytes, types included).

Usage::

    git worktree add /tmp/base HEAD~3    # the code before the change
    python benchmarks/same_predictions.py /tmp/base .    # exit status 1 if any differs
"""

from __future__ import annotations

from streamcl.threads import single_threaded

single_threaded()  # as the streamcl command runs; before numpy, faiss or torch load

import argparse
import os
import pickle
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

#: One prediction: (label, its type name, [(class, probability)], the probabilities' types).
Record = tuple[Any, str, list[tuple[str, Any]], list[str]]


def record(seed: int, events: int) -> dict[str, list[Record]]:
    """Every prediction of the default learner on each stream (this process's streamcl)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from prequential import elec2, friedman, streamcl_pass
    from suite import GENERATORS

    from streamcl.learning.learner import Learner
    from streamcl.settings import LearnerSettings

    streams: dict[str, Any] = {"elec2": elec2(None)}
    streams.update({name: make(seed, events) for name, (_, make) in GENERATORS.items()})
    streams["FriedmanDrift (regression)"] = friedman(events)[0]
    out: dict[str, list[Record]] = {}
    original = Learner.predict_learn
    for name, rows in streams.items():
        kept: list[Record] = []

        def predict_learn(self: Learner, batch: Any, kept: list[Record] = kept) -> Any:
            predictions = original(self, batch)
            for p in predictions:
                probs = list(p.probabilities.items())
                types = [type(v).__name__ for _, v in probs]
                kept.append((p.label, type(p.label).__name__, probs, types))
            return predictions

        Learner.predict_learn = predict_learn  # type: ignore[method-assign]
        try:
            task = "regression" if "regression" in name else "classification"
            streamcl_pass(rows, LearnerSettings(task=task), lambda p, y: None)
        finally:
            Learner.predict_learn = original  # type: ignore[method-assign]
        out[name] = kept
    return out


def _bits(value: Any) -> Any:
    return struct.pack("d", value) if isinstance(value, float) else value


def differences(a: list[Record], b: list[Record]) -> int:
    """Predictions that differ (a length mismatch counts as every prediction)."""
    if len(a) != len(b):
        return max(len(a), len(b))
    return sum(
        x[1:2] + x[3:] != y[1:2] + y[3:]
        or _bits(x[0]) != _bits(y[0])
        or [(k, _bits(v)) for k, v in x[2]] != [(k, _bits(v)) for k, v in y[2]]
        for x, y in zip(a, b, strict=True)
    )


def run(root: Path, seed: int, events: int, out: Path) -> None:
    """:func:`record` with ``root``'s streamcl, in a child process, pickled to ``out``."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    code = (
        "import pickle, sys, streamcl; from pathlib import Path; "
        f"assert Path(streamcl.__file__).resolve().is_relative_to({str(root)!r}), "
        "streamcl.__file__; "
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); "
        "from same_predictions import record; "
        f"pickle.dump(record({seed}, {events}), open({str(out)!r}, 'wb'))"
    )
    subprocess.run([sys.executable, "-P", "-c", code], env=env, check=True, cwd=root)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="root of the checkout before the change")
    parser.add_argument("new", type=Path, help="root of the checkout after it")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--events", type=int, default=3_000, help="events per generator")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / "old.pkl", Path(tmp) / "new.pkl"]
        for root, path in zip((args.old, args.new), paths, strict=True):
            run(root.resolve(), args.seed, args.events, path)
        old, new = (pickle.loads(p.read_bytes()) for p in paths)
    bad = 0
    for name in old:
        n = differences(old[name], new.get(name, []))
        print(f"{name}: {len(old[name])} predictions, {n} differ")
        bad += n
    print("identical" if bad == 0 else f"{bad} predictions differ")
    return int(bad != 0)


if __name__ == "__main__":
    sys.exit(main())

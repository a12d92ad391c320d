"""Prequential benchmark: streamcl's default learner against river's, in the same run.

Streams: elec2 (the packaged Electricity market data) and river's synthetic generators with
abrupt drifts (``ConceptDriftStream`` with ``width=1``: SEA, Agrawal, STAGGER, RandomRBF)
plus Hyperplane (gradual drift); a regression stream with drift (river's FriedmanDrift,
local expanding abrupt drifts) against river's regressors; then a class-incremental digits
stream (sklearn digits, classes in pairs, then recurring) for forgetting; then an optimiser
/ plasticity comparison of streamcl variants.

Every model is evaluated test-then-train on the same events. streamcl is fed micro-batches
of ``learner.batch_size`` pre-decoded events through ``Learner.predict_learn`` and publishes
a serving snapshot after every read chunk (``source.read_batch`` events, 512), as the
service's loop does; river models get
``predict_one`` then ``learn_one`` per event. Throughput is events per CPU second of
predict + learn + scoring (decoding is measured separately: it is the same for every model
in the service), so other processes on the machine do not skew the ratio to ARF.

Recovery (De Lange et al. 2023): for each known abrupt drift at ``p``, the pre-drift level
is the accuracy on ``[p - 1000, p)``; recovery is the number of events after ``p`` until
the accuracy over the post-drift events of the last 500 (at least 100) is back within 0.02
of that level (``>n`` if it never is before the next drift).

Usage::

    python benchmarks/prequential.py            # full run, < 10 min on 2 cores
    python benchmarks/prequential.py --quick    # subsampled, ~2 min

Prints markdown tables and writes ``reports/prequential.json`` and
``reports/prequential.png`` (windowed accuracy, or MAE, over each stream; true drifts as
dashed lines, streamcl's detections as triangles).
"""

from __future__ import annotations

from streamcl.threads import single_threaded

single_threaded()  # as the streamcl command runs; before numpy, faiss or torch load

import argparse
import csv
import gzip
import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from river import dummy, ensemble, forest, linear_model, metrics, preprocessing, stats, tree
from river.datasets import synth

from streamcl.events import Event, EventDecoder
from streamcl.learning.learner import Learner
from streamcl.settings import LearnerSettings, PlasticitySettings, SourceSettings

ROOT = Path(__file__).resolve().parents[1]
ELEC2 = ROOT.parent / "shared" / "data" / "elec2.csv"
PACKAGED = ROOT / "streamcl" / "data" / "elec2.csv.gz"

Stream = list[tuple[dict[str, Any], int]]


# -- streams --------------------------------------------------------------------------------
def elec2(limit: int | None) -> Stream:
    """elec2 as ``(features, label)`` pairs, decoded the way the service decodes CSV rows."""
    text = ELEC2.read_text() if ELEC2.exists() else gzip.decompress(PACKAGED.read_bytes()).decode()
    decoder = EventDecoder(target="class")
    out = []
    for i, row in enumerate(csv.DictReader(io.StringIO(text))):
        e = decoder.decode_row(row, i)
        out.append((dict(e.features), int(e.label)))  # type: ignore[arg-type]
        if limit and len(out) >= limit:
            break
    return out


def _chain(parts: list[Any], every: int) -> Iterator[tuple[dict[str, Any], Any]]:
    """Exactly ``every`` events of each concept, then an abrupt switch to the next.

    The same as chaining river's ``ConceptDriftStream(..., width=1)``, without the position
    offsets that nesting them introduces.
    """
    for part in parts:
        yield from part.take(every)


def _named(x: dict[Any, Any]) -> dict[str, Any]:
    """Feature names as strings (SEA and Hyperplane use integer keys)."""
    return {f"x{k}" if isinstance(k, int) else str(k): v for k, v in x.items()}


def synthetic(n: int) -> dict[str, tuple[Stream, list[int]]]:
    """Name -> (stream, abrupt drift positions)."""
    seg = n // 4
    drifts = [seg, 2 * seg, 3 * seg]
    gens: dict[str, list[Any]] = {
        "SEA": [synth.SEA(variant=v, seed=1) for v in (0, 1, 2, 3)],
        "Agrawal": [synth.Agrawal(classification_function=f, seed=1) for f in (0, 3, 6, 9)],
        "STAGGER": [synth.STAGGER(classification_function=f, seed=1) for f in (0, 1, 2, 0)],
        "RandomRBF": [
            synth.RandomRBF(seed_model=m, seed_sample=m, n_features=10, n_centroids=20)
            for m in (1, 2, 3, 4)
        ],
    }
    out: dict[str, tuple[Stream, list[int]]] = {}
    for name, parts in gens.items():
        rows = [(_named(x), int(y)) for x, y in _chain(parts, seg)]
        out[f"{name} (abrupt)"] = (rows, drifts)
    hyper = synth.Hyperplane(
        seed=1, n_features=10, n_drift_features=5, mag_change=0.001, noise_percentage=0.05
    )
    out["Hyperplane (gradual)"] = ([(_named(x), int(y)) for x, y in hyper.take(n)], [])
    return out


def friedman(n: int) -> tuple[list[tuple[dict[str, Any], float]], list[int]]:
    """River's FriedmanDrift (Ikonomovska et al. 2011), local expanding abrupt drifts.

    Drifts at n/4, n/2 and 3n/4; targets are floats.
    """
    seg = n // 4
    drifts = [seg, 2 * seg, 3 * seg]
    gen = synth.FriedmanDrift(drift_type="lea", position=tuple(drifts), seed=1)
    return [(_named(x), float(y)) for x, y in gen.take(n)], drifts


def digits_stream(
    per_visit: int = 300, seed: int = 0
) -> tuple[Stream, list[tuple[int, int, tuple[int, int]]]]:
    """Class-incremental digits: pairs (0,1), (2,3), ... (8,9), then the pairs recur.

    Returns the stream and ``(start, end, pair)`` of every visit.
    """
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(seed)
    pairs = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    rows: Stream = []
    visits = []
    for pair in pairs + pairs:
        idx = np.flatnonzero(np.isin(y, pair))
        pick = rng.choice(idx, per_visit, replace=True)
        start = len(rows)
        rows += [({f"p{j}": float(v) for j, v in enumerate(x[i])}, int(y[i])) for i in pick]
        visits.append((start, len(rows), pair))
    return rows, visits


# -- evaluation -----------------------------------------------------------------------------
#: Events per read chunk of the service's loop, after which it publishes a serving snapshot.
CHUNK = SourceSettings().read_batch


def streamcl_pass(
    rows: Stream | list[tuple[dict[str, Any], float]],
    settings: LearnerSettings,
    score: Callable[[Any, Any], None],
    plasticity: PlasticitySettings | None = None,
) -> tuple[Learner, float]:
    """Test-then-train over ``rows`` in micro-batches, as the service's loop does.

    ``score(predicted, actual)`` is called for every event, inside the timed loop. Returns
    the learner and the CPU seconds taken.
    """
    events = [Event(id=str(i), features=x, label=y) for i, (x, y) in enumerate(rows)]
    learner = Learner(settings, plasticity=plasticity)
    bs = settings.batch_size
    started = time.process_time()
    for i in range(0, len(events), bs):
        batch = events[i : i + bs]
        for e, p in zip(batch, learner.predict_learn(batch), strict=True):
            score(p.label, e.label)
        if (i + bs) % CHUNK < bs or i + bs >= len(events):
            learner.snapshot()
    return learner, time.process_time() - started


def river_pass(
    rows: Stream | list[tuple[dict[str, Any], float]],
    model: Any,
    score: Callable[[Any, Any], None],
    limit: int | None = None,
) -> float:
    """``predict_one`` then ``learn_one`` per event; returns the CPU seconds taken."""
    started = time.process_time()
    for x, y in rows[:limit] if limit else rows:
        score(model.predict_one(x), y)
        model.learn_one(x, y)
    return time.process_time() - started


def drift_events(learner: Learner) -> list[int]:
    """Stream offsets of the learner's loss-drift detections (still in its drift log)."""
    return [r.event for r in learner.drift.log if r.detector == "loss"]


def run_streamcl(
    rows: Stream, settings: LearnerSettings, plasticity: PlasticitySettings | None = None
) -> dict[str, Any]:
    """Prequential run of a streamcl learner; per-event correctness and CPU time."""
    score = Score()
    learner, seconds = streamcl_pass(rows, settings, score.update, plasticity)
    out = score.result(seconds)
    out["drifts"] = learner.drift.counts["loss"]
    out["drift_events"] = drift_events(learner)
    out["weights"] = {k: round(v, 3) for k, v in learner.weights().items()}
    return out


def run_river(rows: Stream, model: Any, limit: int | None = None) -> dict[str, Any]:
    """Prequential run of a river classifier (``predict_one`` then ``learn_one``)."""
    score = Score()
    return score.result(river_pass(rows, model, score.update, limit))


class Score:
    """Accuracy, kappa, kappa-temporal and the per-event correctness trace."""

    def __init__(self) -> None:
        self.kappa = metrics.CohenKappa()
        self.correct: list[bool] = []
        self.no_change: list[bool] = []
        self.previous: Any = None

    def update(self, predicted: Any, actual: Any) -> None:
        """Score one prediction."""
        self.correct.append(predicted == actual)
        self.no_change.append(self.previous == actual)
        self.previous = actual
        self.kappa.update(actual, predicted)

    def result(self, seconds: float) -> dict[str, Any]:
        """Summary numbers; ``seconds`` is the CPU time the run took."""
        n = len(self.correct)
        acc = float(np.mean(self.correct))
        p_nc = float(np.mean(self.no_change))
        return {
            "n": n,
            "accuracy": acc,
            "kappa": float(self.kappa.get()),
            "kappa_temporal": (acc - p_nc) / (1 - p_nc) if p_nc < 1 else 0.0,
            "events_per_s": n / seconds if seconds > 0 else float("inf"),
            "correct": np.array(self.correct, dtype=bool),
        }


def recovery(
    correct: np.ndarray, drifts: list[int], window: int = 500, tolerance: float = 0.02
) -> list[int | str]:
    """Events to recover after each drift (see the module docstring); ``">n"`` if never."""
    cum = np.concatenate([[0], np.cumsum(correct)])
    out: list[int | str] = []
    for k, p in enumerate(drifts):
        end = drifts[k + 1] if k + 1 < len(drifts) else len(correct)
        pre = (cum[p] - cum[max(p - 1000, 0)]) / (p - max(p - 1000, 0))
        found: int | str = f">{end - p}"
        for t in range(p + 100, end + 1):
            lo = max(p, t - window)
            if (cum[t] - cum[lo]) / (t - lo) >= pre - tolerance:
                found = t - p
                break
        out.append(found)
    return out


def river_models() -> dict[str, Callable[[], Any]]:
    return {
        "river LogisticRegression": lambda: (
            preprocessing.StandardScaler() | linear_model.LogisticRegression()
        ),
        "river HoeffdingAdaptiveTree": lambda: tree.HoeffdingAdaptiveTreeClassifier(seed=42),
        "river ARF": lambda: forest.ARFClassifier(seed=42),
        "river LeveragingBagging": lambda: ensemble.LeveragingBaggingClassifier(
            tree.HoeffdingTreeClassifier(), seed=42
        ),
        "river NoChange": dummy.NoChangeClassifier,
    }


def compare(
    name: str, rows: Stream, drifts: list[int], river_limit: int | None
) -> list[dict[str, Any]]:
    """All models on one stream; rows of the results table."""
    results = [{"model": "streamcl (default)", **run_streamcl(rows, LearnerSettings())}]
    for label, factory in river_models().items():
        limit = river_limit if label in ("river ARF", "river LeveragingBagging") else None
        r = run_river(rows, factory(), limit)
        r["subsampled"] = bool(limit and limit < len(rows))
        results.append({"model": label, **r})
    arf = next(r for r in results if r["model"] == "river ARF")
    for r in results:
        r["stream"] = name
        r["speed_vs_arf"] = r["events_per_s"] / arf["events_per_s"]
        if drifts and r["n"] == len(rows):
            r["recovery"] = recovery(r["correct"], drifts)
    return results


def regression_compare(
    rows: list[tuple[dict[str, Any], float]], drifts: list[int], river_limit: int | None
) -> list[dict[str, Any]]:
    """The streamcl learner (``task: regression``, else defaults) against river's regressors.

    MAE and RMSE of predictions made before learning each event, events per CPU second, and
    the per-event absolute error trace (for the figure).
    """
    errors: list[float] = []

    def absolute(predicted: float | None, actual: float) -> None:
        errors.append(abs((predicted if predicted is not None else 0.0) - actual))

    learner, seconds = streamcl_pass(rows, LearnerSettings(task="regression"), absolute)
    results = [
        {
            "model": "streamcl (task: regression)",
            **_reg_result(errors, seconds),
            "drift_events": drift_events(learner),
        }
    ]
    models: dict[str, Callable[[], Any]] = {
        "river LinearRegression": lambda: (
            preprocessing.StandardScaler() | linear_model.LinearRegression()
        ),
        "river HoeffdingAdaptiveTreeRegressor": lambda: (
            preprocessing.StandardScaler() | tree.HoeffdingAdaptiveTreeRegressor(seed=42)
        ),
        "river ARFRegressor": lambda: preprocessing.StandardScaler() | forest.ARFRegressor(seed=42),
        "river mean": lambda: dummy.StatisticRegressor(stats.Mean()),
    }
    for label, factory in models.items():
        limit = river_limit if label == "river ARFRegressor" else None
        errors = []
        seconds = river_pass(rows, factory(), absolute, limit)
        results.append({"model": label, **_reg_result(errors, seconds)})
        results[-1]["subsampled"] = bool(limit and limit < len(rows))
    arf = next(r for r in results if r["model"] == "river ARFRegressor")
    for r in results:
        r["stream"] = "FriedmanDrift (lea)"
        r["speed_vs_arf"] = r["events_per_s"] / arf["events_per_s"]
        if r["n"] == len(rows):
            e = r["abs_error"]
            r["mae_per_segment"] = [
                float(np.mean(e[a:b])) for a, b in zip([0, *drifts], [*drifts, len(e)], strict=True)
            ]
    return results


def _reg_result(errors: list[float], seconds: float) -> dict[str, Any]:
    e = np.asarray(errors, dtype=float)
    return {
        "n": len(e),
        "mae": float(e.mean()),
        "rmse": float(np.sqrt((e * e).mean())),
        "events_per_s": len(e) / seconds if seconds > 0 else float("inf"),
        "abs_error": e,
    }


def regression_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| stream | model | MAE | RMSE | MAE per segment (between drifts) | events/s (CPU) | "
        "x ARF |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        note = f" (subsampled: first {r['n']} events)" if r.get("subsampled") else ""
        seg = ", ".join(f"{v:.2f}" for v in r.get("mae_per_segment", [])) or "-"
        lines.append(
            f"| {r['stream']} | {r['model']}{note} | {r['mae']:.3f} | {r['rmse']:.3f} | {seg} | "
            f"{r['events_per_s']:,.0f} | {r['speed_vs_arf']:.1f} |"
        )
    return "\n".join(lines)


def figure(
    results: list[dict[str, Any]],
    drifts: dict[str, list[int]],
    regression: list[dict[str, Any]],
    regression_drifts: list[int],
    path: Path,
    window: int = 500,
) -> None:
    """Windowed accuracy (MAE for regression) of streamcl and ARF over every stream.

    True drift positions are dashed lines; streamcl's loss-drift detections are triangles.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [*drifts, "FriedmanDrift (lea)"]
    fig, axes = plt.subplots(len(names), 1, figsize=(11, 2.4 * len(names)))
    kernel = np.ones(window) / window
    for ax, name in zip(axes, names, strict=True):
        rows = regression if name.startswith("Friedman") else results
        marks = regression_drifts if name.startswith("Friedman") else drifts[name]
        for r in rows:
            if r["stream"] != name or not (
                r["model"].startswith("streamcl") or "ARF" in r["model"]
            ):
                continue
            trace = r["abs_error"] if "abs_error" in r else r["correct"].astype(float)
            if len(trace) < window:
                continue
            smooth = np.convolve(trace, kernel, mode="valid")
            x = np.arange(window, len(trace) + 1)
            (line,) = ax.plot(x, smooth, lw=1, label=r["model"])
            for event in r.get("drift_events", []):
                if event >= window:
                    ax.plot(event, smooth[event - window], "v", color=line.get_color(), ms=6)
        for p in marks:
            ax.axvline(p, color="grey", ls="--", lw=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel(f"MAE ({window})" if name.startswith("Friedman") else f"accuracy ({window})")
        ax.legend(fontsize=7, loc="lower right")
    axes[-1].set_xlabel("event")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def digits_forgetting() -> list[dict[str, Any]]:
    """Accuracy on earlier classes when they recur, and forgetting, vs a plain MLP."""
    rows, visits = digits_stream()
    plain = LearnerSettings(
        label_lags=0,
        memory={"knn": False, "prototypes": False, "replay": 0},
        drift={"detector": "none"},
    )
    variants = {
        "streamcl (default)": LearnerSettings(),
        "streamcl (default, no label lags)": LearnerSettings(label_lags=0),
        "plain MLP (no memory, replay, lags)": plain,
    }
    out = []
    for label, settings in variants.items():
        r = run_streamcl(rows, settings)
        c = r["correct"]
        first = [c[s:e].mean() for s, e, _ in visits[:5]]
        first_end = [c[e - 100 : e].mean() for s, e, _ in visits[:5]]
        recur = [c[s : s + 100].mean() for s, e, _ in visits[5:]]
        out.append(
            {
                "model": label,
                "accuracy": r["accuracy"],
                "first_visit": float(np.mean(first)),
                "recurrence_first_100": float(np.mean(recur)),
                "forgetting": float(np.mean(first_end) - np.mean(recur)),
                "events_per_s": r["events_per_s"],
            }
        )
    return out


def optimiser_comparison(streams: dict[str, Stream]) -> list[dict[str, Any]]:
    """Streamcl variants: optimiser x plasticity method, on every stream."""
    d = LearnerSettings()
    sp = ("lr_restart", "trim_memory", "shrink_perturb")
    variants: dict[str, tuple[LearnerSettings, PlasticitySettings]] = {
        f"sgd lr={d.lr} (default)": (d, PlasticitySettings()),
        "adam lr=0.01": (LearnerSettings(optimizer="adam", lr=0.01), PlasticitySettings()),
        f"upgd lr={d.lr}": (LearnerSettings(optimizer="upgd"), PlasticitySettings()),
        "sgd + cbp": (d, PlasticitySettings(methods=("cbp",))),
        "sgd + redo": (d, PlasticitySettings(methods=("redo",))),
        "sgd + shrink_perturb on drift": (
            LearnerSettings(drift={"actions": sp}),
            PlasticitySettings(),
        ),
        "adam lr=0.01 + cbp": (
            LearnerSettings(optimizer="adam", lr=0.01),
            PlasticitySettings(methods=("cbp",)),
        ),
    }
    out = []
    for label, (settings, plasticity) in variants.items():
        row: dict[str, Any] = {"variant": label}
        for name, rows in streams.items():
            r = run_streamcl(rows, settings, plasticity)
            row[name] = {"accuracy": r["accuracy"], "events_per_s": r["events_per_s"]}
        out.append(row)
    return out


# -- report ---------------------------------------------------------------------------------
def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| stream | model | accuracy | kappa | kappa-temporal | events/s (CPU) | x ARF | "
        "recovery events per drift |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rec = r.get("recovery")
        note = f" (subsampled: first {r['n']} events)" if r.get("subsampled") else ""
        lines.append(
            f"| {r['stream']} | {r['model']}{note} | {r['accuracy']:.4f} | {r['kappa']:.3f} | "
            f"{r['kappa_temporal']:.3f} | {r['events_per_s']:,.0f} | {r['speed_vs_arf']:.1f} | "
            f"{', '.join(map(str, rec)) if rec else '-'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="subsample: ~2 min instead of ~8")
    parser.add_argument("--synthetic-events", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "reports" / "prequential.json"))
    parser.add_argument("--skip", nargs="*", default=[], choices=["digits", "optimisers"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    n_synth = args.synthetic_events or (6_000 if args.quick else 12_000)
    elec = elec2(15_000 if args.quick else None)
    river_limit = 5_000 if args.quick else None
    streams: dict[str, tuple[Stream, list[int]]] = {"elec2": (elec, []), **synthetic(n_synth)}
    t0 = time.perf_counter()
    decoder = EventDecoder(target="class")
    sample = [{k: str(v) for k, v in x.items()} | {"class": str(y)} for x, y in elec[:5000]]
    c = time.process_time()
    for i, row in enumerate(sample):
        decoder.decode_row(row, i)
    decode_rate = len(sample) / (time.process_time() - c)

    results: list[dict[str, Any]] = []
    for name, (rows, drifts) in streams.items():
        results.extend(compare(name, rows, drifts, river_limit))
        print(f"done {name} ({time.perf_counter() - t0:.0f} s)", flush=True)
    report: dict[str, Any] = {
        "decode_events_per_s": decode_rate,
        "quick": args.quick,
        "synthetic_events": n_synth,
    }
    print("\n## Prequential accuracy and speed (same run)\n")
    print(table(results))
    means = {}
    for model in {r["model"] for r in results}:
        accs = [r["accuracy"] for r in results if r["model"] == model and r["stream"] != "elec2"]
        means[model] = float(np.mean(accs))
    print(
        "\nMean accuracy over the synthetic streams: "
        + ", ".join(f"{m}: {a:.4f}" for m, a in sorted(means.items(), key=lambda t: -t[1]))
    )
    print(
        f"\nDecoding CSV rows to events (EventDecoder, pydantic): {decode_rate:,.0f} events/s "
        "(CPU); not included above."
    )
    report["results"] = [{k: v for k, v in r.items() if k != "correct"} for r in results]
    report["synthetic_mean_accuracy"] = means

    reg_rows, reg_drifts = friedman(n_synth)
    reg = regression_compare(reg_rows, reg_drifts, river_limit)
    print("\n## Regression with drift (same run)\n")
    print(regression_table(reg))
    report["regression"] = [{k: v for k, v in r.items() if k != "abs_error"} for r in reg]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_suffix(".png")
    figure(results, {n: d for n, (_, d) in streams.items()}, reg, reg_drifts, png)
    print(f"\nwrote {png}")

    if "digits" not in args.skip:
        dig = digits_forgetting()
        print("\n## Class-incremental digits (pairs of classes, then recurring)\n")
        print(
            "| model | accuracy | first visit | first 100 events of a recurrence | "
            "forgetting (end of visit - recurrence) |\n|---|---|---|---|---|"
        )
        for r in dig:
            print(
                f"| {r['model']} | {r['accuracy']:.4f} | {r['first_visit']:.4f} | "
                f"{r['recurrence_first_100']:.4f} | {r['forgetting']:.4f} |"
            )
        report["digits"] = dig
    if "optimisers" not in args.skip:
        opt_streams = {n: s for n, (s, _) in streams.items()}
        comp = optimiser_comparison(opt_streams)
        print("\n## Optimiser and plasticity variants (accuracy / events per CPU second)\n")
        names = list(opt_streams)
        print("| variant | " + " | ".join(names) + " | mean synthetic |")
        print("|---|" + "---|" * (len(names) + 1))
        for row in comp:
            cells = [f"{row[n]['accuracy']:.4f} / {row[n]['events_per_s']:,.0f}" for n in names]
            mean = np.mean([row[n]["accuracy"] for n in names if n != "elec2"])
            print(f"| {row['variant']} | " + " | ".join(cells) + f" | {mean:.4f} |")
        report["optimisers"] = comp
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    out.write_text(json.dumps(report, indent=1, default=float))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

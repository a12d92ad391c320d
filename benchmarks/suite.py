"""Benchmark suite: streamcl's defaults against river's learners on many streams, one table.

Streams (classification): river's generators with abrupt, gradual, incremental and
recurring drifts (SEA, Agrawal, STAGGER, Sine, Mixed, RandomRBF, RandomRBFDrift, Hyperplane,
LED, LEDDrift, Waveform, RandomTree; drifts by nesting ``ConceptDriftStream``), each with
three seeds (``SEEDS``): seed 1 is the *tuning* one (defaults may be chosen on it), seeds 2
and 3 the *held-out* ones (reported separately, never tuned on); and the real streams that
need no download: elec2 (``../shared/data/elec2.csv`` or the packaged copy) and the files
river ships inside its package (Phishing, Bananas, ImageSegments, Shuttle). Regression:
FriedmanDrift (local expanding and global gradual drifts) and river's TrumpApproval and
ChickWeights, scored by MAE.

Every model runs test-then-train on the same rows in the same process (the loops are
``benchmarks/prequential.py``'s ``streamcl_pass`` and ``river_pass``): streamcl's defaults
(``LearnerSettings()``), river's NoChange, LogisticRegression (binary) or
SoftmaxRegression (multi-class) after a StandardScaler, HoeffdingAdaptiveTree, ARF (10
models), kNN (k=5 over a SWINN window of 1,000, scaled inputs) and LeveragingBagging
(streams up to 20k events). Categorical strings are one-hot encoded for river's models;
streamcl gets the raw rows. Speed is events per CPU second of the process (the machine is
shared), ``x ARF`` its ratio to ARF's on the same stream.

River's results do not depend on streamcl's settings: they are cached in
``reports/suite_cache/`` (``--cache refresh`` recomputes, ``--cache only`` leaves out what
is missing), so a tuning run of streamcl variants (``--set learner.label_lags=0 --models
streamcl``) costs only streamcl's time.

Usage::

    python benchmarks/suite.py                               # everything (~25 CPU min cold)
    python benchmarks/suite.py --seeds heldout --streams SEA Agrawal
    python benchmarks/suite.py --models streamcl --set learner.hedge_eta=2

Prints the table (markdown), mean ranks and the targets of issue 13, writes
``reports/suite.json``, one PNG per stream in ``reports/suite/``, and a JSON summary as the
last line.
"""

from __future__ import annotations

from streamcl.threads import single_threaded

single_threaded()  # as the streamcl command runs; before numpy, faiss or torch load

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from river import (
    datasets,
    dummy,
    ensemble,
    forest,
    linear_model,
    neighbors,
    preprocessing,
    stats,
    tree,
)
from river.datasets import synth

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prequential import Score, elec2, river_pass, streamcl_pass

from streamcl.settings import LearnerSettings

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "reports"
CACHE = REPORTS / "suite_cache"
SEEDS = {"tune": (1,), "heldout": (2, 3)}
LB_LIMIT = 20_000  # LeveragingBagging only on streams up to this many events

Rows = list[tuple[dict[str, Any], Any]]


# -- streams ----------------------------------------------------------------------------------
def _named(x: dict[Any, Any]) -> dict[str, Any]:
    return {f"x{k}" if isinstance(k, int) else str(k): v for k, v in x.items()}


def _label(y: Any) -> Any:
    return y if isinstance(y, str) else int(y)


def _drifting(parts: list[Any], n: int, width: int, seed: int) -> Rows:
    """``parts`` one after another, switching at n/4, n/2, 3n/4 (``ConceptDriftStream``)."""
    seg = n // len(parts)
    if width <= 1:  # river's sigmoid overflows for width 1 far from the change: switch exactly
        return [(_named(x), _label(y)) for part in parts for x, y in part.take(seg)]
    stream = parts[-1]
    for part in reversed(parts[:-1]):
        stream = synth.ConceptDriftStream(part, stream, position=seg, width=width, seed=seed)
    return [(_named(x), _label(y)) for x, y in stream.take(n)]


def _plain(gen: Any, n: int) -> Rows:
    return [(_named(x), _label(y)) for x, y in gen.take(n)]


#: name -> (kind of drift, rows(seed, n))
GENERATORS: dict[str, tuple[str, Callable[[int, int], Rows]]] = {
    "SEA abrupt": (
        "abrupt",
        lambda s, n: _drifting([synth.SEA(v, seed=s) for v in (0, 1, 2, 3)], n, 1, s),
    ),
    "SEA gradual": (
        "gradual",
        lambda s, n: _drifting([synth.SEA(v, seed=s) for v in (3, 2, 1, 0)], n, n // 20, s),
    ),
    "Agrawal abrupt": (
        "abrupt",
        lambda s, n: _drifting([synth.Agrawal(f, seed=s) for f in (0, 3, 6, 9)], n, 1, s),
    ),
    "Agrawal gradual": (
        "gradual",
        lambda s, n: _drifting([synth.Agrawal(f, seed=s) for f in (1, 4, 7, 2)], n, n // 20, s),
    ),
    "Agrawal recurring": (
        "recurring",
        lambda s, n: _drifting([synth.Agrawal(f, seed=s) for f in (0, 2, 0, 2)], n, 1, s),
    ),
    "STAGGER recurring": (
        "recurring",
        lambda s, n: _drifting([synth.STAGGER(f, seed=s) for f in (0, 1, 2, 0)], n, 1, s),
    ),
    "Sine abrupt": (
        "abrupt",
        lambda s, n: _drifting([synth.Sine(f, seed=s) for f in (0, 1, 2, 3)], n, 1, s),
    ),
    "Mixed recurring": (
        "recurring",
        lambda s, n: _drifting([synth.Mixed(f, seed=s) for f in (0, 1, 0, 1)], n, 1, s),
    ),
    "RandomRBF abrupt": (
        "abrupt",
        lambda s, n: _drifting(
            [synth.RandomRBF(10 * s + i, s, n_features=10, n_centroids=20) for i in range(4)],
            n,
            1,
            s,
        ),
    ),
    "RandomRBFDrift incremental": (
        "incremental",
        lambda s, n: _plain(
            synth.RandomRBFDrift(s, s, n_classes=3, n_centroids=30, change_speed=0.001), n
        ),
    ),
    "Hyperplane incremental": (
        "incremental",
        lambda s, n: _plain(
            synth.Hyperplane(s, 10, n_drift_features=5, mag_change=0.001, noise_percentage=0.05),
            n,
        ),
    ),
    "LED stationary": ("none", lambda s, n: _plain(synth.LED(s, 0.1, True), n)),
    "LEDDrift abrupt": (
        "abrupt",
        lambda s, n: _drifting(
            [synth.LEDDrift(s, 0.1, True, n_drift_features=k) for k in (1, 3, 5, 7)], n, 1, s
        ),
    ),
    "Waveform stationary": ("none", lambda s, n: _plain(synth.Waveform(s), n)),
    "RandomTree stationary": ("none", lambda s, n: _plain(synth.RandomTree(s, s), n)),
}


def _river_dataset(ds: Any) -> Rows:
    return [(_named(x), _label(y)) for x, y in ds]


#: name -> rows(); only files shipped inside river's package (no download)
REAL: dict[str, Callable[[], Rows]] = {
    "elec2": lambda: elec2(None),
    "Phishing": lambda: _river_dataset(datasets.Phishing()),
    "Bananas": lambda: _river_dataset(datasets.Bananas()),
    "ImageSegments": lambda: _river_dataset(datasets.ImageSegments()),
    "Shuttle": lambda: _river_dataset(datasets.Shuttle()),
}


def regression_streams(n: int, seeds: tuple[int, ...]) -> dict[str, list[tuple[dict, float]]]:
    """FriedmanDrift (two drift types) per seed, TrumpApproval, ChickWeights."""
    out: dict[str, list[tuple[dict, float]]] = {}
    q = n // 4
    for s in seeds:
        for kind, pos in (("lea", (q, 2 * q, 3 * q)), ("gra", (n // 3, 2 * n // 3))):
            gen = synth.FriedmanDrift(drift_type=kind, position=pos, seed=s)
            out[f"FriedmanDrift {kind} s{s}"] = [(_named(x), float(y)) for x, y in gen.take(n)]
    for name, ds in (("TrumpApproval", datasets.TrumpApproval()), ("ChickWeights", None)):
        if ds is None:
            ds = datasets.ChickWeights()
        out[name] = [(_named(x), float(y)) for x, y in ds]
    return out


# -- models -----------------------------------------------------------------------------------
def river_models(n_classes: int, n_events: int) -> dict[str, Callable[[], Any]]:
    """River's classifiers of the suite (LeveragingBagging only on short streams)."""
    linear: Callable[[], Any] = (
        linear_model.LogisticRegression if n_classes <= 2 else linear_model.SoftmaxRegression
    )
    models: dict[str, Callable[[], Any]] = {
        "NoChange": dummy.NoChangeClassifier,
        "LR": lambda: preprocessing.StandardScaler() | linear(),
        "HAT": lambda: tree.HoeffdingAdaptiveTreeClassifier(seed=42),
        "ARF": lambda: forest.ARFClassifier(n_models=10, seed=42),
        "kNN": lambda: (
            preprocessing.StandardScaler()
            | neighbors.KNNClassifier(n_neighbors=5, engine=neighbors.SWINN(maxlen=1000, seed=42))
        ),
    }
    if n_events <= LB_LIMIT:
        models["LB"] = lambda: ensemble.LeveragingBaggingClassifier(
            tree.HoeffdingTreeClassifier(), seed=42
        )
    return models


def one_hot(rows: Rows) -> Rows:
    """String features as one-hot entries (river's numeric models need numbers)."""
    if not any(isinstance(v, str) for x, _ in rows[:200] for v in x.values()):
        return rows
    return [
        (
            {
                (f"{k}={v}" if isinstance(v, str) else k): (1.0 if isinstance(v, str) else v)
                for k, v in x.items()
            },
            y,
        )
        for x, y in rows
    ]


def settings_from(overrides: list[str]) -> LearnerSettings:
    """``LearnerSettings`` with ``learner.a.b=value`` overrides (values parsed as YAML)."""
    tree_: dict[str, Any] = {}
    for item in overrides:
        key, _, value = item.partition("=")
        parts = key.removeprefix("learner.").split(".")
        node = tree_
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(value)
    return LearnerSettings(**tree_)


# -- evaluation -------------------------------------------------------------------------------
def _result(score: Score, seconds: float) -> dict[str, Any]:
    r = score.result(seconds)
    c = r.pop("correct")
    r["first_100"] = float(np.mean(c[:100]))
    r["first_1000"] = float(np.mean(c[:1000]))
    r["trace"] = "".join("1" if v else "0" for v in c)
    return r


def run_river_cached(
    stream: str, model: str, rows: Rows, factory: Callable[[], Any], cache: str
) -> dict[str, Any] | None:
    """River's result on a stream; ``cache``: use, only (None when absent) or refresh."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", f"{stream}__{model}__{len(rows)}")
    path = CACHE / f"{slug}.json"
    if cache != "refresh" and path.exists():
        return dict(json.loads(path.read_text()))
    if cache == "only":
        return None
    score = Score()
    result = _result(score, river_pass(one_hot(rows), factory(), score.update))
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return result


def run_stream(
    stream: str, rows: Rows, settings: LearnerSettings, models: list[str], cache: str
) -> list[dict[str, Any]]:
    """Every selected model on one stream; rows of the table."""
    n_classes = len({y for _, y in rows})
    out: list[dict[str, Any]] = []
    if "streamcl" in models:
        score = Score()
        learner, seconds = streamcl_pass(rows, settings, score.update)
        r = _result(score, seconds)
        r["weights"] = {k: round(v, 3) for k, v in learner.weights().items()}
        out.append({"model": "streamcl", **r})
    for name, factory in river_models(n_classes, len(rows)).items():
        if name in models or "river" in models:
            r = run_river_cached(stream, name, rows, factory, cache)
            if r is not None:
                out.append({"model": name, **r})
    arf = next((r for r in out if r["model"] == "ARF"), None)
    for r in out:
        r["stream"] = stream
        r["n_classes"] = n_classes
        r["x_arf"] = r["events_per_s"] / arf["events_per_s"] if arf else float("nan")
    return out


# -- report -----------------------------------------------------------------------------------
def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| stream | model | accuracy | kappa-temporal | first 100 | first 1000 | events/s (CPU) "
        "| x ARF |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['stream']} | {r['model']} | {r['accuracy']:.4f} | {r['kappa_temporal']:.3f} | "
            f"{r['first_100']:.3f} | {r['first_1000']:.3f} | {r['events_per_s']:,.0f} | "
            f"{r['x_arf']:.1f} |"
        )
    return "\n".join(lines)


def wide_table(results: list[dict[str, Any]], models: list[str]) -> str:
    """One line per stream: every model's accuracy, streamcl's gap to the best other one."""
    streams = list(dict.fromkeys(r["stream"] for r in results))
    lines = [
        "| stream | n | " + " | ".join(models) + " | gap to best | streamcl first 1000 "
        "(LR) | x ARF |",
        "|---|---|" + "---|" * len(models) + "---|---|---|",
    ]
    for s in streams:
        by = {r["model"]: r for r in results if r["stream"] == s}
        cells = [f"{by[m]['accuracy']:.4f}" if m in by else "-" for m in models]
        g = gap(by)
        sc, lr = by.get("streamcl"), by.get("LR")
        first = f"{sc['first_1000']:.3f} ({lr['first_1000']:.3f})" if sc and lr else "-"
        x = f"{sc['x_arf']:.1f}" if sc else "-"
        n = next(iter(by.values()))["n"]
        lines.append(
            f"| {s} | {n} | " + " | ".join(cells) + f" | {g:+.4f} | {first} | {x} |"
            if g == g
            else f"| {s} | {n} | " + " | ".join(cells) + " | - | - | - |"
        )
    return "\n".join(lines)


def gap(by: dict[str, dict[str, Any]]) -> float:
    """Streamcl's accuracy minus the best other model's (NaN without both)."""
    others = [r["accuracy"] for m, r in by.items() if m != "streamcl"]
    if "streamcl" not in by or not others:
        return float("nan")
    return float(by["streamcl"]["accuracy"] - max(others))


def mean_ranks(results: list[dict[str, Any]]) -> dict[str, float]:
    """Mean rank of each model by accuracy over the streams (1 = best; ties averaged)."""
    ranks: dict[str, list[float]] = {}
    for s in dict.fromkeys(r["stream"] for r in results):
        rows = [r for r in results if r["stream"] == s]
        accs = np.array([r["accuracy"] for r in rows])
        for r in rows:
            rank = 1 + float(np.sum(accs > r["accuracy"])) + (np.sum(accs == r["accuracy"]) - 1) / 2
            ranks.setdefault(r["model"], []).append(rank)
    return {m: float(np.mean(v)) for m, v in sorted(ranks.items(), key=lambda t: np.mean(t[1]))}


def targets(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Issue 13's targets over a group of streams."""
    streams = list(dict.fromkeys(r["stream"] for r in results))
    within, vs_nc, x_arf, first, gaps = 0, [], [], 0, []
    for s in streams:
        by = {r["model"]: r for r in results if r["stream"] == s}
        if "streamcl" not in by:
            continue
        g = gap(by)
        gaps.append(g)
        within += g >= -0.005
        if "NoChange" in by:
            vs_nc.append(by["streamcl"]["accuracy"] - by["NoChange"]["accuracy"])
        if by["streamcl"]["x_arf"] == by["streamcl"]["x_arf"]:
            x_arf.append(by["streamcl"]["x_arf"])
        if "LR" in by:
            first += by["streamcl"]["first_1000"] >= by["LR"]["first_1000"]
    n = len(gaps)
    return {
        "streams": n,
        "within_0.005_of_best": within,
        "share_within": within / n if n else float("nan"),
        "mean_gap_to_best": float(np.mean(gaps)) if gaps else float("nan"),
        "worst_gap_to_best": float(min(gaps)) if gaps else float("nan"),
        "worst_vs_nochange": float(min(vs_nc)) if vs_nc else float("nan"),
        "min_x_arf": float(min(x_arf)) if x_arf else float("nan"),
        "first_1000_at_least_lr": first,
        "mean_accuracy_streamcl": float(
            np.mean([r["accuracy"] for r in results if r["model"] == "streamcl"])
        )
        if n
        else float("nan"),
    }


def plot(stream: str, results: list[dict[str, Any]], folder: Path) -> None:
    """Windowed accuracy of every model over the stream."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = results[0]["n"]
    window = max(50, n // 40)
    fig, ax = plt.subplots(figsize=(9, 3))
    kernel = np.ones(window) / window
    for r in results:
        c = np.frombuffer(r["trace"].encode(), dtype=np.uint8) - ord("0")
        if len(c) < window:
            continue
        ax.plot(
            np.arange(window, len(c) + 1),
            np.convolve(c, kernel, "valid"),
            lw=1.6 if r["model"] == "streamcl" else 0.8,
            label=r["model"],
        )
    ax.set_title(stream, fontsize=9)
    ax.set_xlabel("event")
    ax.set_ylabel(f"accuracy ({window})")
    ax.legend(fontsize=7, ncol=4, loc="lower right")
    fig.tight_layout()
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / (re.sub(r"[^A-Za-z0-9]+", "_", stream) + ".png"), dpi=80)
    plt.close(fig)


def regression(
    n: int, seeds: tuple[int, ...], settings: LearnerSettings, use_river: bool
) -> list[dict[str, Any]]:
    """MAE of streamcl (task: regression) and river's regressors, per regression stream."""
    from river import compose

    reg = settings.model_copy(update={"task": "regression"})
    models: dict[str, Callable[[], Any]] = {
        "mean": lambda: dummy.StatisticRegressor(stats.Mean()),
        "LinearRegression": lambda: (
            preprocessing.StandardScaler() | linear_model.LinearRegression()
        ),
        "HATR": lambda: (
            preprocessing.StandardScaler() | tree.HoeffdingAdaptiveTreeRegressor(seed=42)
        ),
        "ARFR": lambda: compose.Pipeline(
            preprocessing.StandardScaler(), forest.ARFRegressor(seed=42)
        ),
    }
    out = []
    errors: list[float] = []

    def absolute(p: Any, y: float) -> None:
        errors.append(abs((p if p is not None else 0.0) - y))

    for name, rows in regression_streams(n, seeds).items():
        errors.clear()

        _, seconds = streamcl_pass(rows, reg, absolute)
        line = {
            "stream": name,
            "n": len(rows),
            "streamcl": float(np.mean(errors)),
            "streamcl_events_per_s": len(rows) / seconds,
        }
        for model, factory in models.items() if use_river else ():
            errors.clear()
            seconds = river_pass(rows, factory(), absolute)
            line[model] = float(np.mean(errors))
            line[f"{model}_events_per_s"] = len(rows) / seconds
        out.append(line)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--streams",
        nargs="*",
        default=None,
        help="substrings of stream names to run (default: all)",
    )
    parser.add_argument("--seeds", choices=["tune", "heldout", "all"], default="all")
    parser.add_argument("--no-real", action="store_true", help="skip the real streams")
    parser.add_argument("--no-regression", action="store_true")
    parser.add_argument(
        "--models",
        nargs="*",
        default=["streamcl", "NoChange", "LR", "HAT", "ARF", "kNN", "LB"],
        help="streamcl, river (all of river's), or names",
    )
    parser.add_argument("--events", type=int, default=3_000, help="events per generator stream")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        dest="overrides",
        help="streamcl settings, e.g. learner.label_lags=0 memory.k=5",
    )
    parser.add_argument(
        "--cache",
        choices=["use", "only", "refresh"],
        default="use",
        help="river's cached results: use them (run what is missing), only them, or rerun",
    )
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--out", default=str(REPORTS / "suite.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = settings_from(args.overrides)
    wanted = (
        (lambda name: any(s.lower() in name.lower() for s in args.streams))
        if args.streams
        else (lambda name: True)
    )
    groups = ["tune", "heldout"] if args.seeds == "all" else [args.seeds]
    jobs: list[tuple[str, str, Callable[[], Rows]]] = []
    for group in groups:
        for name, (_, make) in GENERATORS.items():
            for seed in SEEDS[group]:
                if wanted(name):
                    jobs.append(
                        (
                            group,
                            f"{name} s{seed}",
                            lambda make=make, seed=seed: make(seed, args.events),
                        )
                    )
    if not args.no_real:
        jobs += [("real", name, make) for name, make in REAL.items() if wanted(name)]
    started = time.process_time()
    results: list[dict[str, Any]] = []
    for group, name, make in jobs:
        rows = make()
        res = run_stream(name, rows, settings, args.models, args.cache)
        for r in res:
            r["group"] = group
        results += res
        if not args.no_plots:
            plot(name, res, REPORTS / "suite")
        sc = next((r for r in res if r["model"] == "streamcl"), None)
        by = {r["model"]: r for r in res}
        print(
            f"{name}: "
            + ", ".join(f"{r['model']} {r['accuracy']:.4f}" for r in res)
            + (f" | gap {gap(by):+.4f} x ARF {sc['x_arf']:.1f}" if sc else "")
            + f" [{time.process_time() - started:.0f} CPU s]",
            flush=True,
        )
    models = [
        m
        for m in ["streamcl", "NoChange", "LR", "HAT", "ARF", "kNN", "LB"]
        if any(r["model"] == m for r in results)
    ]
    summary: dict[str, Any] = {"settings": args.overrides, "events": args.events}
    for group in ("tune", "heldout", "real"):
        part = [r for r in results if r["group"] == group]
        if not part:
            continue
        print(f"\n## {group} streams\n")
        print(wide_table(part, models))
        ranks = mean_ranks(part)
        print("\nmean rank: " + ", ".join(f"{m} {v:.2f}" for m, v in ranks.items()))
        t = targets(part)
        print("targets: " + json.dumps(t))
        summary[group] = {"targets": t, "mean_ranks": ranks}
    if len(models) > 1:
        print("\n## every model, every stream\n")
        print(table(results))
    if not args.no_regression:
        reg = regression(args.events, SEEDS["heldout"], settings, args.models != ["streamcl"])
        print("\n## regression (MAE, lower is better)\n")
        cols = [c for c in ("streamcl", "mean", "LinearRegression", "HATR", "ARFR") if c in reg[0]]
        print("| stream | n | " + " | ".join(cols) + " |\n|---|---|" + "---|" * len(cols))
        for line in reg:
            print(
                f"| {line['stream']} | {line['n']} | "
                + " | ".join(f"{line[c]:.3f}" for c in cols)
                + " |"
            )
        summary["regression"] = reg
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "summary": summary,
                "results": [{k: v for k, v in r.items() if k != "trace"} for r in results],
            },
            indent=1,
        )
    )
    print(f"\ntotal {time.process_time() - started:.0f} CPU s; wrote {out}")
    print(
        json.dumps({g: summary[g]["targets"] for g in ("tune", "heldout", "real") if g in summary})
    )


if __name__ == "__main__":
    main()

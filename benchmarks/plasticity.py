"""Loss-of-plasticity benchmark: long non-stationary streams, plain optimisers vs methods.

Streams (all scaled to a 2-core CPU):

* ``label_permuted``: scikit-learn's digits (1797 images, 64 pixels scaled to [0, 1]); every
  ``--task-events`` events the class labels are permuted at random (Elsayed & Mahmood 2024).
* ``input_permuted``: same images, every task permutes the 64 pixels (Dohare et al. 2024).
* ``slow_regression``: Dohare et al.'s slowly-changing regression: 20 input bits, 15 of which
  change slowly (one flips per task) and 5 are random each event, plus a fixed random
  teacher network of 100 threshold units; the target is the teacher's output (loss: MSE).

Every configuration sees the same events and learns online from micro-batches of
``--batch`` events with the learner's MLP (hidden ``(64, 64)``): it first predicts a batch
(prequential accuracy / squared error), then learns from it. Shrink-and-perturb gets an
oracle drift signal at each task boundary. Health metrics (``streamcl.learning.plasticity.health``)
are taken every ``--health-every`` steps on a fixed probe batch of 256 events of the current
task.

Usage::

    python benchmarks/plasticity.py            # default (~10 min on 2 cores)
    python benchmarks/plasticity.py --quick    # ~1 min
    python benchmarks/plasticity.py --out reports/ --streams label_permuted

Writes ``<out>/plasticity.json`` (per-task metric and health over time for every stream and
configuration, a first-10%/last-10% summary and runtimes) and ``<out>/plasticity.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamcl.learning.network import MLP
from streamcl.learning.plasticity import (
    build_methods,
    build_optimizer,
    health,
    optimizer_kwargs,
)
from streamcl.settings import PlasticitySettings, load_settings

STREAMS = ("label_permuted", "input_permuted", "slow_regression")


@dataclass(frozen=True)
class Config:
    """One learner configuration: optimiser, step size and plasticity methods."""

    name: str
    optimizer: str
    lr: float
    methods: tuple[str, ...] = ()
    settings: tuple[tuple[str, float], ...] = ()  # PlasticitySettings overrides


def _default_config() -> Config:
    """The shipped default (``config/default.yaml``): optimiser, lr and methods."""
    s = load_settings(Path(__file__).resolve().parents[1] / "config" / "default.yaml")
    return Config("streamcl-default", s.learner.optimizer, s.learner.lr, s.plasticity.methods)


_DEFAULT = _default_config()

CONFIGS = (
    _DEFAULT,
    Config("default+l2_init", _DEFAULT.optimizer, _DEFAULT.lr, ("l2_init",)),
    Config(
        "default+cbp_1e-3",
        _DEFAULT.optimizer,
        _DEFAULT.lr,
        ("cbp",),
        (("cbp_replacement_rate", 1e-3),),
    ),
    Config("default+redo", _DEFAULT.optimizer, _DEFAULT.lr, ("redo",)),
    Config("sgd", "sgd", 0.05),
    Config("adam", "adam", 0.01),
    Config("upgd", "upgd", 0.05),
    Config("adam+cbp", "adam", 0.01, ("cbp",)),
    Config("adam+cbp_1e-3", "adam", 0.01, ("cbp",), (("cbp_replacement_rate", 1e-3),)),
    Config("adam+redo", "adam", 0.01, ("redo",)),
    Config("adam+shrink_perturb", "adam", 0.01, ("shrink_perturb",)),
    Config("adam+l2_init", "adam", 0.01, ("l2_init",)),
    Config("adam+spectral", "adam", 0.01, ("spectral",)),
)


def make_stream(kind: str, n_tasks: int, task_events: int, seed: int) -> dict[str, np.ndarray]:
    """All events of a stream.

    ``x`` ``(n, n_inputs)`` float32, ``y`` ``(n,)`` int64 class labels or float32 targets,
    ``task`` ``(n,)`` int64 task index.
    """
    rng = np.random.default_rng(seed)
    n = n_tasks * task_events
    task = np.repeat(np.arange(n_tasks), task_events)
    if kind == "slow_regression":
        return {"task": task, **_slow_regression(rng, n_tasks, task_events)}
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.data / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    xs, ys = [], []
    for _ in range(n_tasks):
        idx = rng.integers(0, len(images), task_events)
        if kind == "label_permuted":
            xs.append(images[idx])
            ys.append(rng.permutation(10)[labels[idx]])
        elif kind == "input_permuted":
            xs.append(images[idx][:, rng.permutation(64)])
            ys.append(labels[idx])
        else:
            raise ValueError(f"unknown stream {kind!r}")
    return {"x": np.concatenate(xs), "y": np.concatenate(ys), "task": task[:n]}


def _slow_regression(
    rng: np.random.Generator, n_tasks: int, task_events: int
) -> dict[str, np.ndarray]:
    """Dohare et al.'s slowly-changing regression, 15 slow bits + 5 random bits + bias."""
    n_slow, n_fast, width = 15, 5, 100
    w1 = rng.choice([-1.0, 1.0], size=(n_slow + n_fast + 1, width))
    w2 = rng.choice([-1.0, 1.0], size=width)
    threshold = 0.7 * (n_slow + n_fast + 1) - np.sum(w1 < 0, axis=0)  # LTU thresholds
    slow = rng.integers(0, 2, n_slow).astype(np.float64)
    xs = []
    for _ in range(n_tasks):
        flip = rng.integers(n_slow)
        slow[flip] = 1.0 - slow[flip]
        fast = rng.integers(0, 2, (task_events, n_fast)).astype(np.float64)
        xs.append(np.hstack([np.tile(slow, (task_events, 1)), fast, np.ones((task_events, 1))]))
    x = np.concatenate(xs)
    hidden = (x @ w1 > threshold).astype(np.float64)
    y = hidden @ w2 / np.sqrt(width)
    return {"x": x[:, :-1].astype(np.float32), "y": y.astype(np.float32)}


def run_one(args: tuple[str, Config, dict[str, Any]]) -> dict[str, Any]:
    """Learn one stream with one configuration; per-task metric, health snapshots, runtime."""
    kind, cfg, opts = args
    torch.set_num_threads(1)
    torch.manual_seed(opts["seed"])
    data = make_stream(kind, opts["n_tasks"], opts["task_events"], opts["seed"])
    regression = kind == "slow_regression"
    x_all = torch.from_numpy(data["x"])
    y_all = torch.from_numpy(data["y"])
    model = MLP(x_all.shape[1], (64, 64), 1 if regression else 10, seed=opts["seed"])
    settings = PlasticitySettings(methods=cfg.methods, seed=opts["seed"], **dict(cfg.settings))
    methods = build_methods(settings, model)
    opt = build_optimizer(
        cfg.optimizer, model.parameters(), cfg.lr, **optimizer_kwargs(cfg.optimizer, settings)
    )
    bs, te = opts["batch"], opts["task_events"]
    per_task = np.zeros(opts["n_tasks"])
    snapshots: list[dict[str, float]] = []
    resets = 0
    start = time.perf_counter()
    for step, lo in enumerate(range(0, len(x_all), bs), start=1):
        x, y = x_all[lo : lo + bs], y_all[lo : lo + bs]
        if lo % te == 0 and lo > 0:
            for m in methods:
                m.on_drift(model)
        logits, acts = model.forward_with_activations(x)
        if regression:
            loss = torch.nn.functional.mse_loss(logits.squeeze(1), y)
            per_task[lo // te] += float(((logits.detach().squeeze(1) - y) ** 2).sum())
        else:
            loss = torch.nn.functional.cross_entropy(logits, y)
            per_task[lo // te] += float((logits.argmax(1) == y).sum())
        for m in methods:
            term = m.loss_term(model)
            if term is not None:
                loss = loss + term
        opt.zero_grad()
        loss.backward()
        opt.step()
        resets += sum(m.after_step(model, acts, step, opt) for m in methods)
        if step % opts["health_every"] == 0:
            snapshots.append(_health_snapshot(model, x_all, lo, te, step))
    per_task /= te
    return {
        "stream": kind,
        "config": cfg.name,
        "per_task": per_task.tolist(),
        "health": snapshots,
        "units_reset": resets,
        "seconds": time.perf_counter() - start,
    }


def _health_snapshot(
    model: MLP, x_all: torch.Tensor, lo: int, te: int, step: int
) -> dict[str, float]:
    """Health on 256 events of the current task (gradients are those of the last step)."""
    task_start = (lo // te) * te
    probe = x_all[task_start : task_start + min(256, te)]
    with torch.no_grad():
        _, acts = model.forward_with_activations(probe)
    return {"step": float(step), **health(model, acts, tau=0.0)}


def summarise(result: dict[str, Any]) -> dict[str, float]:
    """Mean per-task metric over the first and the last 10% of tasks."""
    per_task = np.asarray(result["per_task"])
    k = max(1, len(per_task) // 10)
    out = {"first_10pct": float(per_task[:k].mean()), "last_10pct": float(per_task[-k:].mean())}
    if result["health"]:
        first, last = result["health"][0], result["health"][-1]
        for key in ("dormant_fraction_layer1", "effective_rank", "weight_magnitude"):
            out[f"{key}_first"], out[f"{key}_last"] = first[key], last[key]
    return out


def plot(results: list[dict[str, Any]], streams: list[str], path: Path) -> None:
    """Per-task metric across the stream, one panel per stream, one line per config."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(streams), figsize=(6 * len(streams), 4.5), squeeze=False)
    for ax, kind in zip(axes[0], streams, strict=True):
        for r in (r for r in results if r["stream"] == kind):
            y = np.asarray(r["per_task"])
            w = max(1, len(y) // 40)
            smooth = np.convolve(y, np.ones(w) / w, mode="valid")
            ax.plot(np.arange(len(smooth)) + w - 1, smooth, label=r["config"], lw=1.2)
        ax.set_title(kind)
        ax.set_xlabel("task")
        ax.set_ylabel(
            "online MSE per task" if kind == "slow_regression" else "online accuracy per task"
        )
        if kind == "slow_regression":
            ax.set_yscale("log")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line; --quick shrinks the streams to about a minute."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("reports"))
    ap.add_argument("--quick", action="store_true", help="short streams (~1 min)")
    ap.add_argument("--streams", nargs="+", choices=STREAMS, default=list(STREAMS))
    ap.add_argument(
        "--configs", nargs="+", choices=[c.name for c in CONFIGS], default=[c.name for c in CONFIGS]
    )
    ap.add_argument("--tasks", type=int, default=None, help="tasks per stream")
    ap.add_argument("--task-events", type=int, default=None, help="events per task")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--health-every", type=int, default=250)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every (stream, config) pair, write JSON and PNG, print the summary table."""
    a = parse_args(argv)
    n_tasks = a.tasks or (40 if a.quick else 200)
    task_events = a.task_events or (320 if a.quick else 1600)
    opts = {
        "n_tasks": n_tasks,
        "task_events": task_events,
        "batch": a.batch,
        "health_every": a.health_every,
        "seed": a.seed,
    }
    jobs = [(s, c, opts) for s in a.streams for c in CONFIGS if c.name in a.configs]
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=a.workers) as pool:
        results = list(pool.map(run_one, jobs))
    total = time.perf_counter() - start
    summary = {
        f"{r['stream']}/{r['config']}": {
            **summarise(r),
            "seconds": r["seconds"],
            "units_reset": r["units_reset"],
        }
        for r in results
    }
    report = {
        "options": {**opts, "quick": a.quick},
        "total_seconds": total,
        "summary": summary,
        "results": results,
    }
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "plasticity.json").write_text(json.dumps(report, indent=1))
    plot(results, a.streams, a.out / "plasticity.png")
    print(
        f"{'stream/config':40s} {'first10%':>9s} {'last10%':>9s} {'dead1':>11s} "
        f"{'erank':>11s} {'|w|':>11s} {'s':>6s}"
    )
    for key, v in summary.items():
        dead = (v.get("dormant_fraction_layer1_first", 0), v.get("dormant_fraction_layer1_last", 0))
        print(
            f"{key:40s} {v['first_10pct']:9.4f} {v['last_10pct']:9.4f} "
            f"{dead[0]:5.2f}>{dead[1]:5.2f} "
            f"{v.get('effective_rank_first', 0):5.1f}>{v.get('effective_rank_last', 0):5.1f} "
            f"{v.get('weight_magnitude_first', 0):5.3f}>{v.get('weight_magnitude_last', 0):5.3f} "
            f"{v['seconds']:6.1f}"
        )
    print(f"total {total:.1f} s; wrote {a.out / 'plasticity.json'} and {a.out / 'plasticity.png'}")
    return report


if __name__ == "__main__":
    main()

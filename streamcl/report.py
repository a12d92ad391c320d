"""Reports of a finished run: the dashboard page as one self-contained HTML file, or a PNG.

The HTML report is the live dashboard's own page (``streamcl/serving/static``) with its
stylesheets, uPlot (its MIT license included as a comment) and script inlined and the data
embedded, so it opens from disk with no server and no network. The PNG draws the same
content with matplotlib: windowed and cumulative score with the no-change baseline and drift
markers by detector, the stability gap and recovery per loss drift, the Hedge weights and the
plasticity health.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from streamcl.serving.dashboard import static_text

__all__ = ["REPORT_SUFFIXES", "render_html", "write_html", "write_png", "write_report"]

#: Report file types by suffix.
REPORT_SUFFIXES = (".html", ".htm", ".png")

UPLOT_JS = "vendor/uPlot.iife.min.js"
DETECTOR_COLOURS = {"loss": "#d62728", "input": "#ff9f1c"}


def _inline(page: str, tag: str, replacement: str) -> str:
    if tag not in page:
        raise ValueError(f"dashboard.html has no {tag!r} to inline")
    return page.replace(tag, replacement)


def render_html(model: dict[str, Any], history: dict[str, Any], title: str = "") -> str:
    """The dashboard page with everything inlined and ``model``/``history`` embedded.

    Parameters
    ----------
    model
        What ``GET /v1/model`` answers (``Service.describe()``).
    history
        What ``GET /v1/history`` answers (``History.to_dict()``).
    title
        Shown in the page header (e.g. the replayed file).

    Raises
    ------
    ValueError
        The packaged page lacks a tag to inline, or the data hold a non-finite number.
    """
    data = {
        "model": _finite(model),
        "history": history,
        "title": f"replay report: {title}" if title else "replay report",
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    blob = json.dumps(data, allow_nan=False).replace("<", "\\u003c")  # never closes the script
    licence = static_text("vendor/uPlot.LICENSE").replace("--", "- -")
    page = static_text("dashboard.html")
    for name in ("vendor/uPlot.min.css", "dashboard.css"):
        tag = f'<link rel="stylesheet" href="dashboard/static/{name}">'
        page = _inline(page, tag, f"<style>\n{static_text(name)}\n</style>")
    page = _inline(
        page,
        '<script src="dashboard/static/vendor/uPlot.iife.min.js"></script>',
        f"<!-- uPlot, {licence} -->\n<script>\n{static_text(UPLOT_JS)}\n</script>",
    )
    return _inline(
        page,
        '<script src="dashboard/static/dashboard.js"></script>',
        f'<script id="streamcl-data" type="application/json">{blob}</script>\n'
        f"<script>\n{static_text('dashboard.js')}\n</script>",
    )


def write_html(path: Path, model: dict[str, Any], history: dict[str, Any], title: str = "") -> None:
    """Write :func:`render_html` to ``path`` (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(model, history, title), encoding="utf-8")


def _finite(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _score_panel(ax: Any, history: dict[str, Any]) -> None:
    """Windowed and cumulative score, the no-change baseline and the drift markers."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    s, what = history["series"], "accuracy" if history["metric"] == "accuracy" else "MAE"
    x = s.get("events", [])
    styles = (
        ("score", f"{what}, window", "#1f77b4", "-", 1.6),
        ("cumulative", f"{what}, cumulative", "#2ca02c", "-", 1.6),
        ("baseline", "no-change, window", "#7f7f7f", "--", 1.0),
        ("baseline_cumulative", "no-change, cumulative", "#b0b0b0", ":", 1.2),
    )
    for key, label, colour, ls, lw in styles:
        ys = [float("nan") if v is None else v for v in s.get(key, [])]
        ax.plot(x, ys, color=colour, ls=ls, lw=lw, label=label)
    for d in history["drifts"]:
        colour = DETECTOR_COLOURS.get(d["detector"], "#555555")
        ax.axvspan(d["change_point"], d["event"], color=colour, alpha=0.12, lw=0)
        ax.axvline(d["event"], color=colour, lw=0.9, ls="-" if d["detector"] == "loss" else "--")
    counts = {k: sum(d["detector"] == k for d in history["drifts"]) for k in DETECTOR_COLOURS}
    handles, _ = ax.get_legend_handles_labels()
    handles += [
        Line2D([], [], color=DETECTOR_COLOURS["loss"], label=f"loss drift ({counts['loss']})"),
        Line2D(
            [],
            [],
            color=DETECTOR_COLOURS["input"],
            ls="--",
            label=f"input drift ({counts['input']})",
        ),
        Patch(color=DETECTOR_COLOURS["loss"], alpha=0.2, label="change point to detection"),
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8, ncol=7)
    ax.set_xlabel("events")
    ax.set_ylabel(what)
    ax.grid(alpha=0.3)


def _recovery_panel(ax: Any, history: dict[str, Any]) -> None:
    """Stability gap (bars, points) and recovery (dots, events) per loss drift."""
    rows = [d for d in history["drifts"] if d["detector"] == "loss"]
    ax.set_title("recovery after each loss drift", fontsize=10)
    if not rows:
        ax.text(0.5, 0.5, "no loss drift", ha="center", va="center", transform=ax.transAxes)
        return
    xs = list(range(1, len(rows) + 1))
    gaps = [100 * (d["stability_gap"] or 0.0) for d in rows]
    ax.bar(xs, gaps, color=DETECTOR_COLOURS["loss"], alpha=0.6, label="stability gap")
    ax.set_xlabel("loss drift #")
    ax.set_ylabel("stability gap (points)")
    right = ax.twinx()
    rec = [float("nan") if d["recovery_events"] is None else d["recovery_events"] for d in rows]
    right.plot(xs, rec, "o", color="#1f77b4", label="recovery")
    right.set_ylabel("recovery (events)")
    right.set_ylim(bottom=0)
    ax.set_xticks(xs)


def _keyed_panel(ax: Any, history: dict[str, Any], key: str, title: str, ylabel: str) -> None:
    """One line per column of ``history[key]`` (Hedge weights, plasticity health).

    The effective rank, if there, goes on a second axis; the gradient norm is left out.
    """
    x = history["series"].get("events", [])
    ax.set_title(title, fontsize=10)
    columns = {k: [float("nan") if v is None else v for v in ys] for k, ys in history[key].items()}
    columns.pop("grad_norm", None)  # its own units and scale
    rank = columns.pop("effective_rank", None)
    for name, ys in columns.items():
        ax.plot(x, ys, lw=1.2, label=name.replace("dormant_fraction_", "dormant "))
    handles, _ = ax.get_legend_handles_labels()
    if rank is not None:  # on its own axis: 1 .. width of the last hidden layer
        right = ax.twinx()
        handles += right.plot(x, rank, lw=1.2, color="#9467bd", ls="--", label="effective rank")
        right.set_ylabel("effective rank")
    ax.set_xlabel("events")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if handles:
        ax.legend(handles=handles, fontsize=7, loc="best")


def write_png(path: Path, model: dict[str, Any], history: dict[str, Any], title: str = "") -> None:
    """Draw the report as a PNG: score with baseline and drifts, recovery, weights, health.

    Parameters
    ----------
    path
        Where to write (folders created).
    model, history, title
        As for :func:`render_html`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(13, 8.5))
    grid = fig.add_gridspec(2, 3, height_ratios=(1.5, 1.0), hspace=0.5, wspace=0.45)
    top = fig.add_subplot(grid[0, :])
    _score_panel(top, history)
    what = "accuracy" if history["metric"] == "accuracy" else "MAE"
    top.set_title(
        f"prequential {what} (window {history['window']} events): {title}\n{_summary(model)}",
        fontsize=11,
    )
    _recovery_panel(fig.add_subplot(grid[1, 0]), history)
    _keyed_panel(fig.add_subplot(grid[1, 1]), history, "weights", "Hedge weights", "weight")
    _keyed_panel(
        fig.add_subplot(grid[1, 2]), history, "health", "plasticity health", "fraction / mean |w|"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def _summary(model: dict[str, Any]) -> str:
    """One line of headline numbers from ``GET /v1/model``."""
    counts = model.get("drift", {}).get("counts", {})
    parts = [f"events {model.get('events_seen', 0)}"]
    for key in ("accuracy", "kappa_temporal", "mae", "rmse"):
        if isinstance(model.get(key), float):
            parts.append(f"{key} {model[key]:.4f}")
    parts.append(f"drifts: loss {counts.get('loss', 0)}, input {counts.get('input', 0)}")
    return " · ".join(parts)


def write_report(
    path: Path, model: dict[str, Any], history: dict[str, Any], title: str = ""
) -> None:
    """Write an HTML (``.html``/``.htm``) or PNG (``.png``) report, chosen by the suffix.

    Raises
    ------
    ValueError
        Any other suffix.
    """
    suffix = path.suffix.lower()
    if suffix in (".html", ".htm"):
        write_html(path, model, history, title)
    elif suffix == ".png":
        write_png(path, model, history, title)
    else:
        raise ValueError(f"--report: unknown report type {suffix!r} (use .html or .png)")

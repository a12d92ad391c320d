"""Prequential evaluation of a file without the HTTP server (``streamcl replay``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from streamcl.service import Service
from streamcl.settings import Settings

__all__ = ["replay", "write_report"]


def replay(
    settings: Settings, report: str | None = None, limit: int | None = None, progress: bool = False
) -> dict[str, Any]:
    """Run the stream loop over ``settings.source`` until the file ends (or ``limit`` events).

    Returns
    -------
    dict
        ``events`` (predicted), ``scored``, the score's summary (classification:
        ``accuracy``, ``window_accuracy``, ``kappa``, ``kappa_temporal``; regression: ``mae``,
        ``rmse``, ``window_mae``), ``rejected``, ``seconds`` (wall time), ``events_per_s``.
    """
    service = Service(settings)
    loop = service.loop
    bar = tqdm(unit="ev", disable=not progress, mininterval=0.5)
    started = time.perf_counter()
    try:
        read_size = loop.read_size
        while not (service.source is None or service.source.exhausted):
            if limit is not None:  # read no further than the limit: exactly `limit` events
                loop.read_size = min(read_size, limit - loop.events_handled)
            n = loop.step(timeout_s=0.0)
            bar.update(n)
            if limit is not None and loop.events_handled >= limit:
                break
    finally:
        bar.close()
        service.stop()
    seconds = time.perf_counter() - started
    result: dict[str, Any] = {
        "events": loop.events_handled,
        **loop.score.summary(),
        "rejected": loop.rejected,
        "seconds": round(seconds, 3),
        "events_per_s": round(loop.events_handled / seconds, 1) if seconds > 0 else 0.0,
    }
    if report:
        ylabel = "windowed MAE" if settings.learner.task == "regression" else "windowed accuracy"
        write_report(loop.score.history, Path(report), title=settings.source.path, ylabel=ylabel)
        result["report"] = report
    return result


def write_report(
    history: list[tuple[int, float]],
    path: Path,
    title: str = "",
    ylabel: str = "windowed accuracy",
) -> None:
    """Plot a windowed prequential score against events seen, as PNG (``path``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.5))
    if history:
        xs, ys = zip(*history, strict=True)
        ax.plot(xs, ys, lw=1.2)
    ax.set_xlabel("events")
    ax.set_ylabel(ylabel)
    if "accuracy" in ylabel:
        ax.set_ylim(0, 1)
    ax.set_title(f"prequential {ylabel}: {title}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)

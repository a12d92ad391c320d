"""Prequential evaluation of a file without the HTTP server (``streamcl replay``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from streamcl.report import REPORT_SUFFIXES, write_report
from streamcl.service import Service
from streamcl.settings import Settings
from streamcl.threads import freeze_heap

__all__ = ["replay"]


def replay(
    settings: Settings,
    report: str | None = None,
    limit: int | None = None,
    progress: bool = False,
    freeze: bool = False,
) -> dict[str, Any]:
    """Run the stream loop over ``settings.source`` until the file ends (or ``limit`` events).

    Parameters
    ----------
    report
        Where to write a report of the run: the dashboard as one self-contained HTML file
        (``.html``) or a PNG (``.png``); see :mod:`streamcl.report`.
    freeze
        Call :func:`~streamcl.threads.freeze_heap` once the service is built, as the command
        does: the cyclic collector then skips torch, the modules and the model (without
        it, a full collection falling inside an elec2 replay cost ~0.15 s of its 1.5 s).
        Not for processes that build and drop services (tests): frozen cycles are never
        collected.

    Returns
    -------
    dict
        ``events`` (predicted), ``scored``, the score's summary (classification:
        ``accuracy``, ``window_accuracy``, ``kappa``, ``kappa_temporal``; regression: ``mae``,
        ``rmse``, ``window_mae``), ``rejected``, ``seconds`` (wall time), ``events_per_s``.

    Raises
    ------
    ValueError
        ``report`` names neither an ``.html`` nor a ``.png`` file (checked before the run).
    """
    if report and Path(report).suffix.lower() not in REPORT_SUFFIXES:
        raise ValueError(f"--report: {report!r} is neither .html nor .png")
    service = Service(settings)
    if freeze:
        freeze_heap()
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
    if report and loop.history is not None:  # per-key models have no single history
        loop.history.record(loop, force=True)  # the final point: the run's end
        history = loop.history.to_dict()
        path = settings.source.path
        title = path if "://" in path else Path(path).name  # builtin://elec2, or the file's name
        write_report(Path(report), service.describe(), history, title=title)
        result["report"] = report
    return result

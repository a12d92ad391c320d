"""The live dashboard (``GET /dashboard``) and the history behind it (``GET /v1/history``).

The page is static HTML, CSS and JavaScript shipped in the package (``static/``, with uPlot
vendored under ``static/vendor/`` with its MIT license; nothing is fetched from a CDN and
nothing is built at run time). It polls ``v1/model`` and ``v1/history`` with relative URLs,
so it works behind a path prefix, and shows what the process has: a serving role without a
learning loop answers ``available: false`` and the page shows model information only.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from streamcl.stream.history import History

__all__ = ["STATIC_FILES", "HistoryResponse", "router", "static_text"]

#: The files the page loads, name -> media type (nothing else is served from ``static/``).
STATIC_FILES = {
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
    "vendor/uPlot.iife.min.js": "text/javascript",
    "vendor/uPlot.min.css": "text/css",
    "vendor/uPlot.LICENSE": "text/plain",
}


@cache
def static_text(name: str) -> str:
    """The text of a packaged static file (``dashboard.html`` or one of :data:`STATIC_FILES`)."""
    return (resources.files("streamcl.serving") / "static" / name).read_text(encoding="utf-8")


class DriftRow(BaseModel):
    """One detected drift and, for a loss drift, the recovery after it."""

    event: int = Field(description="Stream offset (events seen) at detection.")
    time: float = Field(description="Detection time, epoch seconds.")
    event_id: str = Field(description="Id of the event that triggered the detection.")
    detector: str = Field(description="`loss` (prequential error) or `input` (feature drift).")
    kind: str = Field(description="River detector: adwin, kswin or page_hinkley.")
    statistic: float | None = Field(description="Detector's estimate after the drift.")
    window: int = Field(description="Events in the detector's window after the drift (ADWIN).")
    change_point: int = Field(description="Where the change started, as a stream offset.")
    pre_drift_accuracy: float | None = Field(description="Windowed accuracy before, 0..1.")
    worst_accuracy: float | None = Field(description="Worst windowed accuracy after, 0..1.")
    stability_gap: float | None = Field(
        description="pre_drift_accuracy - worst_accuracy (De Lange et al. 2023), 0..1."
    )
    recovery_events: int | None = Field(
        description="Events until accuracy was back within 0.02 of the pre-drift level."
    )


class Totals(BaseModel):
    """Counters since the process started."""

    dead_letters: dict[str, float] = Field(description="Records dead-lettered, by reason.")
    labels: dict[str, float] = Field(description="Delayed labels: joined, expired, unmatched.")
    drifts: dict[str, float] = Field(description="Drifts by detector (since the last reset).")


class HistoryResponse(BaseModel):
    """Body of ``GET /v1/history``: bounded, downsampled time series of the learning loop.

    Every list of ``series``, ``weights`` and ``health`` has ``points`` values (null where
    unknown), one per point. A point is taken after the first read chunk that ends at least
    ``every_events`` events after the previous one; at most ``max_points`` (setting
    ``metrics.history_points``) are kept: older points are thinned to every other one as
    the run grows. See :class:`streamcl.stream.history.History`.
    """

    available: bool = Field(description="False where no learning loop runs (serving role).")
    task: Literal["classification", "regression"]
    metric: Literal["accuracy", "mae"] = Field(description="What `score` and `cumulative` are.")
    window: int = Field(description="Events in the sliding window of `score`.")
    points: int
    max_points: int
    every_events: int = Field(description="Events between points (at least one read chunk).")
    series: dict[str, list[float | None]] = Field(
        description="time (epoch s), events, scored, version, served_version, score, "
        "cumulative, baseline, baseline_cumulative (no-change predictor), kappa_temporal, "
        "events_per_s, memory_entries, recent_entries, replay_entries, memory_bytes, "
        "consumer_lag, pending_labels, rejected."
    )
    weights: dict[str, list[float | None]] = Field(description="Hedge weight per predictor.")
    health: dict[str, list[float | None]] = Field(
        description="Plasticity health: dormant_fraction_layer{i}, effective_rank, "
        "weight_magnitude, grad_norm."
    )
    drifts: list[DriftRow]
    totals: Totals


def unavailable() -> dict[str, Any]:
    """The history answered where there is no learning loop."""
    return {
        "available": False,
        "task": "classification",
        "metric": "accuracy",
        "window": 0,
        "points": 0,
        "max_points": 0,
        "every_events": 0,
        "series": {},
        "weights": {},
        "health": {},
        "drifts": [],
        "totals": {"dead_letters": {}, "labels": {}, "drifts": {}},
    }


def router(history: Callable[[], History | None]) -> APIRouter:
    """Routes ``/dashboard``, its static files and ``/v1/history``.

    Parameters
    ----------
    history
        Returns the learning loop's history, or None where this process has no loop.
    """
    r = APIRouter()

    @r.get("/dashboard", include_in_schema=False)
    async def dashboard() -> HTMLResponse:
        return HTMLResponse(static_text("dashboard.html"))

    @r.get("/dashboard/static/{name:path}", include_in_schema=False)
    async def static(name: str) -> Response:
        media = STATIC_FILES.get(name)
        if media is None:
            body = {"error": {"reason": "not_found", "field": "name", "detail": name}}
            return JSONResponse(body, status_code=404)
        headers = {"cache-control": "public, max-age=3600"}
        return Response(static_text(name), media_type=media, headers=headers)

    @r.get("/v1/history", response_model=HistoryResponse)
    async def get_history() -> JSONResponse:
        """Downsampled time series behind the dashboard: scores, drifts, weights, health."""
        h = history()
        return JSONResponse(unavailable() if h is None else h.to_dict())

    return r

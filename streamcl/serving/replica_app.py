"""The serving replica's HTTP app (``streamcl serve``): predict with the loaded version.

Routes: ``POST /v1/predict`` (the same handler as the all-in-one app), ``GET /v1/model``
(served version, age, pin), ``GET /healthz`` (the process and its follower thread are
alive), ``GET /readyz`` (a version is loaded and confirmed within ``serve.max_staleness_s``)
and ``GET /metrics``. Nothing here imports the training code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from streamcl.events import EventDecoder
from streamcl.metrics import CONTENT_TYPE_LATEST, Metrics
from streamcl.models.keys import KeyedVersions
from streamcl.serving import dashboard
from streamcl.serving.api import add_common, add_predict_route
from streamcl.serving.fastpredict import FastPredictApp
from streamcl.serving.keyed import add_keyed_predict_route
from streamcl.serving.replica import Replica
from streamcl.settings import Settings

__all__ = ["create_replica_app", "decoder_from_settings"]


def decoder_from_settings(settings: Settings) -> EventDecoder:
    """The event decoder of ``settings`` (limits, target column, task)."""
    ev, src = settings.events, settings.source
    return EventDecoder(
        max_payload_bytes=ev.max_payload_bytes,
        max_features=ev.max_features,
        max_string_length=ev.max_string_length,
        target=src.target,
        id_column=src.id_column,
        task=settings.learner.task,
    )


def create_replica_app(
    replica: Replica,
    settings: Settings,
    follower: Any = None,
    keyed: KeyedVersions | None = None,
) -> FastAPI:
    """The replica's FastAPI app; starts and stops following versions with the server.

    Parameters
    ----------
    replica
        The replica (its metrics are exported on ``/metrics``).
    settings
        Validated settings (``server``, ``events``, ``serve``).
    follower
        An announcements follower started and stopped with the app, or None.
    keyed
        Per-key model versions (``learner.partitioning: key``): adds
        ``POST /v1/models/{key}/predict``; a key with no version yet is answered by the
        served model when ``learner.template`` is set, else 404 ``unknown_key``.
    """
    metrics: Metrics = replica.metrics

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        replica.start()
        if follower is not None:
            follower.start()
        try:
            yield
        finally:
            if follower is not None:
                follower.stop()
            replica.stop()

    app = FastPredictApp(title="streamcl serving", version="1", lifespan=lifespan)
    current = lambda: replica.model  # noqa: E731
    add_common(app, settings.server, metrics, current, lambda: replica.ready()[0])
    decoder = decoder_from_settings(settings)
    add_predict_route(app, settings.server, decoder, metrics, current)
    if keyed is not None:
        fallback = current if settings.learner.template is not None else None
        add_keyed_predict_route(app, settings.server, decoder, metrics, keyed, fallback)

    @app.get("/v1/model")
    async def model() -> dict[str, Any]:
        """The served version, its age and staleness, and whether it is pinned."""
        return replica.describe()

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """Liveness: the process answers and its version follower runs."""
        alive = replica.alive()
        body = {"status": "ok" if alive else "follower not running"}
        return JSONResponse(body, status_code=200 if alive else 503)

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Readiness: a version is loaded and confirmed within the staleness bound."""
        ready, reason = replica.ready()
        metrics.ready.set(1 if ready else 0)
        body = {"status": "ready" if ready else reason}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def exposition() -> Response:
        """Prometheus text exposition."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(dashboard.router(lambda: None))  # no loop: versions only
    return app

"""HTTP API: FastAPI routes over plain service methods.

Routes never touch the learner directly: predictions come from the snapshot the loop
published last, and ingested events are messages to the loop (see :mod:`streamcl.learning.learner`).
Domain errors map to HTTP status in one table (:data:`streamcl.serving.errors.STATUS`), with
one error body shape: ``{"error": {"reason": str, "field": str, "detail": str}}``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from streamcl.errors import DecodeError
from streamcl.events import Event, Label
from streamcl.learning.learner import Prediction
from streamcl.metrics import CONTENT_TYPE_LATEST
from streamcl.serving.auth import token_guard
from streamcl.serving.body import read_json
from streamcl.serving.errors import HTTPError, install_error_handlers
from streamcl.serving.instrument import HTTPMetricsMiddleware
from streamcl.serving.openapi import install_openapi
from streamcl.serving.v2 import v2_router
from streamcl.stream.prequential import QueueFullError

if TYPE_CHECKING:
    from streamcl.service import Service

__all__ = ["create_app"]


#: Features are checked by the event decoder (reasons like ``non_finite``); documented here.
FeaturesSchema = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "additionalProperties": {
                "anyOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}]
            },
        }
    ),
]


class Instance(BaseModel):
    """One instance to predict: its features only (name -> number, string or bool)."""

    model_config = ConfigDict(extra="forbid")
    features: FeaturesSchema


class PredictRequest(BaseModel):
    """Body of ``POST /v1/predict``."""

    model_config = ConfigDict(extra="forbid")
    instances: list[Instance] = Field(min_length=1)


#: Events are checked by the event decoder (reasons like ``duplicate_id``); documented here.
EventsSchema = Annotated[
    list[dict[str, Any]],
    WithJsonSchema({"type": "array", "items": Event.model_json_schema()}),
]


class EventsRequest(BaseModel):
    """Body of ``POST /v1/events``: events to predict and learn (schema of ``Event``)."""

    model_config = ConfigDict(extra="forbid")
    events: EventsSchema = Field(min_length=1)


class PredictionOut(BaseModel):
    """One prediction: label (null before any class is known) and class probabilities.

    For regression the label is the predicted value (a float) and probabilities are empty.
    """

    label: Label | float | None
    probabilities: dict[str, float]


class PredictResponse(BaseModel):
    """Body answered by ``POST /v1/predict`` and ``POST /v1/events``."""

    predictions: list[PredictionOut]
    model_version: int
    imputed: list[str] = Field(
        default_factory=list, description="Fields imputed (server.impute_missing)."
    )


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def create_app(service: Service) -> FastAPI:
    """The FastAPI application of ``service``; starts and stops its loop with the server."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            await asyncio.to_thread(service.stop)

    app = FastAPI(title="streamcl", version="1", lifespan=lifespan)
    settings = service.settings.server
    install_error_handlers(app)
    install_openapi(app)
    app.add_middleware(HTTPMetricsMiddleware, metrics=service.metrics)
    app.include_router(
        v2_router(lambda: service.loop.snapshot, settings.model_name, settings, service.is_ready)
    )
    check_token = token_guard(settings)

    def limit(n: int, field: str) -> None:
        if n > settings.max_instances:
            raise HTTPError(413, "too_many", field, f"{n} > limit {settings.max_instances}")

    @app.post(
        "/v1/predict", response_model=PredictResponse, openapi_extra=_body_schema(PredictRequest)
    )
    async def predict(request: Request) -> PredictResponse:
        """Predict instances with the last published model; never learns."""
        body = await read_json(request, PredictRequest, settings)
        limit(len(body.instances), "instances")
        snapshot = service.loop.snapshot
        events, imputed = [], []
        for i, inst in enumerate(body.instances):
            try:
                events.append(service.decoder.validate({"id": str(i), "features": inst.features}))
                missing = snapshot.schema.check(inst.features, "features.", settings.impute_missing)
            except DecodeError as exc:
                raise HTTPError(422, exc.reason, f"instances.{i}.{exc.field}", exc.detail) from None
            imputed += [f"instances.{i}.features.{name}" for name in missing]
        started = time.perf_counter()
        predictions = await asyncio.to_thread(snapshot.predict, events)
        service.metrics.predict_latency.observe(time.perf_counter() - started)
        return _response(predictions, snapshot.version, imputed)

    @app.post(
        "/v1/events", response_model=PredictResponse, openapi_extra=_body_schema(EventsRequest)
    )
    async def ingest(request: Request) -> PredictResponse:
        """Predict, then learn, a batch of events (those with a label are learned)."""
        check_token(request)
        shed = service.over_budget()
        if shed:
            raise HTTPError(503, "over_memory_budget", "", shed)
        body = await read_json(request, EventsRequest, settings)
        limit(len(body.events), "events")
        kinds: dict[str, str] = {}
        events = [_decode_event(service, i, raw, kinds) for i, raw in enumerate(body.events)]
        try:
            future = service.loop.submit(events)
        except QueueFullError as exc:
            raise HTTPError(503, "busy", "", str(exc)) from None
        try:
            predictions = await asyncio.wrap_future(future)
        except DecodeError as exc:  # duplicate_id: found by the loop's de-duplication window
            service.metrics.events.labels("rejected").inc(len(events))
            service.metrics.rejected.labels(exc.reason).inc()
            raise HTTPError(409, exc.reason, exc.field, exc.detail) from None
        return _response(predictions, service.loop.learner.version)

    async def to_loop(request: Request, call: Callable[[], Future[Any]]) -> dict[str, Any]:
        check_token(request)
        try:
            future = call()
        except QueueFullError as exc:
            raise HTTPError(503, "busy", "", str(exc)) from None
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(future), timeout=60.0)
        except (OSError, TimeoutError) as exc:
            raise HTTPError(503, "failed", "", str(exc) or "timed out") from None
        return {"status": "ok", "result": result}

    @app.post("/v1/checkpoint")
    async def checkpoint(request: Request) -> dict[str, Any]:
        """Write a checkpoint now (a message to the loop); needs the bearer token if set."""
        if service.checkpoints is None:
            check_token(request)
            raise HTTPError(409, "disabled", "checkpoint.dir", "checkpoints are not configured")
        return await to_loop(request, service.checkpoint_now)

    @app.post("/v1/reset")
    async def reset(request: Request) -> dict[str, Any]:
        """Reset the learner to a fresh model (a message to the loop); needs the token if set."""
        return await to_loop(request, service.reset)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        """Liveness: the loop thread is alive and its heartbeat is recent."""
        alive, reason = service.alive()
        return JSONResponse(
            {"status": "ok" if alive else reason}, status_code=200 if alive else 503
        )

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Readiness: a batch was learned (or HTTP-only ingestion) and the source is healthy."""
        ready, reason = service.ready()
        service.metrics.ready.set(1 if ready else 0)
        return JSONResponse(
            {"status": "ready" if ready else reason}, status_code=200 if ready else 503
        )

    @app.get("/metrics")
    async def metrics() -> Response:
        """Prometheus text exposition."""
        service.metrics.ready.set(1 if service.is_ready() else 0)  # for the never-ready alert
        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/model")
    async def model() -> dict[str, Any]:
        """Classes, events seen, prequential accuracy, and a settings summary."""
        return service.describe()

    return app


def _decode_event(service: Service, i: int, raw: dict[str, Any], kinds: dict[str, str]) -> Event:
    try:
        event = service.decoder.validate(raw)
        service.loop.check_kinds(event, kinds)  # reads the featurizer; writes only `kinds`
        return event
    except DecodeError as exc:
        service.loop.metrics.events.labels("rejected").inc()
        service.loop.metrics.rejected.labels(exc.reason).inc()
        field = f"events.{i}.{exc.field}" if exc.field else f"events.{i}"
        raise HTTPError(422, exc.reason, field, exc.detail) from None


def _response(
    predictions: list[Prediction], version: int, imputed: list[str] | None = None
) -> PredictResponse:
    return PredictResponse(
        predictions=[
            PredictionOut(label=p.label, probabilities=p.probabilities) for p in predictions
        ],
        model_version=version,
        imputed=imputed or [],
    )

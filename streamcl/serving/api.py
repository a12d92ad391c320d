"""HTTP API: FastAPI routes over plain service methods, shared by both roles.

:func:`create_app` is the all-in-one (or learner-only) app of ``streamcl run``; the serving
replica's app (``streamcl serve``) is :func:`streamcl.serving.replica_app.create_replica_app`.
Both answer ``POST /v1/predict`` over "the current model": any object with
``.predict(events)`` and ``.version`` (the loop's in-process snapshot, or a loaded
:class:`~streamcl.models.version.ModelVersion`); well-formed requests through
:class:`~streamcl.serving.fastpredict.FastPredict` in front of the app, the others (errors
included) through the route and :func:`predict_instances`.

Routes never touch the learner directly: predictions come from the snapshot the loop
published last, and ingested events are messages to the loop (see
:mod:`streamcl.learning.learner`). Domain errors map to HTTP status in one table
(:data:`streamcl.serving.errors.STATUS`), with one error body shape:
``{"error": {"reason": str, "field": str, "detail": str}}``. This module imports no training
code: a serving replica loads it without the learner.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from streamcl.errors import DecodeError, QueueFullError
from streamcl.events import Event, EventDecoder, Label
from streamcl.metrics import CONTENT_TYPE_LATEST, Metrics
from streamcl.models.predictor import Prediction
from streamcl.models.schema import FeatureSchema
from streamcl.serving import dashboard
from streamcl.serving.auth import token_guard
from streamcl.serving.body import read_json
from streamcl.serving.errors import HTTPError, install_error_handlers
from streamcl.serving.fastpredict import FastPredictApp, decode_features
from streamcl.serving.instrument import HTTPMetricsMiddleware
from streamcl.serving.openapi import install_openapi
from streamcl.serving.v2 import v2_router
from streamcl.settings import ServerSettings

if TYPE_CHECKING:
    from streamcl.service import Service

__all__ = [
    "CurrentModel",
    "add_common",
    "add_predict_route",
    "create_app",
    "predict_body",
    "predict_instances",
]


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


class CurrentModel(Protocol):
    """What predict routes need of a model: ``predict`` and a version number."""

    @property
    def version(self) -> int:
        """Version reported with each prediction (``model_version``)."""
        ...

    @property
    def schema(self) -> FeatureSchema:
        """The feature kinds the model learned, which inputs are checked against."""
        ...

    def predict(self, events: Sequence[Event]) -> list[Prediction]:
        """Predictions for ``events``, in order; thread-safe."""
        ...


def limit(n: int, field: str, settings: ServerSettings) -> None:
    """Refuse more than ``server.max_instances`` items (413 ``too_many``)."""
    if n > settings.max_instances:
        raise HTTPError(413, "too_many", field, f"{n} > limit {settings.max_instances}")


def decode_instances(
    body: PredictRequest, decoder: EventDecoder, schema: FeatureSchema, impute: bool
) -> tuple[list[Event], list[str]]:
    """The instances of a predict request as events; see :func:`decode_features`."""
    return decode_features([inst.features for inst in body.instances], decoder, schema, impute)


async def predict_instances(
    model: CurrentModel, events: Sequence[Event], metrics: Metrics, imputed: list[str]
) -> PredictResponse:
    """Predict ``events`` with ``model`` off the event loop; observe the latency."""
    started = time.perf_counter()
    predictions = await asyncio.to_thread(model.predict, events)
    metrics.predict_latency.observe(time.perf_counter() - started)
    return _response(predictions, model.version, imputed)


def add_predict_route(
    app: FastPredictApp,
    settings: ServerSettings,
    decoder: EventDecoder,
    metrics: Metrics,
    current: Callable[[], CurrentModel | None],
) -> None:
    """``POST /v1/predict`` over whatever ``current()`` returns at request time.

    Well-formed requests are answered by :class:`~streamcl.serving.fastpredict.FastPredict`
    in front of the app and of FastAPI's own middlewares; the route answers the others (and
    is what the OpenAPI document describes).
    """
    app.predict_first(settings, decoder, metrics, current)

    @app.post(
        "/v1/predict", response_model=PredictResponse, openapi_extra=_body_schema(PredictRequest)
    )
    async def predict(request: Request) -> PredictResponse:
        """Predict instances with the served model; never learns."""
        body = await read_json(request, PredictRequest, settings)
        return await predict_body(current(), body, decoder, settings, metrics)


async def predict_body(
    model: CurrentModel | None,
    body: PredictRequest,
    decoder: EventDecoder,
    settings: ServerSettings,
    metrics: Metrics,
) -> PredictResponse:
    """Check a predict request's instances against ``model``'s schema, then predict them.

    Raises
    ------
    HTTPError
        413 ``too_many``; 422 naming ``instances.<i>.<field>``; 503 ``not_ready`` when
        ``model`` is None (checked after the body, so a bad request is a 422 either way).
    """
    limit(len(body.instances), "instances", settings)
    schema = FeatureSchema() if model is None else model.schema
    events, imputed = decode_instances(body, decoder, schema, settings.impute_missing)
    if model is None:
        raise HTTPError(503, "not_ready", "", "no model version loaded yet")
    return await predict_instances(model, events, metrics, imputed)


def add_common(
    app: FastAPI,
    settings: ServerSettings,
    metrics: Metrics,
    current: Callable[[], CurrentModel | None],
    ready: Callable[[], bool],
) -> None:
    """Add what every predicting role's app has, over the model ``current()`` returns.

    The one error shape, the completed OpenAPI spec, HTTP request metrics and the Open
    Inference Protocol routes (``/v2``).
    """
    install_error_handlers(app)
    install_openapi(app)
    app.add_middleware(HTTPMetricsMiddleware, metrics=metrics)
    app.include_router(v2_router(current, settings.model_name, settings, ready))


def create_app(service: Service, predict: bool = True) -> FastAPI:
    """The FastAPI application of ``service``; starts and stops its loop with the server.

    Parameters
    ----------
    service
        The learner service.
    predict
        Serve ``POST /v1/predict`` from the in-process snapshot (the all-in-one role);
        False for the learner role behind serving replicas.
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            await asyncio.to_thread(service.stop)

    app = FastPredictApp(title="streamcl", version="1", lifespan=lifespan)
    settings = service.settings.server
    snapshot = lambda: service.loop.snapshot  # noqa: E731
    if predict:
        add_common(app, settings, service.metrics, snapshot, service.is_ready)
        add_predict_route(app, settings, service.decoder, service.metrics, snapshot)
    else:
        install_error_handlers(app)
        install_openapi(app)
        app.add_middleware(HTTPMetricsMiddleware, metrics=service.metrics)
    check_token = token_guard(settings)
    if service.registry is not None:
        from streamcl.serving.admin import add_model_admin_routes

        add_model_admin_routes(app, service.registry, settings)

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
        limit(len(body.events), "events", settings)
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

    app.include_router(dashboard.router(lambda: getattr(service.loop, "history", None)))
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

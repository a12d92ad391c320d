"""The hot path of ``POST /v1/predict``: well-formed requests answered below the framework.

A serving replica spends most of its CPU on a predict request in the framework around the
prediction (routing, dependency solving, pydantic validation of the request and the response,
a thread hand-off), about 1 ms against 0.2 ms for the prediction itself on a 2-core machine.
:class:`FastPredict` is a pure ASGI middleware in front of the FastAPI app that answers the
common case itself: a JSON body received in one piece, decoded by a compiled msgspec schema
of :class:`~streamcl.serving.api.PredictRequest`, whose instances the event decoder and the
model's feature schema accept, predicted in place (small batches) or off the event loop.

Everything else, every error included, is passed on unchanged (the body it read replayed) to
the FastAPI route, which answers it exactly as before: the one error shape naming the field,
the same status codes and logs. The route also stays the one the OpenAPI document describes.
:class:`FastPredictApp` puts it in front of FastAPI's own middleware stack too (its error,
telemetry and body-limit layers cost about 0.1 ms of CPU a request).
HTTP metrics (``streamcl_http_requests_total``, ``streamcl_http_request_duration_seconds``
with route ``/v1/predict``) and ``streamcl_predict_latency_seconds`` are recorded here for
the requests answered here, by the route's middleware for the others.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any

import msgspec
from fastapi import FastAPI

from streamcl.errors import DecodeError
from streamcl.events import Event, EventDecoder
from streamcl.metrics import Metrics
from streamcl.models.predictor import Prediction
from streamcl.models.schema import FeatureSchema
from streamcl.serving.errors import HTTPError, is_json
from streamcl.settings import ServerSettings

__all__ = ["INLINE_INSTANCES", "PATH", "FastPredict", "FastPredictApp", "decode_features"]

#: The route answered here.
PATH = "/v1/predict"
#: Requests of at most this many instances are predicted on the event loop (a thread
#: hand-off costs more than their prediction); larger ones in a worker thread.
INLINE_INSTANCES = 8

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _Instance(msgspec.Struct, forbid_unknown_fields=True):
    features: dict[str, bool | int | float | str]


class _Request(msgspec.Struct, forbid_unknown_fields=True):
    instances: list[_Instance]


class _PassOn(Exception):
    """The request is not the common case: the FastAPI route answers it."""


class FastPredict:
    """Pure ASGI middleware answering well-formed ``POST /v1/predict`` requests itself.

    Parameters
    ----------
    app
        The wrapped ASGI app (FastAPI's middleware stack), which answers everything else.
    settings
        ``server`` settings: ``max_body_bytes``, ``body_timeout_s`` (seconds),
        ``max_instances``, ``impute_missing``.
    decoder
        The event decoder whose limits instances are checked against.
    metrics
        Where request counts and latencies are recorded.
    current
        Returns the model to predict with (``.predict``, ``.version``, ``.schema``), or
        None before one is loaded (then the route answers 503).
    """

    def __init__(
        self,
        app: Any,
        settings: ServerSettings,
        decoder: EventDecoder,
        metrics: Metrics,
        current: Callable[[], Any],
    ) -> None:
        self.app, self.settings, self.decoder = app, settings, decoder
        self.metrics, self.current = metrics, current
        self._decode = msgspec.json.Decoder(_Request).decode
        self._encode = msgspec.json.Encoder().encode
        self._ok = metrics.http_requests.labels("POST", PATH, "200")
        self._duration = metrics.http_duration.labels("POST", PATH)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a well-formed predict request, pass anything else on."""
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        if not self._plain_headers(scope["headers"]):
            await self.app(scope, receive, send)
            return
        message = await self._receive_first(receive)
        if message is None:  # the body is late: the route answers its 408
            await self.app(scope, _late, send)
            return
        try:
            body = await self._answer(message)
        except Exception:  # not the common case, or a failure: the route answers (and logs)
            await self.app(scope, _replay(message, receive), send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": _headers(body)})
        await send({"type": "http.response.body", "body": body})
        self._ok.inc()
        self._duration.observe(time.perf_counter() - started)

    def _plain_headers(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """A JSON body of a declared length within ``max_body_bytes``, not chunked."""
        length = None
        for name, value in headers:
            name = name.lower()
            if name == b"content-length":
                length = value
            elif name == b"content-type":
                if not is_json(value.decode("latin-1")):
                    return False
            elif name in (b"transfer-encoding", b"inference-header-content-length"):
                return False
        return (
            length is not None
            and length.isdigit()
            and 0 < int(length) <= self.settings.max_body_bytes
        )

    async def _receive_first(self, receive: Receive) -> Message | None:
        """The first body message, or None when it takes longer than ``body_timeout_s``."""
        try:
            async with asyncio.timeout(self.settings.body_timeout_s):
                return await receive()
        except TimeoutError:
            return None

    async def _answer(self, message: Message) -> bytes:
        """The encoded response to a request whose whole body is ``message``.

        Raises
        ------
        _PassOn, HTTPError, msgspec.MsgspecError
            Not the common case (the FastAPI route answers it).
        """
        if message["type"] != "http.request" or message.get("more_body", False):
            raise _PassOn
        request = self._decode(message.get("body", b""))
        instances = request.instances
        if not 0 < len(instances) <= self.settings.max_instances:
            raise _PassOn
        model = self.current()
        if model is None:
            raise _PassOn
        features = [inst.features for inst in instances]
        events, imputed = decode_features(
            features, self.decoder, model.schema, self.settings.impute_missing
        )
        started = time.perf_counter()
        if len(events) <= INLINE_INSTANCES:
            predictions = model.predict(events)
        else:
            predictions = await asyncio.to_thread(model.predict, events)
        self.metrics.predict_latency.observe(time.perf_counter() - started)
        return self._encode(
            {
                "predictions": [_prediction(p) for p in predictions],
                "model_version": model.version,
                "imputed": imputed,
            }
        )


class FastPredictApp(FastAPI):
    """A FastAPI app whose ``POST /v1/predict`` goes to :attr:`fast_predict` first.

    FastAPI runs every request through its own layers (server errors, exception telemetry,
    which reads the environment on each request, the body limit) before the app's
    middlewares; a :class:`FastPredict` added with ``add_middleware`` sits below them.
    Set :attr:`fast_predict` (built by :meth:`predict_first`) and well-formed predict
    requests skip them; what it passes on enters the whole FastAPI stack as before.
    Constructor arguments are FastAPI's.
    """

    fast_predict: FastPredict | None = None

    def predict_first(
        self,
        settings: ServerSettings,
        decoder: EventDecoder,
        metrics: Metrics,
        current: Callable[[], Any],
    ) -> None:
        """Answer well-formed predict requests with a :class:`FastPredict` in front of all.

        Parameters are :class:`FastPredict`'s, less ``app`` (this app's FastAPI stack).
        """
        inner = functools.partial(FastAPI.__call__, self)
        self.fast_predict = FastPredict(inner, settings, decoder, metrics, current)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        """Predict requests to :attr:`fast_predict` (when set), the rest to FastAPI."""
        fast = self.fast_predict
        if fast is not None and scope["type"] == "http" and scope["path"] == PATH:
            await fast(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def decode_features(
    features: Sequence[Mapping[str, Any]],
    decoder: EventDecoder,
    schema: FeatureSchema,
    impute: bool,
) -> tuple[list[Event], list[str]]:
    """The features of each instance of a predict request as events (ids ``"0"``, ``"1"``...).

    Each instance is checked against ``schema``, the features the model learned, by the same
    rules as the stream's decoding (unknown, missing and mistyped features are refused).

    Returns
    -------
    tuple[list[Event], list[str]]
        The events, and the fields imputed (``impute`` allows missing features).

    Raises
    ------
    HTTPError
        422 naming ``instances.<i>.<field>``.
    """
    events, imputed = [], []
    for i, values in enumerate(features):
        try:
            events.append(decoder.validate({"id": str(i), "features": values}))
            missing = schema.check(values, "features.", impute)
        except DecodeError as exc:
            raise HTTPError(422, exc.reason, f"instances.{i}.{exc.field}", exc.detail) from None
        imputed += [f"instances.{i}.features.{name}" for name in missing]
    return events, imputed


def _prediction(p: Prediction) -> dict[str, Any]:
    return {"label": p.label, "probabilities": p.probabilities}


def _headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-length", str(len(body)).encode("ascii")),
        (b"content-type", b"application/json"),
    ]


async def _late() -> Message:
    """A receive whose body did not come within ``body_timeout_s`` (already waited)."""
    raise TimeoutError


def _replay(first: Message, receive: Receive) -> Receive:
    """``receive`` with ``first`` (already read) given again first."""
    pending = [first]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed

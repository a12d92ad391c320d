"""``POST /v1/models/{key}/predict``: predictions of one key's model (per-key models).

The learner (``learner.partitioning: key``) publishes each key's model as its own versions
(:mod:`streamcl.models.keys`); this route serves the newest version of the named key. An
unknown key answers 404 ``unknown_key`` naming the ``key`` field, or, when a fallback
model is given (the template's or fresh learner's answer), that model's predictions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import FastAPI, Request

from streamcl.events import EventDecoder
from streamcl.metrics import Metrics
from streamcl.models.keys import KeyedVersions
from streamcl.serving.api import CurrentModel, PredictRequest, PredictResponse, predict_body
from streamcl.serving.body import read_json
from streamcl.serving.errors import HTTPError
from streamcl.settings import ServerSettings

__all__ = ["add_keyed_predict_route"]


def add_keyed_predict_route(
    app: FastAPI,
    settings: ServerSettings,
    decoder: EventDecoder,
    metrics: Metrics,
    versions: KeyedVersions,
    fallback: Callable[[], CurrentModel | None] | None = None,
) -> None:
    """Add ``POST /v1/models/{key}/predict`` over ``versions``.

    Raises (answered by the app's error handler)
    --------------------------------------------
    HTTPError
        404 ``unknown_key`` when nothing was published for the key and there is no
        fallback; 422 for a bad body; 503 ``not_ready`` when the fallback has no model yet.
    """

    @app.post("/v1/models/{key}/predict", response_model=PredictResponse)
    async def predict_key(key: str, request: Request) -> PredictResponse:
        """Predict instances with the newest version of ``key``'s model; never learns."""
        body = await read_json(request, PredictRequest, settings)
        found = await asyncio.to_thread(versions.get, key)
        if found is not None:
            return await predict_body(found, body, decoder, settings, metrics)
        if fallback is not None:
            return await predict_body(fallback(), body, decoder, settings, metrics)
        raise HTTPError(404, "unknown_key", "key", f"no model version published for key {key!r}")

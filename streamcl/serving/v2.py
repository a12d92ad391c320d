"""The Open Inference Protocol (KServe v2, REST), next to the v1 API.

Endpoints: ``/v2/health/live``, ``/v2/health/ready``, ``/v2``, ``/v2/models/{name}``,
``/v2/models/{name}/ready`` and ``/v2/models/{name}/infer``. An inference request carries
one input tensor per feature, named after it, of shape ``[n]`` (or ``[n, 1]``); ``BYTES``
for a category, ``BOOL`` for a boolean, any numeric datatype for a number. Inputs are
checked against the learned feature schema by the rules of ``/v1/predict``. The response
has two outputs: ``label`` ``[n]`` (``INT64`` for integer classes, ``FP64`` for
regression, else ``BYTES``) and ``probabilities`` ``[n, n_classes]`` ``FP32``, classes in
the order of the model metadata's ``parameters.classes``.

Reference: KServe, "Open Inference Protocol (V2 Inference Protocol)",
https://github.com/kserve/open-inference-protocol (REST API). Only JSON tensors are
supported, not the binary tensor extension.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from streamcl.errors import DecodeError
from streamcl.events import MAX_ABS_NUMBER, Event
from streamcl.models.predictor import Prediction
from streamcl.models.schema import FeatureSchema
from streamcl.serving.body import read_json
from streamcl.serving.errors import HTTPError
from streamcl.serving.openapi import json_body
from streamcl.settings import ServerSettings

__all__ = ["InferRequest", "Model", "v2_router"]

Datatype = Literal[
    "BOOL", "BYTES", "FP16", "FP32", "FP64",
    "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64",
]  # fmt: skip
_NUMERIC = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
_NUMERIC |= {"FP16", "FP32", "FP64"}
#: Tensor datatype of each feature kind (in the model metadata).
_DATATYPE = {"number": "FP64", "category": "BYTES", "boolean": "BOOL"}


class Model(Protocol):
    """What the router serves: an immutable model with a version."""

    @property
    def version(self) -> int:
        """Version of the model (learning steps taken)."""
        ...

    @property
    def schema(self) -> FeatureSchema:
        """The feature schema it learned."""
        ...

    def predict(self, events: Sequence[Event]) -> list[Prediction]:
        """Predictions of ``events``, in order."""
        ...


class Tensor(BaseModel):
    """An input tensor: one feature's values for every instance."""

    model_config = ConfigDict(extra="forbid")
    name: StrictStr = Field(min_length=1, max_length=256)
    shape: list[Annotated[StrictInt, Field(ge=0)]] = Field(min_length=1, max_length=2)
    datatype: Datatype
    data: list[Any]
    parameters: dict[str, Any] | None = None


class RequestedOutput(BaseModel):
    """An output to return (``label`` or ``probabilities``)."""

    name: StrictStr
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    """Body of ``POST /v2/models/{name}/infer``."""

    model_config = ConfigDict(extra="forbid")
    id: StrictStr | None = None
    inputs: list[Tensor] = Field(min_length=1)
    outputs: list[RequestedOutput] | None = None
    parameters: dict[str, Any] | None = None


def _flat(tensor: Tensor, where: str) -> list[Any]:
    data = tensor.data
    if data and isinstance(data[0], list):
        data = [x for row in data for x in (row if isinstance(row, list) else [row])]
    rows = tensor.shape[0]
    if any(d < 0 for d in tensor.shape) or math.prod(tensor.shape) != len(data):
        raise HTTPError(
            422, "bad_shape", where, f"shape {tensor.shape} holds not {len(data)} values"
        )
    if len(tensor.shape) == 2 and tensor.shape[1] != 1:
        raise HTTPError(422, "bad_shape", where, "one feature per tensor: shape [n] or [n, 1]")
    if rows != len(data):
        raise HTTPError(422, "bad_shape", where, f"{len(data)} values for {rows} rows")
    return data


def _check_value(value: Any, datatype: str, where: str) -> None:
    if datatype == "BYTES":
        ok = isinstance(value, str)
    elif datatype == "BOOL":
        ok = isinstance(value, bool)
    elif datatype in _NUMERIC:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and not (math.isfinite(value) and abs(value) <= MAX_ABS_NUMBER):
            raise HTTPError(422, "non_finite", where, f"{value!r} is not finite or above 1e30")
    else:
        raise HTTPError(422, "bad_type", where, f"unsupported datatype {datatype!r}")
    if not ok:
        raise HTTPError(422, "bad_type", where, f"{value!r} is not {datatype}")


def to_events(
    body: InferRequest, schema: FeatureSchema, impute: bool, max_instances: int
) -> tuple[list[Event], list[str]]:
    """Instances of the named input tensors as events, checked against ``schema``.

    Returns
    -------
    tuple
        The events ``(n,)`` and the names of imputed (absent) features.

    Raises
    ------
    HTTPError
        422 ``bad_shape``, ``bad_type``, ``non_finite``, ``duplicate_input`` or any reason of
        :meth:`FeatureSchema.check`; 413 ``too_many``.
    """
    columns: dict[str, list[Any]] = {}
    for i, tensor in enumerate(body.inputs):
        where = f"inputs.{i}"
        if tensor.name in columns:
            raise HTTPError(422, "duplicate_input", where, f"input {tensor.name!r} given twice")
        columns[tensor.name] = data = _flat(tensor, where)
        for value in data:
            _check_value(value, tensor.datatype, where)
    n = {len(v) for v in columns.values()}
    if len(n) != 1:
        raise HTTPError(422, "bad_shape", "inputs", f"inputs differ in rows: {sorted(n)}")
    rows = n.pop()
    if rows > max_instances:
        raise HTTPError(413, "too_many", "inputs", f"{rows} > limit {max_instances}")
    try:
        imputed = schema.check(
            {k: v[0] for k, v in columns.items()} if rows else {}, "inputs.", impute
        )
    except DecodeError as exc:
        raise HTTPError(422, exc.reason, exc.field, exc.detail) from None
    events = [
        Event.model_construct(
            id=str(r), ts=None, features={k: v[r] for k, v in columns.items()}, label=None
        )
        for r in range(rows)
    ]
    return events, imputed


def _label_tensor(predictions: list[Prediction]) -> dict[str, Any]:
    labels = [p.label for p in predictions]
    if labels and all(isinstance(x, int) and not isinstance(x, bool) for x in labels):
        datatype = "INT64"
    elif labels and all(isinstance(x, float) for x in labels):
        datatype = "FP64"
    else:
        datatype, labels = "BYTES", ["" if x is None else str(x) for x in labels]
    return {"name": "label", "datatype": datatype, "shape": [len(labels)], "data": labels}


def _outputs(predictions: list[Prediction], requested: list[RequestedOutput] | None) -> list[Any]:
    classes = list(predictions[0].probabilities) if predictions else []
    probs = [p.probabilities.get(c, 0.0) for p in predictions for c in classes]
    out = {
        "label": _label_tensor(predictions),
        "probabilities": {
            "name": "probabilities",
            "datatype": "FP32",
            "shape": [len(predictions), len(classes)],
            "data": probs,
            "parameters": {"classes": ",".join(classes)},
        },
    }
    if requested is None:
        return list(out.values())
    for i, r in enumerate(requested):
        if r.name not in out:
            raise HTTPError(422, "unknown_output", f"outputs.{i}.name", f"outputs are {list(out)}")
    return [out[r.name] for r in requested]


def v2_router(
    current: Callable[[], Model | None],
    name: str,
    settings: ServerSettings,
    ready: Callable[[], bool] | None = None,
) -> APIRouter:
    """Routes of the Open Inference Protocol serving ``current()`` as model ``name``.

    Parameters
    ----------
    current
        Returns the model to serve now (an immutable snapshot, read once per request), with
        the feature schema it learned as ``.schema``.
    name
        The model's name in the paths.
    settings
        Body limits, timeouts, ``max_instances`` and ``impute_missing``.
    ready
        Whether the server is ready (default: the model has learned, ``version > 0``).
    """
    router = APIRouter(prefix="/v2", tags=["v2"])

    def is_ready() -> bool:
        if ready is not None:
            return ready()
        model = current()
        return model is not None and model.version > 0

    def model_of(model_name: str) -> Model:
        if model_name != name:
            raise HTTPError(404, "not_found", "name", f"no model {model_name!r}; served: {name!r}")
        model = current()
        if model is None:
            raise HTTPError(503, "not_ready", "", "no model version loaded yet")
        return model

    @router.get("/health/live")
    async def live() -> dict[str, bool]:
        """Liveness: the server answers."""
        return {"live": True}

    @router.get("/health/ready")
    async def server_ready() -> JSONResponse:
        """Readiness: 200 when the model can serve, 503 otherwise."""
        ok = is_ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @router.get("")
    async def server_metadata() -> dict[str, Any]:
        """Server name, version and protocol extensions."""
        return {"name": "streamcl", "version": "2", "extensions": []}

    @router.get("/models/{model_name}")
    async def model_metadata(model_name: str) -> dict[str, Any]:
        """Inputs (one per learned feature), outputs and the version of the served model."""
        model = model_of(model_name)
        kinds = model.schema.kinds
        return {
            "name": name,
            "versions": [str(model.version)],
            "platform": "streamcl",
            "inputs": [
                {"name": f, "datatype": _DATATYPE[k], "shape": [-1]} for f, k in kinds.items()
            ],
            "outputs": [
                {"name": "label", "datatype": "BYTES", "shape": [-1]},
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, -1]},
            ],
        }

    @router.get("/models/{model_name}/ready")
    async def model_ready(model_name: str) -> JSONResponse:
        """Model readiness: 200 when it has learned, 503 before."""
        model_of(model_name)
        ok = is_ready()
        return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)

    @router.post("/models/{model_name}/infer", openapi_extra=json_body(InferRequest))
    async def infer(model_name: str, request: Request) -> dict[str, Any]:
        """Predict the instances of the named input tensors (one tensor per feature)."""
        model = model_of(model_name)
        body = await read_json(request, InferRequest, settings)
        events, imputed = to_events(
            body, model.schema, settings.impute_missing, settings.max_instances
        )
        predictions = await asyncio.to_thread(model.predict, events)
        response: dict[str, Any] = {
            "model_name": name,
            "model_version": str(model.version),
            "outputs": _outputs(predictions, body.outputs),
        }
        if body.id is not None:
            response["id"] = body.id
        if imputed:
            response["parameters"] = {"imputed": ",".join(imputed)}
        return response

    return router

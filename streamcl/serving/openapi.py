"""The OpenAPI document, completed: error responses, bearer security, no dangling ``$ref``.

FastAPI documents only what a route declares. :func:`install_openapi` patches the generated
document once: every operation lists its 4xx answers with :class:`ErrorBody`; mutating
operations (every ``POST`` but the predictions) need the ``bearer`` scheme; ``/metrics``
is ``text/plain``; health checks document their 503; and schemas that request bodies
define inline (``$defs``) move to ``components/schemas``, where their ``$ref`` points.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from streamcl.serving.errors import ErrorBody, V2ErrorBody

__all__ = ["READ_ONLY_POSTS", "install_openapi", "json_body"]

_REF = "#/components/schemas/{model}"

#: POST operations that change nothing (no bearer token needed).
READ_ONLY_POSTS = frozenset({"/v1/predict", "/v2/models/{model_name}/infer"})

_ERRORS = {
    400: "Malformed body (not JSON, not UTF-8, too deep) or the client went away",
    401: "Missing or wrong bearer token",
    403: "Mutating endpoints are disabled (no token on a non-loopback bind)",
    404: "No such path or model",
    405: "Method not allowed",
    408: "Headers or body not received in time",
    409: "Conflict (duplicate event id, checkpoints disabled)",
    413: "Body or batch too large",
    415: "Body is not application/json",
    422: "Invalid field (named in error.field)",
    503: "Not ready, busy or over the memory budget",
}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting a required JSON body of ``model`` for a raw-Request route."""
    schema = model.model_json_schema(ref_template=_REF)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _hoist_defs(node: Any, components: dict[str, Any]) -> None:
    if isinstance(node, dict):
        for name, schema in node.pop("$defs", {}).items():
            _hoist_defs(schema, components)
            components.setdefault(name, schema)
        for value in node.values():
            _hoist_defs(value, components)
    elif isinstance(node, list):
        for value in node:
            _hoist_defs(value, components)


def _error(description: str, path: str) -> dict[str, Any]:
    model = "V2ErrorBody" if path.startswith("/v2") else "ErrorBody"
    content = {"application/json": {"schema": {"$ref": _REF.format(model=model)}}}
    return {"description": description, "content": content}


def _status_503(path: str) -> dict[str, Any] | None:
    if path in ("/healthz", "/readyz"):
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {"status": {"type": "string"}},
            "required": ["status"],
        }
    elif path.startswith("/v2/") and path.endswith("ready"):
        schema = {"type": "object", "properties": {"ready": {"type": "boolean"}}}
    else:
        return None
    return {
        "description": "Not alive or not ready (the reason)",
        "content": {"application/json": {"schema": schema}},
    }


def _codes(path: str, method: str, op: dict[str, Any]) -> list[int]:
    codes = [404, 405, 408]
    if method in ("post", "put", "patch"):
        codes += [400, 413, 415, 422]
        if path not in READ_ONLY_POSTS:
            codes += [401, 403, 409, 503]
        elif path.startswith("/v1/"):
            codes += [503]
    if any(p.get("in") == "path" for p in op.get("parameters", [])):
        codes.append(422)
    return sorted(set(codes))


def complete(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with errors, security, media types and hoisted schemas (mutated and returned)."""
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update(ErrorBody.model_json_schema(ref_template=_REF).pop("$defs", {}))
    schemas["ErrorBody"] = {
        k: v for k, v in ErrorBody.model_json_schema(ref_template=_REF).items() if k != "$defs"
    }
    schemas["V2ErrorBody"] = V2ErrorBody.model_json_schema(ref_template=_REF)
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, item in spec.get("paths", {}).items():
        for method, op in item.items():
            responses = op.setdefault("responses", {})
            for code in _codes(path, method, op):
                responses[str(code)] = _error(_ERRORS[code], path)
            late = _status_503(path)
            if late is not None:
                responses["503"] = late
            if method == "post" and path not in READ_ONLY_POSTS:
                op["security"] = [{"bearer": []}]
    metrics = spec.get("paths", {}).get("/metrics", {}).get("get")
    if metrics is not None:
        metrics["responses"]["200"] = {
            "description": "Prometheus text exposition format 0.0.4",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    _hoist_defs(spec.get("paths", {}), schemas)
    return spec


def install_openapi(app: FastAPI) -> None:
    """Serve the completed document at ``app.openapi_url`` (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            app.openapi_schema = complete(spec)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

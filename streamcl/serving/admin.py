"""Model-admin routes of the learner: list, pin, unpin and roll back model versions.

``GET /v1/models`` lists the versions in the store (status, held ones with their reason);
``POST /v1/models/pin`` (body ``{"version": N}``), ``POST /v1/models/unpin`` and
``POST /v1/models/rollback`` change the pin every replica follows. The mutating routes need
the bearer token when ``server.api_token`` is set. They act on the store directly (the pin
object is written only by these routes and ``streamcl models``), never on the loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from streamcl.errors import ModelVersionError, StoreError
from streamcl.models.registry import ModelRegistry
from streamcl.serving.api import HTTPError, check_token, read_json
from streamcl.settings import ServerSettings

__all__ = ["PinRequest", "add_model_admin_routes"]


class PinRequest(BaseModel):
    """Body of ``POST /v1/models/pin``."""

    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1)


async def _call(fn: Any, *args: Any) -> Any:
    try:
        return await asyncio.to_thread(fn, *args)
    except ModelVersionError as exc:
        status = 404 if exc.reason == "missing" else 409
        raise HTTPError(status, exc.reason, "version", exc.detail) from None
    except StoreError as exc:
        raise HTTPError(503, "store_unavailable", "models.store", str(exc)) from None


def add_model_admin_routes(app: FastAPI, registry: ModelRegistry, settings: ServerSettings) -> None:
    """Add the ``/v1/models`` routes over ``registry``."""

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        """Versions in the store, the served and pinned one, and the held ones."""
        result: dict[str, Any] = await _call(registry.listing)
        return result

    @app.post("/v1/models/pin")
    async def pin(request: Request) -> dict[str, Any]:
        """Pin a version on every replica until unpinned; needs the token if set."""
        check_token(request, settings)
        body = await read_json(request, PinRequest, settings)
        return {"status": "ok", "pinned": await _call(registry.pin, body.version)}

    @app.post("/v1/models/unpin")
    async def unpin(request: Request) -> dict[str, Any]:
        """Lift the pin: replicas go back to the newest promoted version."""
        check_token(request, settings)
        await _call(registry.unpin)
        return {"status": "ok", "pinned": None}

    @app.post("/v1/models/rollback")
    async def rollback(request: Request) -> dict[str, Any]:
        """Pin the promoted version before the one served now."""
        check_token(request, settings)
        return {"status": "ok", "pinned": await _call(registry.rollback)}

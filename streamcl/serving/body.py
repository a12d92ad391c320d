"""Reading a JSON request body: size-limited, time-limited, strictly parsed, validated."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from streamcl.errors import DecodeError
from streamcl.events import loads_strict
from streamcl.serving.errors import HTTPError
from streamcl.settings import ServerSettings

__all__ = ["read_json"]

M = TypeVar("M", bound=BaseModel)

log = logging.getLogger("streamcl.http")


async def _read(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise HTTPError(413, "too_large", "", f"body above {max_bytes} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > max_bytes:
            raise HTTPError(413, "too_large", "", f"body above {max_bytes} bytes")
    return bytes(body)


async def read_json(request: Request, model: type[M], settings: ServerSettings) -> M:
    """The body of ``request`` validated as ``model``.

    Raises
    ------
    HTTPError
        413 ``too_large`` above ``settings.max_body_bytes``; 408 ``timeout`` when the body
        takes longer than ``settings.body_timeout_s`` seconds; 400 ``client_disconnected``,
        ``bad_json``, ``bad_encoding``, ``too_deep``; 422 ``non_finite``, ``invalid``
        naming the field.
    """
    started = time.monotonic()
    try:
        async with asyncio.timeout(settings.body_timeout_s):
            raw = await _read(request, settings.max_body_bytes)
    except TimeoutError:
        detail = f"body not received within {settings.body_timeout_s:g} s"
        raise HTTPError(408, "timeout", "", detail, headers={"connection": "close"}) from None
    except ClientDisconnect:
        waited = time.monotonic() - started
        raise HTTPError(
            400, "client_disconnected", "", f"client went away after {waited:.1f} s of body"
        ) from None
    try:
        obj = loads_strict(raw, settings.max_body_bytes)
        return model.model_validate(obj)
    except DecodeError as exc:
        status = 400 if exc.reason != "non_finite" else 422
        raise HTTPError(status, exc.reason, exc.field, exc.detail) from None
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in err["loc"])
        raise HTTPError(422, "invalid", field, str(err["msg"])) from None

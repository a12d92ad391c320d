"""Bearer-token protection of the mutating endpoints, safe by default.

With ``server.api_token`` set, a mutating request needs ``Authorization: Bearer <token>``
(the scheme is case-insensitive, RFC 7235 section 2.1; the token is compared in constant
time). Without a token, the mutating endpoints are open only on a loopback bind (or with
``server.allow_unauthenticated``); on any other bind they answer 403, and the start says so.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Callable

from fastapi import Request

from streamcl.serving.errors import HTTPError
from streamcl.settings import ServerSettings

__all__ = ["is_loopback", "token_guard"]

log = logging.getLogger("streamcl.http")


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` accepts connections from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_guard(settings: ServerSettings) -> Callable[[Request], None]:
    """The check a mutating route calls first; logs at build time whether they are disabled.

    Raises
    ------
    HTTPError
        (from the returned check) 401 ``unauthorized`` for a missing or wrong token, 403
        ``disabled`` when no token is set on a non-loopback bind.
    """
    token = settings.api_token
    secret = b"" if token is None else token.get_secret_value().encode()
    open_ = token is None and (is_loopback(settings.host) or settings.allow_unauthenticated)
    if token is None and not open_:
        log.warning(
            "mutating endpoints (POST /v1/events, /v1/checkpoint, /v1/reset) are disabled: "
            "bind %s is not loopback and server.api_token is not set "
            "(set it, or server.allow_unauthenticated: true)",
            settings.host,
        )

    def check(request: Request) -> None:
        if token is None:
            if open_:
                return
            raise HTTPError(
                403, "disabled", "server.api_token", "mutating endpoints need server.api_token here"
            )
        scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), secret):
            raise HTTPError(
                401,
                "unauthorized",
                "authorization",
                "missing or wrong bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check

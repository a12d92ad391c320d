"""HTTP request metrics: count and duration by method, route template and status.

The route label is the matched route's template (``/v2/models/{model_name}/infer``), never
the raw path, so label sets stay bounded; requests matching no route count as
``unmatched``.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

from streamcl.metrics import Metrics

__all__ = ["HTTPMetricsMiddleware"]


class HTTPMetricsMiddleware:
    """Pure ASGI middleware recording ``streamcl_http_requests_total`` and durations.

    Parameters
    ----------
    app
        The wrapped ASGI application.
    metrics
        Where ``http_requests`` and ``http_duration`` are declared.
    """

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        """Handle one ASGI call, counting HTTP requests by route template and status."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_status(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = str(scope.get("method", ""))
            self.metrics.http_requests.labels(method, route, str(status[0])).inc()
            self.metrics.http_duration.labels(method, route).observe(time.perf_counter() - started)

"""A small typed Python client of the streamcl HTTP API (httpx).

Examples
--------
>>> client = Client("http://127.0.0.1:8080", token=None)  # doctest: +SKIP
>>> client.predict([{"nswprice": 0.06, "period": 0.5}])[0].label  # doctest: +SKIP
1
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from streamcl.errors import StreamclError

__all__ = ["APIError", "Client", "Prediction"]


class APIError(StreamclError):
    """An error answered by the server: ``status`` and the common error body's fields."""

    def __init__(self, status: int, reason: str, field: str, detail: str) -> None:
        where = f" at {field}" if field else ""
        super().__init__(f"{status} {reason}{where}: {detail}")
        self.status, self.reason, self.field, self.detail = status, reason, field, detail


@dataclass(frozen=True)
class Prediction:
    """One prediction: the label (class or value) and the class probabilities."""

    label: int | float | str | None
    probabilities: dict[str, float]


class Client:
    """Client of one streamcl server.

    Parameters
    ----------
    base_url
        ``http://host:port``.
    token
        Bearer token for the mutating endpoints (``server.api_token``).
    timeout_s
        Per-request timeout, seconds.
    """

    def __init__(self, base_url: str, token: str | None = None, timeout_s: float = 30.0) -> None:
        headers = {} if token is None else {"authorization": f"Bearer {token}"}
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        r = self._http.request(method, path, json=body)
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
                err = err if isinstance(err, dict) else r.json()
                raise APIError(r.status_code, err["reason"], err["field"], err["detail"])
            except (ValueError, KeyError, TypeError):
                raise APIError(r.status_code, "http_error", "", r.text[:200]) from None
        return r.json()

    def predict(self, instances: Sequence[Mapping[str, Any]]) -> list[Prediction]:
        """Predict feature dicts with the served model (``POST /v1/predict``); never learns.

        Raises
        ------
        APIError
            E.g. 422 ``unknown_feature`` naming ``instances.<i>.features.<name>``.
        """
        body = {"instances": [{"features": dict(x)} for x in instances]}
        out = self._call("POST", "/v1/predict", body)
        return [Prediction(p["label"], p["probabilities"]) for p in out["predictions"]]

    def ingest(self, events: Sequence[Mapping[str, Any]]) -> list[Prediction]:
        """Predict, then learn, events ``{"id", "features", "label"?, "ts"?}`` (POST /v1/events).

        Raises
        ------
        APIError
            E.g. 409 ``duplicate_id``, 401 without the token.
        """
        out = self._call("POST", "/v1/events", {"events": [dict(e) for e in events]})
        return [Prediction(p["label"], p["probabilities"]) for p in out["predictions"]]

    def model(self) -> dict[str, Any]:
        """The model and loop summary (``GET /v1/model``)."""
        return dict(self._call("GET", "/v1/model"))

    def versions(self) -> list[dict[str, Any]]:
        """Published model versions (``GET /v1/versions``, on servers that publish them).

        Raises
        ------
        APIError
            404 on a server without model versions.
        """
        out = self._call("GET", "/v1/versions")
        return list(out["versions"] if isinstance(out, dict) else out)

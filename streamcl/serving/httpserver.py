"""Run an app under uvicorn with read timeouts and the common error body below the app.

uvicorn answers a request h11 cannot parse (``Content-Length: -1``, a bad request line)
itself, in plain text; :class:`StreamclH11Protocol` answers it with the common error body.
uvicorn also has no deadline for a request's headers: a client trickling header bytes keeps
its connection forever (slowloris). The protocol closes a connection whose headers are not
complete ``header_timeout_s`` after their first byte (or after connecting) with a 408. Body
reads are bounded in the app (:func:`streamcl.serving.api.create_app`'s ``read_json``),
idle keep-alive connections by uvicorn's ``timeout_keep_alive``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from streamcl.serving.errors import error_body
from streamcl.settings import ServerSettings

__all__ = ["StreamclH11Protocol", "serve", "server_config"]

log = logging.getLogger("streamcl.http")


def _raw_response(status: int, phrase: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(data)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + data


class StreamclH11Protocol(H11Protocol):  # type: ignore[misc]
    """uvicorn's h11 protocol with a header deadline and JSON bodies for its own 400s.

    Attributes
    ----------
    header_timeout_s : float
        Most seconds from a connection (or the first byte of a request) until its headers
        are complete; then the connection is answered 408 and closed.
    """

    header_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the header deadline of the connection's first request."""
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        """Parse ``data``; keep the deadline while a request's headers are incomplete."""
        super().data_received(data)
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._arm()
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Cancel the deadline."""
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if getattr(self, "_header_timer", None) is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if not self.conn.trailing_data[0]:  # not a byte of a request: just close
            self.transport.close()
            return
        detail = f"request headers not complete within {self.header_timeout_s:g} s"
        log.info("%s -> 408 timeout: %s", _peer(self.client), detail)
        self.transport.write(
            _raw_response(408, "Request Timeout", error_body("timeout", "", detail))
        )
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """Answer an unparsable request with the common error body, then close."""
        detail = msg
        log.info("%s -> 400 bad_request: %s", _peer(self.client), detail)
        data = json.dumps(error_body("bad_request", "", detail)).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
            (b"connection", b"close"),
        ]
        try:
            self.transport.write(self.conn.send(h11.Response(status_code=400, headers=headers)))
            self.transport.write(self.conn.send(h11.Data(data=data)))
            self.transport.write(self.conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError:
            self.transport.write(_raw_response(400, "Bad Request", json.loads(data)))
        self.transport.close()


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "client"


def server_config(
    app: Any, settings: ServerSettings, host: str | None = None, port: int | None = None
) -> uvicorn.Config:
    """Uvicorn's config for ``app`` with the protocol and timeouts of ``settings``.

    Parameters
    ----------
    app
        An ASGI application.
    settings
        ``header_timeout_s`` and ``keep_alive_s`` (seconds), ``max_header_bytes``.
    host, port
        Override ``settings.host`` and ``settings.port``.
    """
    protocol = type(
        "Protocol", (StreamclH11Protocol,), {"header_timeout_s": settings.header_timeout_s}
    )
    return uvicorn.Config(
        app,
        host=host or settings.host,
        port=settings.port if port is None else port,
        http=protocol,
        timeout_keep_alive=max(1, round(settings.keep_alive_s)),
        h11_max_incomplete_event_size=settings.max_header_bytes,
        log_level="warning",
    )


def serve(
    app: Any, settings: ServerSettings, host: str | None = None, port: int | None = None
) -> None:
    """Serve ``app`` until SIGTERM/SIGINT (then re-raised, so the exit status reports it)."""
    uvicorn.Server(server_config(app, settings, host, port)).run()

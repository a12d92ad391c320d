"""Run an app under uvicorn with read timeouts and the common error body below the app.

The HTTP parser is ``server.http``: httptools (llhttp, the default; about a third less CPU
per request than h11) or h11; the event loop ``server.event_loop`` (uvloop when installed,
by default). uvicorn answers a request the parser cannot parse (``Content-Length: -1``, a
bad request line) itself, in plain text; :class:`StreamclHttpToolsProtocol` and
:class:`StreamclH11Protocol` answer it with the common error body.
uvicorn also has no deadline for a request's headers: a client trickling header bytes keeps
its connection forever (slowloris). The protocol closes a connection whose headers are not
complete ``header_timeout_s`` after their first byte (or after connecting) with a 408. Body
reads are bounded in the app (:func:`streamcl.serving.api.create_app`'s ``read_json``),
idle keep-alive connections by uvicorn's ``timeout_keep_alive``.

uvicorn writes a response's status line and headers when the app sends
``http.response.start`` and its body with ``http.response.body``: two writes, and on
loopback two wake-ups of the client, for a small JSON answer. The httptools protocol holds
the head until the first body message and writes both at once (the ASGI spec lets a server
send nothing before the first body message): one ``send`` per small response.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from streamcl.serving.errors import error_body
from streamcl.settings import ServerSettings

__all__ = ["StreamclH11Protocol", "StreamclHttpToolsProtocol", "serve", "server_config"]

log = logging.getLogger("streamcl.http")


def _raw_response(status: int, phrase: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(data)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + data


class _HeaderDeadline:
    """The header deadline shared by both protocols: :meth:`_partial` tells 408 from idle."""

    header_timeout_s: float = 10.0
    _header_timer: asyncio.TimerHandle | None
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    client: tuple[str, int] | None

    def _arm(self) -> None:
        if getattr(self, "_header_timer", None) is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _disarm(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _partial(self) -> bool | None:
        """True: part of a request's headers came; False: none (idle); None: not waiting."""
        raise NotImplementedError

    def _headers_late(self) -> None:
        self._header_timer = None
        partial = self._partial()
        if self.transport.is_closing() or partial is None:
            return
        if not partial:  # not a byte of a request: just close
            self.transport.close()
            return
        detail = f"request headers not complete within {self.header_timeout_s:g} s"
        log.info("%s -> 408 timeout: %s", _peer(self.client), detail)
        self.transport.write(
            _raw_response(408, "Request Timeout", error_body("timeout", "", detail))
        )
        self.transport.close()


class StreamclH11Protocol(_HeaderDeadline, H11Protocol):  # type: ignore[misc]
    """uvicorn's h11 protocol with a header deadline and JSON bodies for its own 400s.

    Attributes
    ----------
    header_timeout_s : float
        Most seconds from a connection (or the first byte of a request) until its headers
        are complete; then the connection is answered 408 and closed.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the header deadline of the connection's first request."""
        super().connection_made(transport)
        self._header_timer = None
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

    def _partial(self) -> bool | None:
        if self.conn.their_state is not h11.IDLE:
            return None
        return bool(self.conn.trailing_data[0])

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


class _HeadWithBody:
    """A response cycle's transport that writes the response head with the first body chunk.

    uvicorn's cycle writes the head (status line and headers) on ``http.response.start``;
    it is held here and written in one piece with the next write (the first body chunk,
    possibly empty) or before a close. Everything else is the connection's transport.
    """

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle) -> None:
        self._transport, self._cycle = transport, cycle
        self._head: bytes | None = None
        self._done = False

    def write(self, data: bytes) -> None:
        """Hold the head; write anything else, after the head when one is held."""
        cycle = self._cycle
        started = cycle.response_started and not cycle.response_complete
        if started and not self._done and self._head is None:  # the start message's head
            self._head = bytes(data)
            return
        if self._head is not None:
            data, self._head, self._done = self._head + data, None, True
        self._transport.write(data)

    def close(self) -> None:
        """Write a held head (a response that never sent its body), then close."""
        if self._head is not None:
            self._transport.write(self._head)
            self._head = None
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class StreamclHttpToolsProtocol(_HeaderDeadline, HttpToolsProtocol):  # type: ignore[misc]
    """uvicorn's httptools (llhttp) protocol with the same deadline, limit and 400 bodies.

    The parser of the default ``server.http``: it costs about a third less CPU per request
    than h11. Requests whose request line and headers exceed ``max_header_bytes`` are
    answered 400 (h11 enforces the same bound itself). A response's head is written with
    its first body chunk (:class:`_HeadWithBody`).

    Attributes
    ----------
    header_timeout_s : float
        As :class:`StreamclH11Protocol`.
    max_header_bytes : int
        Most bytes of a request line plus headers.
    """

    max_header_bytes: int = 16_384

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the header deadline of the connection's first request."""
        super().connection_made(transport)
        self._header_timer = None
        self._in_headers = self._in_body = False
        self._raw_bytes = self._header_bytes = 0
        self._too_long = ""
        self._arm()

    def data_received(self, data: bytes) -> None:
        """Parse ``data``; refuse headers above ``max_header_bytes``, even unfinished."""
        if not self._in_body:
            self._raw_bytes += len(data)
        super().data_received(data)
        too_long = self._in_headers and self._raw_bytes > self.max_header_bytes
        if too_long and not self.transport.is_closing():
            self.send_400_response(self._limit_detail())

    def _limit_detail(self) -> str:
        return f"request line and headers above {self.max_header_bytes} bytes"

    def on_message_begin(self) -> None:
        """A request's first byte: its headers are due within the deadline."""
        super().on_message_begin()
        self._in_headers, self._header_bytes = True, 0
        self._arm()

    def on_url(self, url: bytes) -> None:
        """Count the request target against the limit."""
        self._header_bytes += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Count a header against the limit."""
        self._header_bytes += len(name) + len(value) + 4
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        """Headers complete: stop the deadline; refuse them above the limit, else start."""
        self._in_headers, self._in_body, self._raw_bytes = False, True, 0
        self._disarm()
        if self._header_bytes > self.max_header_bytes:
            self._too_long = self._limit_detail()
            raise ValueError(self._too_long)  # the parser's error: answered 400 below
        super().on_headers_complete()
        if self.cycle.scope["method"] != "HEAD":  # uvicorn writes no body (nothing to join)
            self.cycle.transport = _HeadWithBody(self.transport, self.cycle)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        """The body is complete."""
        self._in_body = False
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        """Cancel the deadline."""
        self._disarm()
        super().connection_lost(exc)

    def _partial(self) -> bool | None:
        return None if self._in_body else self._in_headers

    def send_400_response(self, msg: str) -> None:
        """Answer an unparsable request with the common error body, then close."""
        msg = self._too_long or msg
        log.info("%s -> 400 bad_request: %s", _peer(self.client), msg)
        self.transport.write(_raw_response(400, "Bad Request", error_body("bad_request", "", msg)))
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
        ``http`` and ``event_loop``; ``header_timeout_s`` and ``keep_alive_s`` (seconds),
        ``max_header_bytes``.
    host, port
        Override ``settings.host`` and ``settings.port``.
    """
    base = StreamclHttpToolsProtocol if settings.http == "httptools" else StreamclH11Protocol
    limits = {
        "header_timeout_s": settings.header_timeout_s,
        "max_header_bytes": settings.max_header_bytes,
    }
    return uvicorn.Config(
        app,
        host=host or settings.host,
        port=settings.port if port is None else port,
        http=type("Protocol", (base,), limits),
        loop=settings.event_loop,
        timeout_keep_alive=max(1, round(settings.keep_alive_s)),
        h11_max_incomplete_event_size=settings.max_header_bytes,
        log_level="warning",
        access_log=False,
    )


def serve(
    app: Any, settings: ServerSettings, host: str | None = None, port: int | None = None
) -> None:
    """Serve ``app`` until SIGTERM/SIGINT (then re-raised, so the exit status reports it)."""
    uvicorn.Server(server_config(app, settings, host, port)).run()

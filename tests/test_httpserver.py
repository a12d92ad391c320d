"""Both HTTP parsers (``server.http``) below the app: the error shape, deadlines and limits."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import pytest
from live_server import FEATURES, live_server, raw_request

from streamcl.serving.httpserver import _HeadWithBody


@pytest.fixture(scope="module", params=["httptools", "h11"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    settings = {"http": request.param, "header_timeout_s": 1.0, "max_header_bytes": 2048}
    with live_server(learn=100, **settings) as (base, _):
        yield base, request.param


@pytest.fixture()
def url(server: tuple[str, str]) -> str:
    return server[0]


def test_predicts_over_keep_alive_connections(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        for _ in range(5):
            r = client.post("/v1/predict", json={"instances": [{"features": FEATURES}]})
            assert r.status_code == 200 and len(r.json()["predictions"]) == 1


def test_unparsable_request_gets_the_error_shape(url: str) -> None:
    out = raw_request(url, b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and b"application/json" in head
    assert b'"reason": "bad_request"' in body


def test_headers_above_the_limit_are_refused(server: tuple[str, str]) -> None:
    url, parser = server
    big = b"X-Filler: " + b"a" * 4096
    out = raw_request(url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + big)  # unfinished
    assert out.startswith(b"HTTP/1.1 400") and b'"bad_request"' in out
    if parser == "httptools":  # h11 bounds only its buffer of an unfinished request
        out = raw_request(url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + big + b"\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 400") and b"above 2048 bytes" in out
    small = raw_request(url, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert small.startswith(b"HTTP/1.1 200")


def test_slow_headers_time_out_and_idle_connections_close(url: str) -> None:
    started = time.monotonic()
    out = raw_request(url, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never end
    assert out.startswith(b"HTTP/1.1 408") and b'"timeout"' in out
    assert time.monotonic() - started < 4
    started = time.monotonic()
    assert raw_request(url, b"") == b""  # connected, never sent a byte: closed without an answer
    assert time.monotonic() - started < 4


def test_head_requests_and_100_continue_are_answered(url: str) -> None:
    started = time.monotonic()
    out = raw_request(url, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 405") and out.endswith(b"\r\n\r\n")  # a head, no body
    assert time.monotonic() - started < 4
    body = json.dumps({"instances": [{"features": FEATURES}]}).encode()
    head = (
        b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    out = raw_request(url, head + body)
    assert out.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK")
    assert len(json.loads(out.split(b"\r\n\r\n", 2)[2])["predictions"]) == 1


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def test_a_response_head_is_written_with_its_first_body_chunk() -> None:
    transport = _Transport()
    cycle = SimpleNamespace(response_started=False, response_complete=False)
    wrapped = _HeadWithBody(transport, cycle)  # type: ignore[arg-type]
    wrapped.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # before the response: at once
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    cycle.response_started = True
    wrapped.write(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n")  # the head: held
    assert len(transport.writes) == 1
    wrapped.write(b"ab")  # a streamed body: the head goes with its first chunk, then as is
    wrapped.write(b"cd")
    assert transport.writes[1:] == [b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nab", b"cd"]
    assert not wrapped.is_closing()  # the rest is the transport's

    unfinished = _Transport()
    cycle = SimpleNamespace(response_started=True, response_complete=False)
    wrapped = _HeadWithBody(unfinished, cycle)  # type: ignore[arg-type]
    wrapped.write(b"HTTP/1.1 200 OK\r\n\r\n")
    wrapped.close()  # an app that never sent its body: the head still goes before the close
    assert unfinished.writes == [b"HTTP/1.1 200 OK\r\n\r\n"] and unfinished.closed

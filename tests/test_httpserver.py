"""Both HTTP parsers (``server.http``) below the app: the error shape, deadlines and limits."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from live_server import FEATURES, live_server, raw_request


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

"""A real uvicorn server on a free loopback port, in a thread, for client-level tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from streamcl.service import Service
from streamcl.serving.api import create_app
from streamcl.serving.httpserver import server_config
from streamcl.settings import load_settings

#: One elec2-shaped instance's features (the columns a model learned from elec2 needs).
FEATURES = {
    "period": 0.5,
    "nswprice": 0.06,
    "nswdemand": 0.4,
    "vicprice": 0.003,
    "vicdemand": 0.42,
    "transfer": 0.41,
}


def raw_request(url: str, data: bytes, wait_s: float = 5.0) -> bytes:
    """Send ``data`` as is to the server at ``url`` and read until it closes (bytes)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait_s) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def elec2_events(n: int, prefix: str = "") -> list[dict[str, Any]]:
    from sources import elec2_rows

    out = []
    for i, row in enumerate(elec2_rows(n)):
        label = int(row.pop("class"))
        features = {k: float(v) for k, v in row.items()}
        out.append({"id": f"{prefix}{i}", "features": features, "label": label})
    return out


@contextmanager
def live_server(learn: int = 0, **server: Any) -> Iterator[tuple[str, Service]]:
    """``(base_url, service)`` of a running server; ``learn`` elec2 events posted first."""
    settings = load_settings(source={"kind": "none"}, server={"port": free_port(), **server})
    service = Service(settings)
    config = server_config(create_app(service), settings.server)
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    url = f"http://127.0.0.1:{settings.server.port}"
    try:
        if learn:
            token = settings.server.api_token
            headers = (
                {} if token is None else {"authorization": f"Bearer {token.get_secret_value()}"}
            )
            r = httpx.post(
                f"{url}/v1/events",
                json={"events": elec2_events(learn)},
                headers=headers,
                timeout=60,
            )
            assert r.status_code == 200, r.text
        yield url, service
    finally:
        srv.should_exit = True
        thread.join(20)

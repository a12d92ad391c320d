"""The dashboard served live on elec2, and the replay report opened from disk, in Chromium.

Each test asserts from the page itself (tests/browser.py drives headless Chromium over the
DevTools protocol): the charts are drawn (coloured pixels on every canvas, where axes and
text are grey), the numbers shown equal ``/v1/model``'s, drift markers are drawn once the
learner has logged a drift, and the browser logged no error. Screenshots go to the test's
tmp folder, and are copied to ``STREAMCL_SCREENSHOT_DIR`` when it is set: the README's
``docs/dashboard.png`` and ``docs/report.png`` are made so, on all of elec2
(``STREAMCL_DASHBOARD_EVENTS=45312``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from browser import Browser, chart_pixels
from fastapi import FastAPI
from sources import elec2_rows, write_csv

from streamcl.replay import replay
from streamcl.service import Service
from streamcl.serving import dashboard
from streamcl.serving.api import create_app
from streamcl.settings import Settings, load_settings

pytestmark = pytest.mark.slow

EVENTS = int(os.environ.get("STREAMCL_DASHBOARD_EVENTS", "6000"))  # elec2 drifts at ~2,500
RED = (214, 39, 40)  # loss drift markers
CHARTS = {"chart-score", "chart-recovery", "chart-weights", "chart-health", "chart-memory"}


def _settings(path: Path) -> Settings:
    """elec2 from ``path``; plasticity health every 50 steps (800 events), not every 500."""
    source = {"kind": "file", "path": str(path)}
    return load_settings(source=source, plasticity={"health_every": 50})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keep_screenshot(path: Path, name: str) -> None:
    folder = os.environ.get("STREAMCL_SCREENSHOT_DIR")
    if folder:
        shutil.copyfile(path, Path(folder) / name)


@pytest.fixture(scope="module")
def elec2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(tmp_path_factory.mktemp("data") / "elec2.csv", elec2_rows(EVENTS))


@contextlib.contextmanager
def _serve(app: FastAPI) -> Iterator[str]:
    """``app`` behind a real uvicorn on 127.0.0.1, in a thread; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, port=_free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start within 30 s"
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture()
def server(elec2: Path) -> Iterator[tuple[str, Service]]:
    """streamcl on elec2, held (it reads nothing) until the test sets ``loop.hold = None``.

    Full-speed reads of 512 events keep the micro-batches, and so the drifts, the same
    from run to run (a rate limit would cut reads, and micro-batches, anywhere).
    """
    service = Service(_settings(elec2))
    service.loop.hold = "held by the test until the page is open"
    with _serve(create_app(service)) as url:
        yield url, service


def _pick(obj: Any, path: str) -> Any:
    for key in path.split("."):
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _assert_numbers_equal_model(browser: Browser, model: dict[str, Any]) -> int:
    """Every ``[data-model]`` number on the page equals the field of ``model``; returns count."""
    shown = browser.evaluate(
        "Array.from(document.querySelectorAll('[data-model]'))"
        ".map(e => [e.dataset.model, e.textContent])"
    )
    assert shown, "the page shows no model figure"
    for path, text in shown:
        value = _pick(model, path)
        if path.startswith("drift.counts") and value is None:
            value = 0  # no drift of that detector yet
        if value is None:
            assert text == "–", (path, text)
        elif isinstance(value, float) and not value.is_integer():
            assert float(text) == pytest.approx(round(value, 4), abs=1e-9), (path, text, value)
        else:
            assert float(text) == value, (path, text, value)
    return len(shown)


def _assert_charts_drawn(browser: Browser, ids: set[str], history: dict[str, Any]) -> None:
    pixels = chart_pixels(browser, RED)
    if not any(d["detector"] == "loss" for d in history["drifts"]):  # nothing to draw there
        ids = ids - {"chart-recovery"}
        text = browser.evaluate("document.getElementById('chart-recovery').textContent")
        assert text == "no loss drift yet"
    for chart in ids:
        assert pixels[chart]["width"] > 200, (chart, pixels[chart])
        assert pixels[chart]["saturated"] > 100, f"{chart} has no series drawn: {pixels[chart]}"


def _assert_drift_markers(browser: Browser, history: dict[str, Any]) -> None:
    drifts = history["drifts"]
    assert drifts, "the learner logged no drift on this stream"
    markers = int(browser.evaluate("document.getElementById('chart-score').dataset.driftMarkers"))
    assert markers == len(drifts)
    rows = browser.evaluate("document.querySelectorAll('[data-drift-row]').length")
    assert rows == len(drifts)
    if any(d["detector"] == "loss" for d in drifts):
        assert chart_pixels(browser, RED)["chart-score"]["colour"] > 20


def test_live_dashboard_on_elec2(server: tuple[str, Service], tmp_path: Path) -> None:
    url, service = server
    with Browser(tmp_path / "profile") as browser:
        browser.navigate(f"{url}/dashboard")
        browser.wait_for("document.body.dataset.rendered")
        waiting = browser.evaluate("document.getElementById('chart-score').textContent")
        assert waiting == "waiting for data…"  # nothing learned yet: no chart, no marker
        service.loop.hold = None  # the learner starts; the page polls and draws live
        browser.wait_for(
            "Number(document.getElementById('chart-score').dataset.driftMarkers) > 0",
            timeout_s=120,
        )
        deadline = time.monotonic() + 120
        model = httpx.get(f"{url}/v1/model", timeout=5).json()
        while model["events_seen"] < EVENTS and time.monotonic() < deadline:
            time.sleep(0.5)
            model = httpx.get(f"{url}/v1/model", timeout=5).json()
        assert model["events_seen"] == EVENTS and model["source"]["exhausted"]
        browser.wait_for(
            f"document.querySelector('[data-model=\"events_seen\"]').textContent === '{EVENTS}'"
        )
        stamp = browser.evaluate("document.body.dataset.rendered")
        browser.wait_for(f"document.body.dataset.rendered !== '{stamp}'")  # a fresh poll
        model = httpx.get(f"{url}/v1/model", timeout=5).json()
        history = httpx.get(f"{url}/v1/history", timeout=5).json()
        assert _assert_numbers_equal_model(browser, model) >= 10
        _assert_charts_drawn(browser, CHARTS | {"chart-rate"}, history)
        _assert_drift_markers(browser, history)
        browser.screenshot(tmp_path / "dashboard.png")
        assert browser.errors == []
    assert (tmp_path / "dashboard.png").read_bytes()[:4] == b"\x89PNG"
    _keep_screenshot(tmp_path / "dashboard.png", "dashboard.png")


def test_report_html_opened_from_disk(elec2: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    result = replay(_settings(elec2), str(report))
    assert result["events"] == EVENTS
    with Browser(tmp_path / "profile") as browser:
        browser.navigate(report.as_uri())
        browser.wait_for("document.body.dataset.rendered")
        model = browser.evaluate("JSON.parse(document.getElementById('streamcl-data').text).model")
        history = browser.evaluate(
            "JSON.parse(document.getElementById('streamcl-data').text).history"
        )
        assert model["accuracy"] == pytest.approx(result["accuracy"])
        assert history["series"]["events"][-1] == EVENTS
        assert _assert_numbers_equal_model(browser, model) >= 10
        _assert_charts_drawn(browser, CHARTS, history)
        _assert_drift_markers(browser, history)
        browser.screenshot(tmp_path / "report.png")
        assert browser.errors == []
    _keep_screenshot(tmp_path / "report.png", "report.png")


def test_png_report_shows_drifts_baseline_and_legend(elec2: Path, tmp_path: Path) -> None:
    import matplotlib.image

    report = tmp_path / "report.png"
    replay(_settings(elec2), str(report))
    image = matplotlib.image.imread(report)[..., :3]
    assert image.shape[0] > 600 and image.shape[1] > 1000
    red = (abs(image - [c / 255 for c in RED]).max(axis=2) < 0.06).sum()
    grey = (abs(image - 127 / 255).max(axis=2) < 0.03).sum()  # the no-change baseline
    assert red > 200 and grey > 200, (red, grey)


def test_a_role_without_a_loop_shows_what_it_has(tmp_path: Path) -> None:
    """A serving role: no history; the model's version figures are shown as they come."""
    app = FastAPI()
    info = {  # the fields of a serving replica's /v1/model
        "role": "serving",
        "model_version": 5,
        "created": time.time() - 30,
        "age_s": 1.5,
        "pinned": None,
        "learning_steps": 190,
        "refused": [{"version": 6, "reason": "checksum"}],
    }

    @app.get("/v1/model")
    async def model() -> dict[str, Any]:
        return info

    app.include_router(dashboard.router(lambda: None))
    with _serve(app) as url, Browser(tmp_path / "profile") as browser:
        browser.navigate(f"{url}/dashboard")
        browser.wait_for("document.body.dataset.rendered")
        assert _assert_numbers_equal_model(browser, info) >= 5
        shown = browser.evaluate(
            "Object.fromEntries(Array.from(document.querySelectorAll('#versions [data-model]'))"
            ".map(e => [e.dataset.model, e.textContent]))"
        )
        assert set(shown) == {
            "version",
            "model_version",
            "created",
            "age_s",
            "pinned",
            "learning_steps",
        }
        assert shown["model_version"] == "5" and shown["pinned"] == "–"
        rows = browser.evaluate(
            "Array.from(document.querySelectorAll('#versions tr')).map(r => r.textContent)"
        )
        assert "learning_steps190" in rows and "refused1: 6 checksum" in rows
        ages = [int(r.removeprefix("created (age, s)")) for r in rows if "(age, s)" in r]
        assert len(ages) == 1 and 30 <= ages[0] < 150  # created 30 s before the page loaded
        text = browser.evaluate("document.getElementById('chart-score').textContent")
        assert "history unavailable" in text
        assert browser.evaluate("document.querySelectorAll('canvas').length") == 0
        assert browser.errors == []

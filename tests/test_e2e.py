"""End to end on a slice of elec2: the replay CLI and the running service."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sources import elec2_rows, write_csv

ROOT = Path(__file__).resolve().parents[1]
STREAMCL = [sys.executable, "-m", "streamcl.cli"]


@pytest.fixture(scope="module")
def elec2_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(tmp_path_factory.mktemp("data") / "elec2_3000.csv", elec2_rows(3_000))


def test_replay_reports_prequential_accuracy(elec2_slice: Path, tmp_path: Path) -> None:
    report = tmp_path / "acc.png"
    out = subprocess.run(
        [
            *STREAMCL,
            "replay",
            "--data",
            str(elec2_slice),
            "--target",
            "class",
            "--report",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["events"] == 3_000
    assert result["scored"] == 3_000
    assert 0.70 < result["accuracy"] <= 1.0  # the no-change classifier scores about 0.85 here
    assert result["events_per_s"] > 0
    assert report.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_replay_of_a_missing_file_exits_2(tmp_path: Path) -> None:
    out = subprocess.run(
        [*STREAMCL, "replay", "--data", str(tmp_path / "nope.csv"), "--target", "class"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "not found" in out.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_serves_predictions_while_it_learns(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "STREAMCL_SOURCE__RATE": "2000", "STREAMCL_SOURCE__LOOP": "true"}
    proc = subprocess.Popen(
        [*STREAMCL, "run", "--config", str(ROOT / "config" / "default.yaml"), "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        ready = False
        while time.monotonic() < deadline and not ready:
            with contextlib.suppress(httpx.TransportError):
                ready = httpx.get(f"{base}/readyz", timeout=1).status_code == 200
            time.sleep(0.2)
        assert ready, "/readyz did not answer 200 within 30 s"
        instance = {
            "features": {
                "period": 0.5,
                "nswprice": 0.05,
                "nswdemand": 0.4,
                "vicprice": 0.003,
                "vicdemand": 0.42,
                "transfer": 0.41,
            }
        }
        versions = []
        for _ in range(5):
            r = httpx.post(f"{base}/v1/predict", json={"instances": [instance]}, timeout=5)
            assert r.status_code == 200
            body = r.json()
            assert body["predictions"][0]["label"] in (0, 1)
            versions.append(body["model_version"])
            time.sleep(0.3)
        assert versions[-1] > versions[0], "the model kept learning while serving"
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        assert "streamcl_prequential_accuracy" in metrics
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    output = proc.stdout.read() if proc.stdout else ""
    # uvicorn re-raises SIGTERM after its graceful shutdown; the loop must have stopped cleanly.
    assert proc.returncode in (0, -15), output
    assert "stopped after" in output

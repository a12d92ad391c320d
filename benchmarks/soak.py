"""Soak test: run the service for a while under a steady stream and concurrent predictions.

Starts ``streamcl run`` as a subprocess on loopback (file source replaying generated events
with unique ids at ``--rate`` events/s, checkpoints on), sends ``--predictors`` concurrent
``POST /v1/predict`` loops and a trickle of ``POST /v1/events``, and prints events/s,
predict latency p50/p99 and the service's RSS at start and end. Exits 1 when the RSS ends
above ``--memory-budget-bytes`` or the service stopped answering.

Usage::

    .venv/bin/python benchmarks/soak.py --seconds 600 --rate 1000
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import yaml

BIN = Path(sys.executable).parent


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid``, bytes (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def write_events(path: Path, n: int) -> None:
    with path.open("w") as fh:
        for i in range(n):
            x = math.sin(i / 50.0)
            features = {"x": x, "y": (i % 17) / 17.0, "c": f"k{i % 9}"}
            fh.write(json.dumps({"id": f"s-{i}", "features": features, "label": int(x > 0)}))
            fh.write("\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def predictor(base: str, stop: threading.Event, latencies: list[float], errors: list[int]) -> None:
    body = {"instances": [{"features": {"x": 0.3, "y": 0.5, "c": "k1"}}]}
    with httpx.Client(base_url=base, timeout=10.0) as client:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                r = client.post("/v1/predict", json=body)
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append(time.perf_counter() - started)
            if not ok:
                errors.append(1)


def poster(base: str, stop: threading.Event, posted: list[int]) -> None:
    i = 0
    with httpx.Client(base_url=base, timeout=10.0) as client:
        while not stop.is_set():
            events = [
                {
                    "id": f"h-{i + j}",
                    "features": {"x": 0.1 * j, "y": 0.2, "c": "k2"},
                    "label": j % 2,
                }
                for j in range(10)
            ]
            i += 10
            try:
                if client.post("/v1/events", json={"events": events}).status_code == 200:
                    posted.append(10)
            except httpx.HTTPError:
                pass
            stop.wait(0.1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=600.0, help="soak duration, s")
    p.add_argument("--rate", type=float, default=1_000.0, help="stream rate, events/s")
    p.add_argument("--predictors", type=int, default=4, help="concurrent predict loops")
    p.add_argument("--memory-budget-bytes", type=int, default=1_500_000_000)
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="streamcl-soak-"))
    data = tmp / "events.jsonl"
    write_events(data, int(args.rate * args.seconds * 1.1) + 1_000)
    port = free_port()
    config = {
        "source": {"kind": "file", "path": str(data), "target": None, "rate": args.rate},
        "checkpoint": {"dir": str(tmp / "ckpt"), "every_events": 20_000, "every_seconds": 30},
        "server": {"port": port, "memory_budget_bytes": args.memory_budget_bytes},
    }
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))
    log = (tmp / "service.log").open("wb")
    proc = subprocess.Popen(
        [str(BIN / "streamcl"), "run", "--config", str(tmp / "config.yaml")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=base, timeout=10.0)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            print("service never became ready", file=sys.stderr)
            return 1
        stop = threading.Event()
        latencies: list[float] = []
        errors: list[int] = []
        posted: list[int] = []
        threads = [
            threading.Thread(target=predictor, args=(base, stop, latencies, errors))
            for _ in range(args.predictors)
        ] + [threading.Thread(target=poster, args=(base, stop, posted))]
        rss_start = rss_bytes(proc.pid)
        learned_start = client.get("/v1/model").json()["learned_ids"]
        started = time.monotonic()
        for t in threads:
            t.start()
        not_ready = 0
        peak = rss_start
        while time.monotonic() - started < args.seconds:
            time.sleep(1.0)
            peak = max(peak, rss_bytes(proc.pid))
            if client.get("/readyz").status_code != 200:
                not_ready += 1
        stop.set()
        for t in threads:
            t.join(15)
        elapsed = time.monotonic() - started
        model = client.get("/v1/model").json()
        rss_end = rss_bytes(proc.pid)
        lat = sorted(latencies)
        result = {
            "seconds": round(elapsed, 1),
            "events_per_s": round((model["learned_ids"] - learned_start) / elapsed, 1),
            "http_events_posted": sum(posted),
            "predict_requests": len(lat),
            "predict_errors": len(errors),
            "predict_p50_ms": round(1e3 * statistics.median(lat), 2) if lat else None,
            "predict_p99_ms": round(1e3 * lat[int(0.99 * (len(lat) - 1))], 2) if lat else None,
            "rss_start_bytes": rss_start,
            "rss_end_bytes": rss_end,
            "rss_peak_bytes": peak,
            "memory_budget_bytes": args.memory_budget_bytes,
            "not_ready_seconds": not_ready,
            "checkpoints": model["checkpoint"]["last"],
            "checkpoint_size_bytes": model["checkpoint"]["last_size_bytes"],
            "prequential_accuracy": round(model.get("accuracy", 0.0), 4),
        }
        print(json.dumps(result, indent=2))
        return 0 if rss_end <= args.memory_budget_bytes and proc.poll() is None else 1
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


if __name__ == "__main__":
    raise SystemExit(main())

"""Serving benchmark: the all-in-one process against a serving replica while the learner learns.

In one invocation, on loopback, with ``hey`` (Debian's compiled HTTP load generator):

1. ``streamcl run`` (all-in-one) learning elec2 in a loop at full speed; ``hey`` at
   ``--rate`` requests/s (500) for ``--seconds`` (30) against its ``/v1/predict``.
2. ``streamcl run --role learner`` learning elec2 in a loop at full speed and publishing
   versions to a directory store (the default ``models`` settings: a candidate every 0.5 s,
   scored by the quality gate), plus one ``streamcl serve`` replica; ``hey`` at
   the same rate against the replica, while the replica's ``/v1/model`` age is sampled every
   0.1 s (``age_p99_s``).
3. The replica's maximum rate (``hey`` unthrottled for ``--max-seconds``), then a second
   replica and both at their maximum rate (two ``hey`` at once), the learner still learning.

Prints one line per phase and, last, one JSON object with ``allinone_p50_ms``,
``allinone_p99_ms``, ``replica_p50_ms``, ``replica_p99_ms``, ``replica_max_rps``,
``two_replicas_max_rps``, ``age_p99_s`` (plus error counts, the CPU count and each server's
CPU milliseconds per answered request, which a loaded machine distorts less than latency).
Every process shares this machine's cores: on 2 cores the learner, the replicas and ``hey``
compete, so two replicas cannot double the rate of one.

Usage::

    .venv/bin/python benchmarks/serving.py              # the issue's figures (~3 minutes)
    .venv/bin/python benchmarks/serving.py --seconds 5 --max-seconds 3   # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

BIN = Path(sys.executable).parent
BODY = {
    "instances": [
        {
            "features": {
                "period": 0.5,
                "nswprice": 0.05,
                "nswdemand": 0.42,
                "vicprice": 0.003,
                "vicdemand": 0.42,
                "transfer": 0.41,
            }
        }
    ]
}
CONNECTIONS = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A ``streamcl`` subprocess on a loopback port, stopped by PID."""

    def __init__(self, tmp: Path, name: str, args: list[str], config: dict[str, Any]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = tmp / f"{name}.yaml"
        cfg.write_text(yaml.safe_dump({**config, "server": {"port": self.port}}))
        self.log = (tmp / f"{name}.log").open("wb")
        self.popen = subprocess.Popen(
            [str(BIN / "streamcl"), *args, "--config", str(cfg)], stdout=self.log, stderr=self.log
        )

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        """Wait (bounded) until ``/readyz`` answers 200."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise SystemExit(f"{self.popen.args} exited with {self.popen.returncode}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"{self.popen.args} not ready in {timeout_s} s")

    def stop(self) -> None:
        """Terminate, wait, kill as a fallback."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self.log.close()


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hey(url: str, seconds: float, rate: float | None, body: Path) -> subprocess.Popen[str]:
    """Start ``hey`` against ``url``/v1/predict (``rate`` total requests/s, None: flat out)."""
    cmd = [shutil.which("hey") or "hey", "-z", f"{seconds}s", "-c", str(CONNECTIONS)]
    if rate is not None:
        cmd += ["-q", f"{rate / CONNECTIONS:g}"]  # hey's -q is per connection
    cmd += ["-m", "POST", "-T", "application/json", "-D", str(body), f"{url}/v1/predict"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def parse_hey(out: str) -> dict[str, float]:
    """Requests/s, p50 and p99 latency (ms) and non-200 responses from hey's summary."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = {int(p): float(s) * 1000 for p, s in re.findall(r"(\d+)%+ in ([\d.]+) secs", out)}
    codes = {int(c): int(n) for c, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", out)}
    errors = sum(n for c, n in codes.items() if c != 200) + len(re.findall(r"Error", out))
    return {
        "rps": rps,
        "p50_ms": pct.get(50, float("nan")),
        "p99_ms": pct.get(99, float("nan")),
        "ok": codes.get(200, 0),
        "errors": errors,
    }


def run_hey(
    url: str, seconds: float, rate: float | None, body: Path, server: Proc | None = None
) -> dict[str, float]:
    """One ``hey`` run; with ``server``, also its CPU ms per answered request."""
    before = cpu_s(server.popen.pid) if server is not None else 0.0
    out, _ = hey(url, seconds, rate, body).communicate(timeout=seconds + 60)
    result = parse_hey(out)
    if server is not None:
        spent = cpu_s(server.popen.pid) - before
        result["server_cpu_ms_per_request"] = 1000 * spent / max(result["ok"], 1)
    return result


def sample_ages(url: str, stop: threading.Event, ages: list[float]) -> None:
    with httpx.Client(base_url=url, timeout=2) as client:
        while not stop.is_set():
            try:
                age = client.get("/v1/model").json().get("age_s")
                if age is not None:
                    ages.append(float(age))
            except (httpx.HTTPError, ValueError):
                pass
            stop.wait(0.1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=30.0, help="each 500 req/s phase (30)")
    p.add_argument("--rate", type=float, default=500.0, help="requests/s of those phases")
    p.add_argument("--max-seconds", type=float, default=15.0, help="each maximum-rate phase")
    args = p.parse_args()
    if shutil.which("hey") is None:
        raise SystemExit("hey is missing: apt-get install hey")
    tmp = Path(tempfile.mkdtemp(prefix="streamcl-serving-"))
    body = tmp / "body.json"
    body.write_text(json.dumps(BODY))
    learn: dict[str, Any] = {"source": {"kind": "file", "path": "builtin://elec2", "loop": True}}
    models = {"store": str(tmp / "models")}  # the defaults: a version every 0.5 s, gated
    result: dict[str, Any] = {"cpus": os.cpu_count(), "rate": args.rate, "seconds": args.seconds}
    procs: list[Proc] = []
    try:
        allinone = Proc(tmp, "allinone", ["run"], learn)
        procs.append(allinone)
        allinone.wait_ready()
        a = run_hey(allinone.url, args.seconds, args.rate, body, allinone)
        print(f"all-in-one at {args.rate:g} req/s: {a}", flush=True)
        allinone.stop()
        procs.remove(allinone)

        config = {**learn, "models": models}
        learner = Proc(tmp, "learner", ["run", "--role", "learner"], config)
        replica = Proc(tmp, "replica", ["serve"], config)
        procs += [learner, replica]
        learner.wait_ready()
        replica.wait_ready()
        ages: list[float] = []
        stop = threading.Event()
        sampler = threading.Thread(target=sample_ages, args=(replica.url, stop, ages))
        sampler.start()
        r = run_hey(replica.url, args.seconds, args.rate, body, replica)
        stop.set()
        sampler.join()
        print(f"replica at {args.rate:g} req/s: {r}; {len(ages)} age samples", flush=True)
        one = run_hey(replica.url, args.max_seconds, None, body)
        print(f"one replica flat out: {one}", flush=True)
        second = Proc(tmp, "replica2", ["serve"], config)
        procs.append(second)
        second.wait_ready()
        both = [hey(u, args.max_seconds, None, body) for u in (replica.url, second.url)]
        two = [parse_hey(h.communicate(timeout=args.max_seconds + 60)[0]) for h in both]
        print(f"two replicas flat out: {two}", flush=True)
    finally:
        for proc in procs:
            proc.stop()
    result.update(
        allinone_p50_ms=a["p50_ms"],
        allinone_p99_ms=a["p99_ms"],
        allinone_rps=a["rps"],
        replica_p50_ms=r["p50_ms"],
        replica_p99_ms=r["p99_ms"],
        replica_rps=r["rps"],
        allinone_cpu_ms_per_request=a["server_cpu_ms_per_request"],
        replica_cpu_ms_per_request=r["server_cpu_ms_per_request"],
        replica_max_rps=one["rps"],
        two_replicas_max_rps=sum(t["rps"] for t in two),
        age_p50_s=float(np.percentile(ages, 50)) if ages else None,
        age_p99_s=float(np.percentile(ages, 99)) if ages else None,
        errors=a["errors"] + r["errors"] + one["errors"] + sum(t["errors"] for t in two),
    )
    shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

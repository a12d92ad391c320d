"""End to end: a real Prometheus server scrapes a running streamcl and answers PromQL.

streamcl runs as ``streamcl run --config config/default.yaml --port PORT`` (elec2 replay
at 2000 events/s); Prometheus (Debian package ``prometheus``) runs on another free
loopback port with the compose scrape config rewritten to point at it and with
``deploy/prometheus/alerts.yaml`` loaded. Both are stopped by PID in fixture finalizers.
Every wait loop is bounded. A missing binary fails the test (CI installs them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
PROM_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "streamcl-dashboard.json"
READY_TIMEOUT_S = 60.0

# name -> type in the "# TYPE" lines (a counter may be typed with or without _total).
METRIC_TYPES = {
    "streamcl_events_total": "counter",
    "streamcl_events_learned_total": "counter",
    "streamcl_ready": "gauge",
    "streamcl_prequential_accuracy": "gauge",
    "streamcl_predict_latency_seconds": "histogram",
    "streamcl_learn_batch_duration_seconds": "histogram",
    "streamcl_model_version": "gauge",
    "streamcl_drifts_total": "counter",
    "streamcl_last_drift_timestamp_seconds": "gauge",
    "streamcl_consumer_lag": "gauge",
    "streamcl_dead_letter_total": "counter",
    "streamcl_checkpoint_failures_total": "counter",
    "streamcl_checkpoints_total": "counter",
    "streamcl_memory_entries": "gauge",
    "streamcl_memory_bytes": "gauge",
    "streamcl_dormant_fraction": "gauge",
    "streamcl_effective_rank": "gauge",
    "streamcl_pending_labels": "gauge",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(
    url: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float, what: str
) -> None:
    """Poll ``url`` until it answers 200; fail if ``proc`` dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode} before {url} was 200:\n{tail(log)}")
        try:
            status, _ = http_get(url, timeout=2.0)
            if status == 200:
                return
            last = f"HTTP {status}"
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.25)
    pytest.fail(f"{what}: {url} not 200 within {timeout_s:.0f} s (last: {last}):\n{tail(log)}")


def tail(log: Path, n: int = 40) -> str:
    try:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop one process we started, by its PID: SIGTERM, then SIGKILL after 30 s."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def streamcl_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = Path(sys.executable).parent / "streamcl"
    if not exe.exists():
        pytest.fail(
            f"the streamcl console script is missing ({exe}): pip install -e . into the venv"
        )
    workdir = tmp_path_factory.mktemp("streamcl")
    log = workdir / "streamcl.log"
    port = free_port()
    # loop: elec2 (~45k events) would run out at 2000 events/s while the tests still watch
    env = {
        **os.environ,
        "STREAMCL_SOURCE__RATE": "2000",
        "STREAMCL_SOURCE__LOOP": "true",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(exe),
                "run",
                "--config",
                str(ROOT / "config" / "default.yaml"),
                "--port",
                str(port),
            ],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(f"{url}/readyz", proc, log, READY_TIMEOUT_S, "streamcl")
        yield url
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def prometheus_url(streamcl_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the prometheus server binary is not on PATH: apt-get install prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load(PROM_CONFIG.read_text(encoding="utf-8"))
    config["global"].update(
        {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    )
    config["rule_files"] = [str(ALERTS)]
    port = free_port()
    target = streamcl_url.removeprefix("http://")
    jobs = []
    for job in config["scrape_configs"]:
        if job["job_name"] == "streamcl":
            job["static_configs"][0]["targets"] = [target]
            jobs.append(job)
    assert jobs, "deploy/prometheus/prometheus.yaml has no streamcl job"
    config["scrape_configs"] = jobs
    config_file = workdir / "prometheus.yaml"
    config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
            ],
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(f"{url}/-/ready", proc, log, 30.0, "prometheus")
        yield url
    finally:
        stop(proc)


def api(prometheus_url: str, path: str, **params: str) -> Any:
    query = urllib.parse.urlencode(params)
    status, body = http_get(f"{prometheus_url}/api/v1/{path}" + (f"?{query}" if query else ""))
    payload = json.loads(body)
    assert status == 200 and payload["status"] == "success", (path, params, payload)
    return payload["data"]


def query_until(prometheus_url: str, promql: str, timeout_s: float = 45.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = api(prometheus_url, "query", query=promql)["result"]
        if result:
            return result
        time.sleep(0.5)
    pytest.fail(f"PromQL {promql!r} returned nothing within {timeout_s:.0f} s")


def test_prometheus_scrapes_streamcl_accuracy(prometheus_url, streamcl_url):
    instance = streamcl_url.removeprefix("http://")
    result = query_until(prometheus_url, "streamcl_prequential_accuracy")
    (series,) = result
    assert series["metric"]["job"] == "streamcl"
    assert series["metric"]["instance"] == instance
    assert series["metric"]["deployment"] == "compose"
    value = float(series["value"][1])
    assert 0.0 <= value <= 1.0

    targets = api(prometheus_url, "targets")["activeTargets"]
    assert [(t["labels"]["instance"], t["health"]) for t in targets] == [(instance, "up")]


def test_streamcl_learns_while_prometheus_watches(prometheus_url):
    first = float(query_until(prometheus_url, "sum(streamcl_events_learned_total)")[0]["value"][1])
    deadline = time.monotonic() + 30.0
    later = first
    while time.monotonic() < deadline and later <= first:
        time.sleep(1.0)
        later = float(
            query_until(prometheus_url, "sum(streamcl_events_learned_total)")[0]["value"][1]
        )
    assert later > first, "learned events did not increase between scrapes"


def test_prometheus_loads_and_evaluates_the_alert_rules(prometheus_url):
    expected = {
        r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]
    }
    deadline = time.monotonic() + 30.0
    while True:
        groups = api(prometheus_url, "rules", type="alert")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if (rules and all(r["health"] == "ok" for r in rules)) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert {r["name"] for r in rules} == expected
    bad = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert bad == {}, bad


def test_dashboard_queries_run_against_real_data(prometheus_url):
    query_until(prometheus_url, "streamcl_prequential_accuracy")
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    assert len(exprs) >= 10
    subst = {
        "$job": ".*",
        "$instance": ".*",
        "$__rate_interval": "1m",
        "$__interval": "1m",
        "$__range": "5m",
    }
    for expr in exprs:
        promql = expr
        for var, value in subst.items():
            promql = promql.replace(var, value)
        assert "$" not in promql, promql
        api(prometheus_url, "query", query=promql)  # asserts status success (valid PromQL)
    accuracy = query_until(
        prometheus_url, 'streamcl_prequential_accuracy{job=~".*", instance=~".*"}'
    )
    assert accuracy


def test_streamcl_exposes_the_metric_contract(streamcl_url):
    status, body = http_get(f"{streamcl_url}/metrics")
    assert status == 200
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", body.decode(), flags=re.MULTILINE))
    missing = {
        name: kind
        for name, kind in METRIC_TYPES.items()
        if kind not in (types.get(name), types.get(name.removesuffix("_total")))
    }
    assert missing == {}, f"metrics missing or of the wrong type: {missing}"

